/**
 * The benchmark's fallback load generator (bench/loadgen): its pure parts (flags and presets, client
 * placement, histogram, payload header, packet encoding and framing, exit codes), then whole runs of
 * bench/loadgen/main.ts in its own processes against an in-process broker.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import mqttPacket from "mqtt-packet";
import type * as MP from "mqtt-packet";
import { SharedClock } from "../bench/loadgen/clock.ts";
import { bucketOf, bucketValue, Histogram } from "../bench/loadgen/histogram.ts";
import {
  encodeConnect,
  encodeSubscribe,
  FrameDecoder,
  MalformedPacket,
  publishTemplate,
  writePuback,
} from "../bench/loadgen/mqtt.ts";
import {
  defaultProcesses,
  isLoopback,
  LOADGEN_PERMISSIONS,
  type Options,
  parseOptions,
  UsageError,
} from "../bench/loadgen/options.ts";
import { HEADER_BYTES, readHeader, writeHeader } from "../bench/loadgen/payload.ts";
import { fanoutOf, placeClients, splitEvenly, type Topology } from "../bench/loadgen/plan.ts";
import { parseStatCpu, parseStatusRss } from "../bench/loadgen/proc.ts";
import {
  initialFacts,
  type Merged,
  mergeFailures,
  type RunFacts,
  scenarioExit,
} from "../bench/loadgen/report.ts";
import { listenerConfig } from "../src/config/schema.ts";
import { startBroker } from "./helpers/broker.ts";
import { tlsFiles } from "./helpers/certs.ts";

const ENV = { pid: 4242, cpus: 4 };

function options(...argv: string[]): Options {
  const parsed = parseOptions(argv, ENV);
  assert.equal(parsed.help, false);
  return (parsed as { options: Options }).options;
}

// --- Flags and presets ----------------------------------------------------------------------------------------

Deno.test("loadgen flags: scenario presets match mqttload's", () => {
  const fanin = options("--scenario", "fanin", "--pubs", "8");
  assert.deepEqual([fanin.pubs, fanin.subs, fanin.topics, fanin.wildcard], [8, 1, 8, true]);
  const fanout = options("--scenario", "fanout", "--subs", "8");
  assert.deepEqual([fanout.pubs, fanout.subs, fanout.topics, fanout.wildcard], [1, 8, 1, false]);
  const pairwise = options("--scenario", "pairwise", "--pubs", "8");
  assert.deepEqual([pairwise.pubs, pairwise.subs, pairwise.topics, pairwise.wildcard], [8, 8, 8, false]);
  assert.equal(
    options("--scenario", "pairwise", "--subs", "3").pubs,
    3,
    "pairwise takes its size from --subs",
  );
  assert.deepEqual([options("--scenario", "fanin").pubs, options("--scenario", "fanout").subs], [10, 10]);
  // Flags given explicitly win over the preset.
  assert.equal(options("--scenario", "fanin", "--topics", "2").topics, 2);
});

Deno.test("loadgen flags: defaults, both value spellings, verbose and help", () => {
  const o = options();
  assert.equal(o.scenario, "custom");
  assert.deepEqual([o.host, o.port, o.qos, o.size, o.count, o.inflight, o.keepalive], [
    "127.0.0.1",
    1883,
    0,
    16,
    1000,
    100,
    60,
  ]);
  assert.deepEqual([o.durationMax, o.drainIdle, o.stall, o.parallel, o.hold], [30, 2, 5, 64, 2]);
  assert.equal(o.prefix, "loadgen/4242");
  const p = options(
    "--port=2000",
    "--qos",
    "1",
    "--pub-time=1.5",
    "-v",
    "--label",
    "x y",
    "--broker-pid",
    "7",
  );
  assert.deepEqual([p.port, p.qos, p.pubTime, p.verbose, p.label, p.brokerPid], [
    2000,
    1,
    1.5,
    true,
    "x y",
    7,
  ]);
  assert.equal(options("--conns", "50").scenario, "conns");
  assert.equal(options("--inflight", "70000").inflight, 65000, "capped like mqttload's");
  assert.deepEqual([o.transport, o.cafile, o.wsPath], ["tcp", "", "/mqtt"]);
  const wss = options("--transport", "wss", "--cafile", "/tmp/ca.pem", "--ws-path=/ws");
  assert.deepEqual([wss.transport, wss.cafile, wss.wsPath], ["wss", "/tmp/ca.pem", "/ws"]);
  assert.deepEqual(parseOptions(["--help"], ENV), { help: true });
  assert.deepEqual(parseOptions(["-h"], ENV), { help: true });
});

Deno.test("loadgen flags: processes default to one core short of all, and never exceed the clients", () => {
  assert.deepEqual([defaultProcesses(1), defaultProcesses(2), defaultProcesses(8)], [1, 1, 7]);
  assert.equal(options("--scenario", "pairwise", "--pubs", "8").processes, 3);
  assert.equal(options("--scenario", "pairwise", "--pubs", "8", "--processes", "6").processes, 6);
  assert.equal(options("--pubs", "1", "--subs", "1", "--processes", "6").processes, 2);
  assert.equal(options("--conns", "5", "--processes", "8").processes, 5);
});

Deno.test("loadgen flags: anything mqttload would refuse is a usage error", () => {
  const bad = [
    ["--qos", "2"],
    ["--size", "15"],
    ["--port", "0"],
    ["--topics", "0"],
    ["--window", "-1"],
    ["--count", "1.5"],
    ["--rate", "fast"],
    ["--host", "10.0.0.1"],
    ["--host", "example.com"],
    ["--scenario", "ring"],
    ["--v5"],
    ["--mqtt5"],
    ["--bogus"],
    ["--port"],
    ["--wildcard=1"],
    ["stray"],
    ["--processes", "0"],
    ["--transport", "quic"],
    ["--transport", "TLS"],
    ["--ws-path", "mqtt"],
  ];
  for (const argv of bad) assert.throws(() => parseOptions(argv, ENV), UsageError, argv.join(" "));
  assert.ok(
    isLoopback("127.0.0.1") && isLoopback("127.1.2.3") && isLoopback("localhost") && isLoopback("::1"),
  );
  assert.ok(!isLoopback("127.0.0.256") && !isLoopback("128.0.0.1") && !isLoopback("0.0.0.0"));
});

// --- Placement ----------------------------------------------------------------------------------------------

function topology(o: Options): Topology {
  return { npubs: o.pubs, nsubs: o.subs, topics: o.topics, wildcard: o.wildcard };
}

Deno.test("loadgen placement: pairs stay in one process; fan-in and fan-out are balanced", () => {
  const pairwise = topology(options("--scenario", "pairwise", "--pubs", "8"));
  const shares = placeClients(pairwise, 3);
  assert.equal(shares.length, 3);
  for (const s of shares) assert.deepEqual(s.pubs, s.subs, "each publisher next to its subscriber");
  assert.deepEqual(shares.map((s) => s.pubs.length).sort(), [2, 3, 3]);

  const fanin = topology(options("--scenario", "fanin", "--pubs", "8"));
  const [a, b] = placeClients(fanin, 2);
  assert.deepEqual([a.subs, a.pubs.length, b.subs, b.pubs.length], [[0], 0, [], 8]);

  const fanout = topology(options("--scenario", "fanout", "--subs", "8"));
  const out = placeClients(fanout, 2);
  assert.deepEqual(out.map((s) => s.pubs.length + s.subs.length).sort(), [4, 5]);
  assert.equal(fanoutOf(fanout, 0), 8);
  assert.equal(fanoutOf(fanin, 3), 1);

  // Every client exactly once, and no empty process.
  const all = placeClients(topology(options("--pubs", "5", "--subs", "7", "--topics", "3")), 4);
  assert.deepEqual(all.flatMap((s) => s.pubs).sort(), [0, 1, 2, 3, 4]);
  assert.deepEqual(all.flatMap((s) => s.subs).sort(), [0, 1, 2, 3, 4, 5, 6]);
  assert.equal(placeClients(topology(options("--pubs", "1", "--subs", "1")), 4).length, 2);
  assert.deepEqual(splitEvenly(10, 3), [4, 3, 3]);
  assert.deepEqual(splitEvenly(2, 4), [1, 1, 0, 0]);
});

// --- Histogram ----------------------------------------------------------------------------------------------

Deno.test("loadgen histogram: exact below 1,024 ns, within 0.1% above, mqttload's percentile rule", () => {
  const h = new Histogram();
  for (let v = 1; v <= 1000; v++) h.add(v);
  assert.deepEqual([h.percentile(50), h.percentile(90), h.percentile(99), h.percentile(100)], [
    501,
    901,
    991,
    1000,
  ]);
  assert.equal(h.mean(), 500.5);
  assert.equal(h.max, 1000);
  for (const v of [1024, 1500, 65_537, 1e6, 123_456_789, 5e9, 3e11]) {
    const mid = bucketValue(bucketOf(v));
    assert.ok(Math.abs(mid - v) / v < 0.001, `${v} -> ${mid}`);
  }
  for (let v = 1024; v < 1e9; v = Math.ceil(v * 1.7)) {
    assert.ok(bucketOf(v + 1) >= bucketOf(v), "buckets are monotonic");
  }
  assert.equal(new Histogram().percentile(99), 0);
  const capped = new Histogram();
  capped.add(2 ** 20); // the low edge of its bucket
  assert.equal(capped.percentile(50), 2 ** 20, "a bucket's middle never exceeds the maximum");
});

Deno.test("loadgen histogram: merging sparse copies equals one histogram of everything", () => {
  const parts = [new Histogram(), new Histogram(), new Histogram()];
  const whole = new Histogram();
  let x = 12345;
  for (let i = 0; i < 30_000; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    const ns = 500 + (x % 5_000_000);
    parts[i % 3].add(ns);
    whole.add(ns);
  }
  const merged = new Histogram();
  for (const p of parts) merged.merge(JSON.parse(JSON.stringify(p.toSparse())));
  for (const p of [50, 90, 99, 99.9]) assert.equal(merged.percentile(p), whole.percentile(p));
  assert.deepEqual([merged.count, merged.max, merged.sum], [whole.count, whole.max, whole.sum]);
});

// --- Payload header -----------------------------------------------------------------------------------------

Deno.test("loadgen payload: the 16-byte header round-trips, little-endian like mqttload's", () => {
  const buf = new Uint8Array(40);
  const header = { sentNs: 2 ** 40 + 123_456_789, pub: 0xfffffffe, seq: 70_000 };
  writeHeader(buf, 7, header);
  assert.deepEqual(readHeader(buf, 7), header);
  const view = new DataView(buf.buffer, 7);
  assert.equal(view.getBigUint64(0, true), BigInt(header.sentNs));
  assert.equal(view.getUint32(8, true), header.pub);
  assert.equal(view.getUint32(12, true), header.seq);
  assert.equal(HEADER_BYTES, 16);
});

// --- Packets ------------------------------------------------------------------------------------------------

/** What mqtt-packet makes of our bytes: an independent check of the encoders. */
function parse(bytes: Uint8Array): MP.Packet[] {
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const packets: MP.Packet[] = [];
  parser.on("packet", (p: MP.Packet) => packets.push(p));
  parser.on("error", (e: Error) => {
    throw e;
  });
  parser.parse(Buffer.from(bytes));
  return packets;
}

Deno.test("loadgen packets: CONNECT, SUBSCRIBE, PUBLISH and PUBACK as mqtt-packet reads them", () => {
  const [connect] = parse(encodeConnect("loadgen-1-s0", 60)) as MP.IConnectPacket[];
  assert.deepEqual(
    [connect.cmd, connect.protocolVersion, connect.clean, connect.keepalive, connect.clientId],
    [
      "connect",
      4,
      true,
      60,
      "loadgen-1-s0",
    ],
  );
  const [sub] = parse(encodeSubscribe(1, "p/t/+", 1)) as MP.ISubscribePacket[];
  assert.deepEqual([sub.messageId, sub.subscriptions], [1, [{ topic: "p/t/+", qos: 1 }]]);

  for (const [qos, size] of [[0, 16], [1, 16], [1, 1024]] as const) {
    const t = publishTemplate("loadgen/9/t/3", qos, size);
    const bytes = t.bytes.slice();
    if (qos) bytes.set([0x12, 0x34], t.packetIdOffset);
    writeHeader(bytes, t.payloadOffset, { sentNs: 99, pub: 3, seq: 5 });
    const [publish] = parse(bytes) as MP.IPublishPacket[];
    assert.equal(publish.topic, "loadgen/9/t/3");
    assert.equal(publish.qos, qos);
    if (qos) assert.equal(publish.messageId, 0x1234);
    assert.equal(publish.payload.length, size);
    assert.deepEqual(readHeader(new Uint8Array(publish.payload as Buffer), 0), {
      sentNs: 99,
      pub: 3,
      seq: 5,
    });
  }
  const ack = new Uint8Array(4);
  writePuback(ack, 0, 513);
  assert.deepEqual(parse(ack).map((p) => [p.cmd, (p as MP.IPubackPacket).messageId]), [["puback", 513]]);
});

interface Framed {
  b0: number;
  body: number[];
}

function frames(decoder: FrameDecoder): Framed[] {
  const out: Framed[] = [];
  while (decoder.next()) {
    out.push({
      b0: decoder.b0,
      body: [...decoder.buf.subarray(decoder.body, decoder.body + decoder.length)],
    });
  }
  return out;
}

Deno.test("loadgen decoder: the same packets however the stream is cut", () => {
  const publish = (size: number, qos: 0 | 1) => publishTemplate("a/b", qos, size).bytes;
  const packets = [
    new Uint8Array([0x20, 2, 0, 0]), // CONNACK
    new Uint8Array([0x90, 3, 0, 1, 1]), // SUBACK
    publish(16, 0),
    publish(200, 1), // two-byte remaining length
    new Uint8Array([0x40, 2, 0, 9]), // PUBACK
    new Uint8Array([0xd0, 0]), // PINGRESP: empty body
    publish(70_000, 0), // three-byte remaining length, larger than the initial buffer
  ];
  const stream = new Uint8Array(packets.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of packets) {
    stream.set(p, at);
    at += p.length;
  }
  const whole = new FrameDecoder(64);
  whole.push(stream);
  const expected = frames(whole);
  assert.equal(expected.length, packets.length);
  assert.deepEqual(expected.map((f) => f.b0), [0x20, 0x90, 0x30, 0x32, 0x40, 0xd0, 0x30]);

  // Every single cut point of the small packets, then a few thousand random cuts of the whole stream.
  const small = stream.subarray(0, stream.length - packets[6].length);
  for (let cut = 0; cut <= small.length; cut++) {
    const d = new FrameDecoder(16);
    d.push(small.subarray(0, cut));
    const got = frames(d);
    d.push(small.subarray(cut));
    got.push(...frames(d));
    assert.deepEqual(got, expected.slice(0, 6), `cut at ${cut}`);
  }
  let seed = 7;
  for (let round = 0; round < 20; round++) {
    const d = new FrameDecoder(32);
    const got: Framed[] = [];
    for (let pos = 0; pos < stream.length;) {
      seed = (seed * 16807) % 2147483647;
      const n = 1 + (seed % (round < 10 ? 7 : 5000));
      // Reading straight into space(), as the engine does.
      const chunk = stream.subarray(pos, pos + n);
      d.space(chunk.length).set(chunk);
      d.commit(chunk.length);
      pos += chunk.length;
      got.push(...frames(d));
    }
    assert.deepEqual(got, expected);
    assert.equal(d.buffered, 0);
  }
});

Deno.test("loadgen decoder: a remaining length over four bytes or over the limit is malformed", () => {
  const d = new FrameDecoder();
  d.push(new Uint8Array([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]));
  assert.throws(() => d.next(), MalformedPacket);
  const small = new FrameDecoder(64, 100);
  small.push(new Uint8Array([0x30, 101]));
  assert.throws(() => small.next(), MalformedPacket);
  const partial = new FrameDecoder();
  partial.push(new Uint8Array([0x30, 0xff]));
  assert.equal(partial.next(), false, "an unfinished length waits for more bytes");
});

// --- Clock, /proc parsing, exit codes -----------------------------------------------------------------------

Deno.test("loadgen clock: shared-clock readings share a base and advance", () => {
  const base = Math.floor(performance.timeOrigin);
  const a = new SharedClock(base);
  const b = new SharedClock(base);
  const t1 = a.nowNs();
  const t2 = b.nowNs();
  assert.ok(t2 >= t1 && t2 - t1 < 5e6, `${t1} then ${t2}`);
  assert.ok(t1 < 2 ** 53 && t1 > 0);
  assert.ok(Math.abs(a.msUntil(t1 + 10e6) - 10) < 5);
});

Deno.test("loadgen /proc parsing: utime + stime and VmRSS", () => {
  const stat = "1234 (my (odd) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 0 0";
  assert.equal(parseStatCpu(stat), 3);
  assert.equal(parseStatCpu("garbage"), -1);
  assert.equal(parseStatusRss("Name:\tx\nVmPeak:\t  10 kB\nVmRSS:\t   8696 kB\n"), 8696);
  assert.equal(parseStatusRss("Name:\tx\n"), -1);
});

Deno.test("loadgen exit codes: mqttload's order of precedence", () => {
  const o = options("--qos", "1");
  const merged = (over: Partial<Merged> = {}): Merged => ({
    connect: { ok: 2, failed: 0, first: 1, last: 2, subscribed: 1, grantedLower: false },
    failure: mergeFailures([]),
    sent: 10,
    expected: 10,
    received: 10,
    acked: 10,
    dups: 0,
    gaps: 0,
    lastRecv: 5,
    tPubDone: 4,
    hist: new Histogram(),
    cpuS: 0,
    ...over,
  });
  const facts = (over: Partial<RunFacts> = {}): RunFacts => ({
    ...initialFacts(),
    processes: 1,
    t0: 1,
    tEnd: 6,
    ...over,
  });
  assert.equal(scenarioExit(o, merged(), facts()), 0);
  assert.equal(scenarioExit(o, merged({ received: 9 }), facts()), 3, "QoS 1 loss");
  assert.equal(scenarioExit(o, merged({ dups: 1 }), facts()), 3, "QoS 1 duplicates");
  assert.equal(scenarioExit(options(), merged({ received: 9 }), facts()), 0, "QoS 0 may lose");
  assert.equal(scenarioExit(o, merged(), facts({ stalled: true })), 3);
  assert.equal(scenarioExit(o, merged({ received: 9 }), facts({ timedOut: true })), 4);
  assert.equal(scenarioExit(o, merged(), facts({ interrupted: true })), 4);
  assert.equal(
    scenarioExit(o, merged({ failure: mergeFailures([], ["worker died"]) }), facts({ timedOut: true })),
    2,
  );
});

// --- Whole runs ---------------------------------------------------------------------------------------------

const MAIN = new URL("../bench/loadgen/main.ts", import.meta.url);

/** Runs the generator as the bench does; returns its exit code and its one JSON line. */
async function loadgen(
  port: number,
  ...args: string[]
): Promise<{ code: number; report: Record<string, unknown> }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...LOADGEN_PERMISSIONS,
      MAIN.href,
      "--port",
      String(port),
      "--duration-max",
      "20",
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout).trim();
  const stderr = new TextDecoder().decode(out.stderr).trim();
  assert.equal(stdout.split("\n").length, 1, `one line on stdout; stderr: ${stderr}`);
  return { code: out.code, report: JSON.parse(stdout) };
}

Deno.test("loadgen run: QoS 1 pairwise over two processes delivers everything exactly once", async () => {
  await using broker = await startBroker();
  const { code, report } = await loadgen(
    broker.port,
    ...["--scenario", "pairwise", "--pubs", "4", "--qos", "1", "--count", "500", "--window", "50"],
    ...["--processes", "2", "--broker-pid", String(Deno.pid), "--label", "test"],
  );
  assert.equal(code, 0, JSON.stringify(report));
  assert.equal(report.generator, "vyoma-loadgen");
  assert.equal(report.processes, 2);
  assert.deepEqual([report.sent, report.expected, report.received, report.acked], [2000, 2000, 2000, 2000]);
  assert.deepEqual([report.lost, report.dups, report.gaps, report.errors], [0, 0, 0, 0]);
  assert.deepEqual([report.connected, report.connect_failed, report.label], [8, 0, "test"]);
  assert.ok((report.p50_us as number) > 0 && (report.p99_us as number) >= (report.p50_us as number));
  assert.ok((report.broker_cpu_s as number) >= 0 && (report.broker_rss_kb as number) > 0);
});

Deno.test("loadgen run: the window holds when publisher and subscribers are in different processes", async () => {
  await using broker = await startBroker();
  // Fan-in over two processes puts the subscriber in one and the publishers in the other: each
  // publisher's window only opens on delivery counts sent across.
  const { code, report } = await loadgen(
    broker.port,
    ...["--scenario", "fanin", "--pubs", "3", "--qos", "1", "--count", "400", "--window", "20"],
    ...["--processes", "2"],
  );
  assert.equal(code, 0, JSON.stringify(report));
  assert.deepEqual([report.received, report.expected, report.lost, report.dups], [1200, 1200, 0, 0]);
  assert.equal(report.processes, 2);
});

Deno.test("loadgen run: idle connections are counted, and usage errors exit 1", async () => {
  await using broker = await startBroker();
  const { code, report } = await loadgen(broker.port, "--conns", "30", "--hold", "0.2", "--processes", "2");
  assert.equal(code, 0, JSON.stringify(report));
  assert.deepEqual([report.scenario, report.requested, report.connected, report.dropped], [
    "conns",
    30,
    30,
    0,
  ]);
  for (const bad of [["--qos", "2"], ["--transport", "tls", "--cafile", "/nonexistent/ca.pem"]]) {
    const usage = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", MAIN.href, ...bad],
      stdout: "null",
      stderr: "null",
    }).output();
    assert.equal(usage.code, 1, bad.join(" "));
  }
});

Deno.test("loadgen run: a fixed rate is kept, stamped and delivered", async () => {
  await using broker = await startBroker();
  const { code, report } = await loadgen(
    broker.port,
    ...["--scenario", "pairwise", "--pubs", "2", "--qos", "1", "--rate", "200", "--pub-time", "0.5"],
    ...["--count", "1000000", "--processes", "2"],
  );
  assert.equal(code, 0, JSON.stringify(report));
  // 2 publishers x 200/s x 0.5 s; the end of publishing is a timer, which a busy machine may delay.
  const sent = report.sent as number;
  assert.ok(sent >= 198 && sent <= 230, `sent ${sent}`);
  assert.deepEqual([report.received, report.lost], [sent, 0]);
  assert.ok(Math.abs((report.send_rate as number) - 400) < 60, `send_rate ${report.send_rate}`);
});

Deno.test("loadgen run: over TLS it trusts --cafile, and without it the broker's certificate fails", async () => {
  await using files = await tlsFiles();
  const tls = listenerConfig("tls", { port: 0, cert_file: files.server.cert, key_file: files.server.key });
  await using broker = await startBroker({ listeners: [tls] });
  const load = ["--scenario", "fanin", "--pubs", "3", "--qos", "1", "--count", "200", "--processes", "2"];
  const trusted = await loadgen(broker.port, "--transport", "tls", "--cafile", files.ca.cert, ...load);
  assert.equal(trusted.code, 0, JSON.stringify(trusted.report));
  assert.equal(trusted.report.transport, "tls");
  assert.deepEqual([trusted.report.received, trusted.report.lost, trusted.report.dups], [600, 0, 0]);
  const untrusted = await loadgen(broker.port, "--transport", "tls", ...load);
  assert.equal(untrusted.code, 2, JSON.stringify(untrusted.report));
  assert.equal(untrusted.report.connected, 0);
  assert.match(untrusted.report.error as string, /connect: .*(certificate|UnknownIssuer)/i);
});

Deno.test("loadgen run: no broker listening is a connection error", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const { code, report } = await loadgen(port, "--scenario", "fanin", "--pubs", "2", "--processes", "2");
  assert.equal(code, 2, JSON.stringify(report));
  assert.equal(report.connect_failed, 3);
  assert.match(report.error as string, /connect/);
});
