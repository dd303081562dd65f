/**
 * The pure parts of `deno task bench`: its command line, the scenario matrix and selection, the table's
 * figures, ratios, flags and targets, the SVG chart, and the stalled subscriber's packets. No broker or
 * generator runs here.
 */

import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import {
  allScenarios,
  type BrokerName,
  BROKERS,
  FULL_PUB_TIME,
  parseOptions,
  QUICK_NAMES,
  QUICK_PUB_TIME,
  ROW_TRANSPORTS,
  type Scenario,
  scenariosFor,
  selectScenarios,
  STALLED_NAME,
  transportBaseline,
  UsageError,
} from "../bench/scenarios.ts";
import {
  compact,
  escapeXml,
  figureText,
  fileStamp,
  formatGrowthMb,
  formatRatio,
  linearTicks,
  primaryValue,
  ratio,
  renderSvg,
  renderTable,
  type Report,
  resultsJson,
  rssGrowthMb,
  runFlags,
  type RunRecord,
  STALLED_GROWTH_LIMIT_MB,
  summaryLine,
  type TargetCheck,
  targetFor,
  transportRatio,
  transportSection,
} from "../bench/report.ts";
import { connectPacket, parseVmRssKb, splitPacket, subscribePacket } from "../bench/bench.ts";
import { findGenerator, parseJsonLine, SetupError, withFdLimit } from "../bench/generator.ts";
import { mosquittoConfig, vyomaConfig } from "../bench/peers.ts";

function scenario(name: string): Scenario {
  const found = allScenarios(FULL_PUB_TIME).find((s) => s.name === name);
  assert.ok(found, `no scenario ${name}`);
  return found;
}

/** The target of a row that has one. */
function target(s: Scenario, runs: ReadonlyMap<BrokerName, RunRecord>): TargetCheck {
  const t = targetFor(s, runs);
  assert.ok(t, `${s.name} has no target`);
  return t;
}

function argValue(s: Scenario, flag: string): string | undefined {
  const i = s.args.indexOf(flag);
  return i < 0 ? undefined : s.args[i + 1];
}

function run(
  broker: RunRecord["broker"],
  name: string,
  result: Record<string, unknown> | null,
  exitCode = 0,
) {
  return {
    broker,
    scenario: name,
    exitCode,
    result,
    error: null,
    stderrTail: "",
    wallS: 1,
  } satisfies RunRecord;
}

/** A `stalled` run: the generator's result plus the broker RSS the bench read around it, in kB. */
function stalledRun(broker: BrokerName, beforeKb: number | null, afterKb: number | null, recv = 1000) {
  return {
    ...run(broker, STALLED_NAME, throughputResult(recv)),
    stalled: { clientId: "bench-stalled-0123abcd", rssBeforeKb: beforeKb, rssAfterKb: afterKb },
  } satisfies RunRecord;
}

const throughputResult = (recv: number, extra: Record<string, unknown> = {}) => ({
  recv_rate: recv,
  lost: 0,
  dups: 0,
  gen_cpu_s: 1,
  broker_cpu_s: 2,
  error: "",
  ...extra,
});

// ---- command line ----

Deno.test("bench options: defaults run every broker for the full publish time", () => {
  const o = parseOptions([]);
  assert.deepEqual(o.brokers, [...BROKERS]);
  assert.equal(o.quick, false);
  assert.equal(o.pubTime, FULL_PUB_TIME);
  assert.deepEqual(o.only, []);
  assert.equal(o.generator, undefined);
});

Deno.test("bench options: --quick shortens publishing, --pub-time overrides it", () => {
  assert.equal(parseOptions(["--quick"]).pubTime, QUICK_PUB_TIME);
  assert.equal(parseOptions(["--quick", "--pub-time", "3.5"]).pubTime, 3.5);
  assert.equal(parseOptions(["--pub-time=8"]).pubTime, 8);
});

Deno.test("bench options: --brokers keeps table order and refuses unknown names", () => {
  assert.deepEqual(parseOptions(["--brokers", "aedes, vyoma,aedes"]).brokers, ["vyoma", "aedes"]);
  assert.throws(() => parseOptions(["--brokers", "vyoma,hivemq"]), UsageError);
  assert.throws(() => parseOptions(["--brokers", ","]), UsageError);
});

Deno.test("bench options: bad input is a UsageError, not a crash", () => {
  assert.throws(() => parseOptions(["--pub-time", "0"]), UsageError);
  assert.throws(() => parseOptions(["--pub-time", "soon"]), UsageError);
  assert.throws(() => parseOptions(["--fast"]), UsageError);
  assert.throws(() => parseOptions(["extra"]), UsageError);
  assert.equal(parseOptions(["--generator", "/bin/mqttload"]).generator, "/bin/mqttload");
  assert.equal(parseOptions(["--help"]).help, true);
});

// ---- scenarios ----

Deno.test("scenarios: the full matrix, every name once", () => {
  const names = allScenarios(FULL_PUB_TIME).map((s) => s.name);
  assert.equal(new Set(names).size, names.length);
  // 3 patterns x 2 client counts x 2 QoS x 2 sizes, 1 stalled run, 2 latency runs, 2 connection runs,
  // 2 loads x 4 transports.
  assert.equal(names.length, 37);
  for (
    const n of [
      "fanin-8-q0-16B",
      "fanout-100-q1-1KiB",
      "pairwise-8-q1-16B",
      "stalled-q0",
      "latency-q0",
      "conns-10000",
      "transport-fanin-tcp",
      "transport-fanout-wss",
    ]
  ) {
    assert.ok(names.includes(n), n);
  }
});

Deno.test("scenarios: every run is bounded in count and time", () => {
  for (const s of allScenarios(FULL_PUB_TIME)) {
    assert.equal(argValue(s, "--duration-max"), String(s.durationMax), s.name);
    if (s.kind !== "conns") {
      assert.ok(Number(argValue(s, "--count")) > 0, s.name);
      assert.ok(Number(argValue(s, "--pub-time")) > 0, s.name);
    }
  }
  const fanout = scenario("fanout-100-q1-1KiB");
  assert.equal(argValue(fanout, "--subs"), "100");
  assert.equal(argValue(fanout, "--window"), "500");
  assert.equal(argValue(fanout, "--size"), "1024");
  assert.equal(argValue(fanout, "--pub-time"), "5");
  assert.equal(fanout.durationMax, 20);
  const fanin = scenario("fanin-8-q0-16B");
  assert.equal(argValue(fanin, "--pubs"), "8");
  assert.equal(argValue(fanin, "--window"), "100");
  const latency = scenario("latency-q1");
  assert.equal(argValue(latency, "--rate"), "500");
  assert.equal(argValue(latency, "--pubs"), "8");
  assert.equal(argValue(latency, "--qos"), "1");
  const idle = scenario("conns-10000");
  assert.equal(idle.fresh, true);
  assert.equal(argValue(idle, "--hold"), "2");
  assert.equal(scenario("conns-1000").fresh, false);
});

Deno.test("scenarios: stalled-q0 is fanin-8-q0-16B's load on a fresh broker, between throughput and latency", () => {
  const all = allScenarios(FULL_PUB_TIME);
  const stalled = scenario("stalled-q0");
  const fanin = scenario("fanin-8-q0-16B");
  assert.equal(stalled.kind, "stalled");
  assert.deepEqual(stalled.args, fanin.args);
  assert.equal(stalled.durationMax, fanin.durationMax);
  assert.deepEqual([stalled.pattern, stalled.clients, stalled.qos, stalled.size], ["fanin", 8, 0, 16]);
  assert.equal(stalled.fresh, true);
  const at = all.findIndex((s) => s.name === "stalled-q0");
  assert.equal(all.findLastIndex((s) => s.kind === "throughput"), at - 1);
  assert.equal(all.findIndex((s) => s.kind === "latency"), at + 1);
  // The quick publish time reaches it as it does the throughput runs.
  assert.equal(
    argValue(allScenarios(QUICK_PUB_TIME).find((s) => s.name === "stalled-q0")!, "--pub-time"),
    "2",
  );
});

Deno.test("scenarios: --pub-time reaches throughput runs, not the fixed-rate latency runs", () => {
  const quick = allScenarios(2);
  assert.equal(argValue(quick.find((s) => s.name === "pairwise-8-q0-16B")!, "--pub-time"), "2");
  assert.equal(quick.find((s) => s.name === "pairwise-8-q0-16B")!.durationMax, 17);
  assert.equal(argValue(quick.find((s) => s.name === "latency-q0")!, "--pub-time"), "5");
});

Deno.test("scenarios: --only takes names and prefixes at a dash, in table order", () => {
  const all = allScenarios(FULL_PUB_TIME);
  const names = (only: string[]) => selectScenarios(all, only).map((s) => s.name);
  assert.equal(names(["fanin"]).length, 8);
  assert.deepEqual(names(["latency", "fanout-100-q1"]), [
    "fanout-100-q1-16B",
    "fanout-100-q1-1KiB",
    "latency-q0",
    "latency-q1",
  ]);
  assert.deepEqual(names(["conns-1000"]), ["conns-1000"]);
  assert.deepEqual(names(["conns"]), ["conns-1000", "conns-10000"]);
  assert.deepEqual(names(["stalled"]), ["stalled-q0"]);
  assert.deepEqual(names(["latency-q1", "stalled", "fanin-8-q0"]), [
    "fanin-8-q0-16B",
    "fanin-8-q0-1KiB",
    "stalled-q0",
    "latency-q1",
  ]);
  assert.throws(() => selectScenarios(all, ["fan"]), UsageError);
  assert.throws(() => selectScenarios(all, ["latency", "typo"]), /typo/);
});

Deno.test("scenarios: --quick runs the short list unless --only says otherwise", () => {
  assert.deepEqual(scenariosFor(parseOptions(["--quick"])).map((s) => s.name), [...QUICK_NAMES]);
  const picked = scenariosFor(parseOptions(["--quick", "--only", "conns-10000"]));
  assert.deepEqual(picked.map((s) => s.name), ["conns-10000"]);
  assert.equal(scenariosFor(parseOptions([])).length, 37);
  const quick = scenariosFor(parseOptions(["--quick"])).map((s) => s.name);
  assert.deepEqual(quick.slice(5, 8), ["pairwise-8-q1-16B", "stalled-q0", "latency-q1"]);
  assert.deepEqual(scenariosFor(parseOptions(["--quick", "--only", "stalled"])).map((s) => s.name), [
    "stalled-q0",
  ]);
});

Deno.test("scenarios: transport rows are fanin- and fanout-8-q0-16B over each transport, last in the table", () => {
  const all = allScenarios(FULL_PUB_TIME);
  const rows = all.filter((s) => s.kind === "transport");
  assert.deepEqual(
    rows.map((s) => s.name),
    ["fanin", "fanout"].flatMap((p) => ROW_TRANSPORTS.map((t) => `transport-${p}-${t}`)),
  );
  assert.deepEqual(all.slice(-rows.length), rows);
  for (const row of rows) {
    const load = scenario(`${row.pattern}-8-q0-16B`);
    assert.deepEqual(row.args, [...load.args, "--transport", row.transport!], row.name);
    assert.deepEqual([row.clients, row.qos, row.size, row.durationMax], [8, 0, 16, load.durationMax]);
    assert.equal(row.fresh, false);
    assert.equal(transportBaseline(row), `transport-${row.pattern}-tcp`);
  }
  // Reachable by prefix; the throughput names do not catch them.
  const names = (only: string[]) => selectScenarios(all, only).map((s) => s.name);
  assert.equal(names(["transport"]).length, 8);
  assert.deepEqual(names(["transport-fanout"]), ROW_TRANSPORTS.map((t) => `transport-fanout-${t}`));
  assert.ok(!names(["fanin"]).some((n) => n.startsWith("transport")));
  assert.equal(argValue(allScenarios(2).find((s) => s.name === "transport-fanin-ws")!, "--pub-time"), "2");
  // --quick runs the fan-in four.
  assert.deepEqual(
    scenariosFor(parseOptions(["--quick"])).filter((s) => s.kind === "transport").map((s) => s.name),
    ROW_TRANSPORTS.map((t) => `transport-fanin-${t}`),
  );
});

// ---- generator and peer helpers ----

Deno.test("generator: the last JSON object line is the result", () => {
  assert.deepEqual(parseJsonLine('noise\n{"a":1}\n{"recv_rate":5}\n'), { recv_rate: 5 });
  assert.deepEqual(parseJsonLine('{"a":1}\n{"cut off'), { a: 1 });
  assert.equal(parseJsonLine("no json here"), null);
  assert.equal(parseJsonLine("[1,2]"), null);
});

Deno.test("generator: without mqttload anywhere it says so, or falls back to bench/loadgen", async () => {
  // A repository root under /tmp has no shared/tools/mqttload in its ancestors.
  const root = await Deno.makeTempDir({ prefix: "vyoma-bench-test-" });
  const quiet = { warn: () => {}, note: () => {} };
  try {
    await assert.rejects(() => findGenerator({ repoRoot: root, ...quiet }), (e: Error) => {
      assert.ok(e instanceof SetupError);
      assert.match(e.message, /^no load generator found/);
      return true;
    });
    await assert.rejects(
      () => findGenerator({ repoRoot: root, envPath: `${root}/missing`, ...quiet }),
      /MQTTLOAD: .* is not an executable file/,
    );
    await Deno.mkdir(`${root}/bench/loadgen`, { recursive: true });
    await Deno.writeTextFile(`${root}/bench/loadgen/main.ts`, "// stand-in\n");
    const fallback = await findGenerator({ repoRoot: root, ...quiet });
    assert.equal(fallback.kind, "vyoma-loadgen");
    assert.equal(fallback.path, "bench/loadgen/main.ts");
    assert.match(fallback.version, /^source sha256 [0-9a-f]{12}$/);
    assert.ok(fallback.argv.includes("--allow-run"));
    // An explicit binary wins over everything else.
    const explicit = await findGenerator({ repoRoot: root, explicit: "/bin/sh", ...quiet });
    assert.equal(explicit.kind, "mqttload");
    assert.deepEqual(explicit.argv, ["/bin/sh"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("generator and brokers run under a raised descriptor limit, exec'd so the pid is theirs", () => {
  const args = withFdLimit(["/bin/mqttload", "--port", "1"]);
  assert.equal(args[0], "-c");
  assert.match(args[1], /ulimit -n 65536.*exec "\$@"$/);
  assert.deepEqual(args.slice(2), ["sh", "/bin/mqttload", "--port", "1"]);
});

Deno.test("peer configs: loopback port, Vyoma's queue bound as Mosquitto's unlimited one", () => {
  const vyoma = vyomaConfig({ tcp: 41234 }, null);
  assert.match(vyoma, /port: 41234/);
  assert.match(vyoma, /max_queued_messages: 1000000/);
  assert.match(vyoma, /max_connections: 20000/);
  assert.match(vyoma, /level: warn/);
  assert.equal(vyoma.match(/- type:/g)?.length, 1);
  const mosquitto = mosquittoConfig({ tcp: 41235 }, null);
  assert.match(mosquitto, /^listener 41235 127\.0\.0\.1$/m);
  assert.match(mosquitto, /^max_queued_messages 0$/m);
  assert.match(mosquitto, /^set_tcp_nodelay true$/m);
  assert.equal(mosquitto.match(/^listener /gm)?.length, 1);
});

Deno.test("peer configs: a listener per transport for the transport rows, TLS ones with the certificates", () => {
  const certs = { cert: "bench/.cache/certs/server.pem", key: "bench/.cache/certs/server.key" };
  const vyoma = vyomaConfig({ tcp: 1, tls: 2, ws: 3, wss: 4 }, certs);
  const listeners = vyoma.slice(vyoma.indexOf("listeners:"), vyoma.indexOf("limits:"));
  assert.equal(
    listeners,
    [
      "listeners:",
      ...["  - type: tcp", "    host: 127.0.0.1", "    port: 1"],
      ...["  - type: tls", "    host: 127.0.0.1", "    port: 2"],
      ...[`    cert_file: ${certs.cert}`, `    key_file: ${certs.key}`],
      ...["  - type: ws", "    host: 127.0.0.1", "    port: 3", "    path: /mqtt"],
      ...["  - type: wss", "    host: 127.0.0.1", "    port: 4", "    path: /mqtt"],
      ...[`    cert_file: ${certs.cert}`, `    key_file: ${certs.key}`, ""],
    ].join("\n"),
  );
  assert.throws(() => vyomaConfig({ tcp: 1, wss: 4 }, null), /wss listener needs certificates/);
  const mosquitto = mosquittoConfig({ tcp: 1, tls: 2 }, certs);
  assert.match(mosquitto, /^listener 1 127\.0\.0\.1$/m);
  // After the global options, which apply to every listener.
  assert.match(
    mosquitto,
    /^log_type warning\n# TLS.*\nlistener 2 127\.0\.0\.1\ncertfile .*server\.pem\nkeyfile .*server\.key\n$/m,
  );
});

// ---- figures, ratios, flags, targets ----

Deno.test("report: ratios and their formatting", () => {
  assert.equal(ratio(300, 100), 3);
  assert.equal(ratio(null, 100), null);
  assert.equal(ratio(100, null), null);
  assert.equal(ratio(100, 0), null);
  assert.equal(formatRatio(null), "-");
  assert.equal(formatRatio(0.4567), "0.46x");
  assert.equal(formatRatio(12.34), "12.3x");
  assert.equal(formatRatio(250.4), "250x");
  // Memory growth ratios can be tiny; two decimals would print them all as 0.00x.
  assert.equal(formatRatio(0.0042), "0.004x");
  assert.equal(formatRatio(0.01), "0.01x");
  assert.equal(compact(1000), "1k");
  assert.equal(compact(2_500_000), "2.5M");
  assert.equal(compact(250), "250");
  assert.deepEqual(linearTicks(3951), [0, 1000, 2000, 3000, 4000]);
  assert.deepEqual(linearTicks(15209), [0, 5000, 10000, 15000, 20000]);
  assert.deepEqual(linearTicks(20903), [0, 10000, 20000, 30000]);
  assert.deepEqual(linearTicks(1000), [0, 500, 1000]);
});

Deno.test("report: the figure of each kind of scenario", () => {
  assert.equal(
    figureText(scenario("fanin-8-q0-16B"), run("vyoma", "fanin-8-q0-16B", { recv_rate: 123456.7 })),
    "123,457",
  );
  const lat = run("vyoma", "latency-q0", { p50_us: 37.2, p99_us: 65.8 });
  assert.equal(figureText(scenario("latency-q0"), lat), "37 / 66");
  assert.equal(primaryValue(scenario("latency-q0"), lat), 65.8);
  const idle = run("vyoma", "conns-10000", {
    connected: 10000,
    requested: 10000,
    broker_rss_per_conn_b: 712,
  });
  assert.equal(figureText(scenario("conns-10000"), idle), "10,000 / 712 B");
  assert.equal(primaryValue(scenario("conns-10000"), idle), 712);
  assert.equal(
    figureText(scenario("conns-1000"), run("vyoma", "conns-1000", { connect_rate: 25000 })),
    "25,000",
  );
  assert.equal(figureText(scenario("fanin-8-q0-16B"), run("vyoma", "fanin-8-q0-16B", null, 2)), "failed");
  assert.equal(figureText(scenario("fanin-8-q0-16B"), undefined), "-");
});

Deno.test("report: stalled-q0's figure is the broker's RSS growth, then the reading subscriber's rate", () => {
  const s = scenario("stalled-q0");
  const grew = stalledRun("vyoma", 60_000, 63_174, 1_234_567.8); // +3,174 kB
  assert.equal(rssGrowthMb(grew), 3174 / 1024);
  assert.equal(figureText(s, grew), "+3.1 MB (1,234,568 msg/s)");
  assert.equal(primaryValue(s, grew), 3174 / 1024);
  assert.equal(figureText(s, stalledRun("mosquitto", 8000, 8000 + 450 * 1024)), "+450 MB (1,000 msg/s)");
  assert.equal(figureText(s, stalledRun("aedes", 9000, 8500)), "-0.5 MB (1,000 msg/s)");
  assert.equal(figureText(s, stalledRun("aedes", 9000, 8990)), "+0.0 MB (1,000 msg/s)");
  assert.equal(figureText(s, stalledRun("vyoma", null, 8000)), "? (1,000 msg/s)");
  assert.equal(figureText(s, { ...stalledRun("vyoma", 1, 2), result: null, exitCode: null }), "failed");
  assert.equal(formatGrowthMb(1234.5), "+1,235 MB");
  // The reading subscriber's rate is over the publish time: a broker that stopped delivering to everyone
  // after 1 s of 5 gets a fifth of its rate up to then.
  const halted = {
    ...stalledRun("aedes", 1, 2),
    result: throughputResult(50_000, { received: 50_000, pub_time: 5, duration_s: 1 }),
  };
  assert.equal(figureText(s, halted), "+0.0 MB (10,000 msg/s)");
  const slow = { ...halted, result: throughputResult(9, { received: 60_000, pub_time: 5, duration_s: 6 }) };
  assert.equal(figureText(s, slow), "+0.0 MB (10,000 msg/s)");
  // A broker whose RSS did not grow still gets a ratio: growth counts as at least 0.1 MB.
  assert.equal(primaryValue(s, stalledRun("aedes", 9000, 8500)), 0.1);
  assert.equal(primaryValue(s, stalledRun("vyoma", null, 8000)), null);
  assert.equal(
    formatRatio(ratio(primaryValue(s, grew), primaryValue(s, stalledRun("mosquitto", 0, 10240)))),
    "0.31x",
  );
});

Deno.test("report: stalled-q0's target is Vyoma's RSS growth within 64 MB, whatever the peers did", () => {
  const s = scenario("stalled-q0");
  const only = (r: RunRecord) => new Map<BrokerName, RunRecord>([["vyoma", r]]);
  const limitKb = STALLED_GROWTH_LIMIT_MB * 1024;
  const ok = target(s, only(stalledRun("vyoma", 50_000, 50_000 + limitKb)));
  assert.deepEqual([ok.rule, ok.value, ok.met], ["bounded, <=64 MB", "+64.0 MB", true]);
  const miss = target(s, only(stalledRun("vyoma", 50_000, 50_001 + limitKb)));
  assert.equal(miss.met, false);
  assert.equal(target(s, only(stalledRun("vyoma", 50_000, 40_000))).met, true);
  const unread = target(s, only(stalledRun("vyoma", null, 40_000)));
  assert.deepEqual([unread.value, unread.met], ["no result", false]);
  // RSS read but no generator result: there was no load, so no verdict either.
  const noLoad = target(s, only({ ...stalledRun("vyoma", 1, 2), result: null, exitCode: null }));
  assert.deepEqual([noLoad.value, noLoad.met], ["no result", false]);
  assert.equal(target(s, new Map()).met, false);
});

Deno.test("report: flags say when a run did not measure the broker", () => {
  const q1 = scenario("fanin-8-q1-16B");
  const codes = (r: RunRecord, s = q1) => runFlags(s, r).map((f) => f.code);
  assert.deepEqual(codes(run("vyoma", q1.name, throughputResult(1000))), []);
  assert.deepEqual(codes(run("vyoma", q1.name, throughputResult(1000, { gen_cpu_s: 2, broker_cpu_s: 2 }))), [
    "GEN",
  ]);
  assert.deepEqual(codes(run("vyoma", q1.name, throughputResult(1000, { lost: 3, error: "lost 3" }), 3)), [
    "ERR",
    "LOSS",
  ]);
  assert.deepEqual(codes(run("vyoma", q1.name, throughputResult(1000, { dups: 1 }))), ["LOSS"]);
  // QoS 0 may drop by rule; a fixed-rate latency run is not a CPU contest.
  const q0 = scenario("fanin-8-q0-16B");
  assert.deepEqual(codes(run("vyoma", q0.name, throughputResult(1000, { lost: 3 })), q0), []);
  const lat = scenario("latency-q0");
  assert.deepEqual(codes(run("vyoma", lat.name, throughputResult(1000, { gen_cpu_s: 9 })), lat), []);
  // The stalled run is a throughput run as far as the generator goes: GEN applies.
  const stalled = scenario("stalled-q0");
  assert.deepEqual(codes(stalledRun("vyoma", 1, 2), stalled), []);
  assert.deepEqual(
    codes({ ...stalledRun("vyoma", 1, 2), result: throughputResult(1000, { gen_cpu_s: 3 }) }, stalled),
    ["GEN"],
  );
  const err = runFlags(q1, run("vyoma", q1.name, throughputResult(1000, { error: "connect refused" }), 2));
  assert.deepEqual(err, [{ code: "ERR", detail: "exit 2: connect refused" }]);
  const dead: RunRecord = { ...run("vyoma", q1.name, null), exitCode: null, error: "broker did not start" };
  assert.deepEqual(runFlags(q1, dead).map((f) => f.code), ["ERR"]);
});

Deno.test("report: targets compare with the faster peer, latency with Mosquitto", () => {
  const s = scenario("fanin-8-q0-16B");
  const runs = new Map(
    [
      ["vyoma", run("vyoma", s.name, throughputResult(300))],
      ["mosquitto", run("mosquitto", s.name, throughputResult(100))],
      ["aedes", run("aedes", s.name, throughputResult(150))],
    ] as const,
  );
  const t = target(s, runs);
  assert.equal(t.value, "2.00x");
  assert.equal(t.met, false); // needs 2.5x of aedes' 150
  assert.equal(target(scenario("fanin-8-q1-16B"), runs).met, true); // QoS 1 needs 2x
  assert.equal(target(s, new Map([["vyoma", runs.get("vyoma")!]])).met, null);

  const lat = scenario("latency-q1");
  const latRuns = (mine: number) =>
    new Map(
      [
        ["vyoma", run("vyoma", lat.name, { p50_us: 10, p99_us: mine })],
        ["mosquitto", run("mosquitto", lat.name, { p50_us: 10, p99_us: 100 })],
      ] as const,
    );
  assert.equal(target(lat, latRuns(150)).met, true);
  assert.equal(target(lat, latRuns(151)).met, false);

  const idle = scenario("conns-10000");
  const idleRun = (connected: number, perConn: number) =>
    new Map<BrokerName, RunRecord>([[
      "vyoma",
      run("vyoma", idle.name, { connected, requested: 10000, broker_rss_per_conn_b: perConn }),
    ]]);
  assert.equal(target(idle, idleRun(10000, 6144)).met, true);
  assert.equal(target(idle, idleRun(10000, 6200)).met, false);
  assert.equal(target(idle, idleRun(9999, 100)).met, false);
  const rate = scenario("conns-1000");
  assert.equal(
    target(rate, new Map([["vyoma", run("vyoma", rate.name, { connect_rate: 12000 })]])).met,
    true,
  );
});

// ---- table, JSON and SVG ----

/** Transport rows' fan-in msg/s in the fake report (fan-out: three times as many); absent: not served. */
const TRANSPORT_RATES: Record<BrokerName, Partial<Record<string, number>>> = {
  vyoma: { tcp: 1_000_000, tls: 800_000, ws: 600_000, wss: 300_000 },
  mosquitto: { tcp: 100_000, tls: 90_000 },
  aedes: {},
};

function fakeReport(): Report {
  const scenarios = allScenarios(FULL_PUB_TIME);
  const runs: RunRecord[] = [];
  for (const s of scenarios) {
    for (const [broker, factor] of [["vyoma", 3], ["mosquitto", 1], ["aedes", 0.8]] as const) {
      if (s.kind === "throughput") {
        runs.push(run(broker, s.name, throughputResult(50_000 * factor * s.clients)));
      }
      if (s.kind === "stalled") {
        // Vyoma +2 MB, Mosquitto +6 MB, Aedes +7.5 MB.
        runs.push(stalledRun(broker, 50_000, 50_000 + Math.round(6144 / factor), 100_000 * factor));
      }
      if (s.kind === "latency") runs.push(run(broker, s.name, { p50_us: 40 / factor, p99_us: 90 / factor }));
      if (s.kind === "conns") {
        runs.push(run(broker, s.name, {
          connected: s.clients,
          requested: s.clients,
          connect_rate: 9000 * factor,
          broker_rss_per_conn_b: 2000 / factor,
        }));
      }
      const rate = s.kind === "transport" ? TRANSPORT_RATES[broker][s.transport!] : undefined;
      if (rate !== undefined) {
        runs.push(run(broker, s.name, throughputResult(rate * (s.pattern === "fanout" ? 3 : 1))));
      }
    }
  }
  // One broken peer run, with characters that must be escaped in XML.
  const broken = runs.findIndex((r) => r.broker === "aedes" && r.scenario === "conns-10000");
  runs[broken] = run("aedes", "conns-10000", { error: `refused <&> "x"` }, 3);
  return {
    started: "2026-11-25T00:00:00Z",
    finished: "2026-11-25T00:12:00Z",
    wallS: 720,
    argv: [],
    mode: "full",
    pubTime: FULL_PUB_TIME,
    machine: {
      nproc: 2,
      cpuModel: "Test <CPU> & co",
      kernel: "6.1",
      os: "linux",
      memTotalMb: 4096,
      loadavg: [1, 2, 3],
    },
    generator: { kind: "mqttload", path: "/x/mqttload", version: "source sha256 abc" },
    transportGenerator: {
      kind: "vyoma-loadgen",
      path: "bench/loadgen/main.ts",
      version: "source sha256 def",
    },
    brokers: [
      {
        name: "vyoma",
        version: "vyoma 0.1.0",
        runtime: "deno 2.9.6",
        skipped: null,
        config: "",
        starts: [],
        unserved: {},
      },
      {
        name: "mosquitto",
        version: "mosquitto version 2.0.11",
        runtime: null,
        skipped: null,
        config: "",
        starts: [],
        unserved: { ws: "binds every interface", wss: "binds every interface" },
      },
      {
        name: "aedes",
        version: "aedes 1.2.0",
        runtime: "node v20",
        skipped: null,
        config: "",
        starts: [],
        unserved: { tls: "plain TCP only", ws: "plain TCP only", wss: "plain TCP only" },
      },
    ],
    scenarios,
    runs,
  };
}

Deno.test("table: one row per scenario with figures, both ratios, target and flags", () => {
  const report = fakeReport();
  const lines = renderTable(report).split("\n");
  const head = lines.find((l) => l.startsWith("scenario"))!;
  for (const col of ["vyoma", "mosquitto", "aedes", "vyoma/mosquitto", "vyoma/aedes", "target", "flags"]) {
    assert.ok(head.includes(col), col);
  }
  for (const s of report.scenarios) assert.ok(lines.some((l) => l.startsWith(`${s.name} `)), s.name);
  const fanin = lines.find((l) => l.startsWith("fanin-8-q0-16B "))!;
  assert.match(fanin, /1,200,000\s+400,000\s+320,000\s+3\.00x\s+3\.75x\s+>=2\.5x: 3\.00x ok/);
  const latency = lines.find((l) => l.startsWith("latency-q1 "))!;
  assert.match(latency, /13 \/ 30\s+40 \/ 90\s+50 \/ 113\s+0\.33x\s+0\.27x/);
  const stalled = lines.find((l) => l.startsWith("stalled-q0 "))!;
  assert.match(
    stalled,
    /\+2\.0 MB \(300,000 msg\/s\)\s+\+6\.0 MB \(100,000 msg\/s\)\s+\+7\.5 MB \(80,000 msg\/s\)\s+0\.33x\s+0\.27x\s+bounded, <=64 MB: \+2\.0 MB ok/,
  );
  assert.ok(lines.indexOf(stalled) > lines.findIndex((l) => l.startsWith("pairwise-100-q1-1KiB ")));
  assert.ok(lines.indexOf(stalled) < lines.findIndex((l) => l.startsWith("latency-q0 ")));
  const idle = lines.find((l) => l.startsWith("conns-10000 "))!;
  assert.match(idle, /aedes:ERR\(exit 3: refused/);
  assert.ok(lines.some((l) => l.startsWith("# generator: mqttload /x/mqttload")));
  assert.ok(lines.some((l) => l.includes("lower") || l.includes("below 1 is better")));
  assert.ok(lines.some((l) => l.startsWith("# ratios:") && /stalled-q0 \(ratio of RSS growth\)/.test(l)));
  assert.ok(lines.some((l) => l.startsWith("# target:") && l.includes("RSS growth <= 64 MB")));
  assert.match(summaryLine(report), /^targets met: \d+ of 29; QoS 1 loss: none; Vyoma runs clean: 37 of 37$/);
});

Deno.test("table: transport rows in their own section, each against the same broker's tcp row", () => {
  const report = fakeReport();
  const text = renderTable(report);
  const [main, section] = text.split("# transport rows:");
  assert.ok(!main.includes("transport-"), "not in the main table");
  assert.match(section, /fanin-8-q0-16B and fanout-8-q0-16B/);
  assert.match(section, /generator vyoma-loadgen \(source sha256 def\)/);
  const lines = section.split("\n");
  const head = lines.find((l) => l.startsWith("transport row"))!;
  assert.match(head, /^transport row\s+vyoma\s+vyoma\/tcp\s+mosquitto\s+mosquitto\/tcp\s+flags$/);
  const row = (name: string) => lines.find((l) => l.startsWith(`${name} `))!;
  assert.match(row("transport-fanin-tcp"), /1,000,000\s+1\.00x\s+100,000\s+1\.00x$/);
  assert.match(row("transport-fanin-tls"), /800,000\s+0\.80x\s+90,000\s+0\.90x$/);
  assert.match(row("transport-fanout-wss"), /900,000\s+0\.30x\s+skipped\s+-$/);
  // Aedes ran none: no column, one line saying why.
  assert.ok(lines.includes("aedes: no tls, ws, wss rows: plain TCP only"));
  assert.ok(lines.includes("mosquitto: no ws, wss rows: binds every interface"));
  const wss = report.scenarios.find((s) => s.name === "transport-fanin-wss")!;
  assert.equal(transportRatio(report, wss, "vyoma"), 0.3);
  assert.equal(transportRatio(report, wss, "mosquitto"), null);
  // Without its tcp row a transport row has no ratio.
  report.runs = report.runs.filter((r) => r.scenario !== "transport-fanin-tcp");
  assert.equal(transportRatio(report, wss, "vyoma"), null);
  // No transport row selected: no section.
  report.scenarios = report.scenarios.filter((s) => s.kind !== "transport");
  assert.deepEqual(transportSection(report), []);
  assert.ok(!renderTable(report).includes("# transport rows"));
});

Deno.test("table: with only transport rows, no empty main table and no targets to count", () => {
  const report = fakeReport();
  report.scenarios = report.scenarios.filter((s) => s.kind === "transport");
  report.runs = report.runs.filter((r) => r.scenario.startsWith("transport-"));
  const text = renderTable(report);
  assert.ok(!text.split("\n").some((l) => l.startsWith("scenario ")));
  assert.match(summaryLine(report), /^QoS 1 loss: none; Vyoma runs clean: 8 of 8$/);
  assert.equal(targetFor(report.scenarios[0], new Map()), null);
});

Deno.test("table: a skipped peer loses its columns and says why in the header", () => {
  const report = fakeReport();
  report.brokers[2] = { ...report.brokers[2], skipped: "node and npm not found" };
  report.runs = report.runs.filter((r) => r.broker !== "aedes");
  const text = renderTable(report);
  assert.ok(!text.includes("vyoma/aedes"));
  assert.match(text, /aedes: skipped, node and npm not found/);
});

Deno.test("results JSON carries every raw run, its flags and the targets", () => {
  const report = fakeReport();
  const json = JSON.parse(JSON.stringify(resultsJson(report)));
  assert.equal(json.runs.length, report.runs.length);
  assert.equal(json.generator.kind, "mqttload");
  assert.equal(json.targets.length, 29);
  assert.equal(json.transportGenerator.kind, "vyoma-loadgen");
  assert.deepEqual(json.brokers[2].unserved, {
    tls: "plain TCP only",
    ws: "plain TCP only",
    wss: "plain TCP only",
  });
  // Eight rows for each broker that ran them: Vyoma and Mosquitto.
  assert.equal(json.transportRatios.length, 16);
  assert.deepEqual(
    json.transportRatios.find((r: { scenario: string; broker: string }) =>
      r.scenario === "transport-fanout-ws" && r.broker === "vyoma"
    ),
    {
      scenario: "transport-fanout-ws",
      broker: "vyoma",
      transport: "ws",
      recvRate: 1_800_000,
      ratioToTcp: 0.6,
    },
  );
  const stalled = json.runs.find((r: RunRecord) => r.broker === "vyoma" && r.scenario === "stalled-q0");
  assert.deepEqual(stalled.stalled, {
    clientId: "bench-stalled-0123abcd",
    rssBeforeKb: 50_000,
    rssAfterKb: 52_048,
  });
  const bad = json.runs.find((r: { broker: string; scenario: string }) =>
    r.broker === "aedes" && r.scenario === "conns-10000"
  );
  assert.equal(bad.flags[0].code, "ERR");
  assert.equal(fileStamp(new Date("2026-11-25T01:02:03.456Z")), "2026-11-25T01-02-03Z");
});

/** A small XML well-formedness check: balanced tags, quoted attributes, no bare `&` or `<` in text. */
function assertWellFormedXml(xml: string): void {
  const body = xml.replace(/^<\?xml[^?]*\?>\s*/, "");
  const stack: string[] = [];
  const tag = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/y;
  let i = 0;
  let roots = 0;
  while (i < body.length) {
    const lt = body.indexOf("<", i);
    const text = body.slice(i, lt < 0 ? body.length : lt);
    assert.ok(!/&(?!(amp|lt|gt|quot|apos|#\d+);)/.test(text), `bare & in text near ${text.slice(0, 40)}`);
    if (lt < 0) {
      assert.equal(text.trim(), "", "text after the root element");
      break;
    }
    if (stack.length === 0) assert.equal(text.trim(), "", "text outside the root element");
    tag.lastIndex = lt;
    const m = tag.exec(body);
    assert.ok(m, `malformed tag at ${body.slice(lt, lt + 60)}`);
    const [, close, name, attrs, selfClose] = m;
    assert.ok(!/&(?!(amp|lt|gt|quot|apos|#\d+);)/.test(attrs), `bare & in attributes of <${name}>`);
    if (close) {
      assert.equal(stack.pop(), name, `</${name}> closes the wrong element`);
    } else if (!selfClose) {
      if (stack.length === 0) roots++;
      stack.push(name);
    } else if (stack.length === 0) {
      roots++;
    }
    i = tag.lastIndex;
  }
  assert.deepEqual(stack, [], "unclosed elements");
  assert.equal(roots, 1, "exactly one root element");
}

Deno.test("svg: well-formed, 1000 px wide, every scenario and broker in it", () => {
  const report = fakeReport();
  const svg = renderSvg(report);
  assertWellFormedXml(svg);
  assert.match(svg, /<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="1000" height="\d+"/);
  for (const s of report.scenarios) assert.ok(svg.includes(`>${s.name}</text>`), s.name);
  for (const b of BROKERS) assert.ok(svg.includes(`>${b}</text>`), b);
  assert.ok(svg.includes("Test &lt;CPU&gt; &amp; co"));
  assert.ok(svg.includes("[ERR]"));
});

Deno.test("svg: a section of RSS growth bars for the stalled subscriber, one per broker", () => {
  const svg = renderSvg(fakeReport());
  const title = "Memory while a subscriber stops reading: broker RSS growth";
  const start = svg.indexOf(title);
  assert.ok(start > svg.indexOf("Throughput: "), "after the throughput section");
  assert.ok(start < svg.indexOf("Latency at "), "before the latency section");
  const section = svg.slice(start, svg.indexOf("Latency at "));
  assert.ok(section.includes(">stalled-q0</text>"));
  assert.ok(section.includes("target &lt;= 64 MB"));
  for (const [broker, text] of [["vyoma", "+2.0 MB"], ["mosquitto", "+6.0 MB"], ["aedes", "+7.5 MB"]]) {
    assert.ok(section.includes(`<title>${broker}: ${text} (`), broker);
  }
  // Linear axis: the marker at 64 MB sets the scale here, ticks 0, 20, 40, 60, 80.
  assert.ok(section.includes(">80</text>") && !section.includes(">1k</text>"));
  // Without a stalled run the section is left out.
  const report = fakeReport();
  report.scenarios = report.scenarios.filter((s) => s.kind !== "stalled");
  assert.ok(!renderSvg(report).includes(title));
});

Deno.test("svg: a section of transport bars with their ratio to tcp, for the brokers that ran them", () => {
  const svg = renderSvg(fakeReport());
  const start = svg.indexOf("Transports: messages received per second");
  assert.ok(start > svg.indexOf("Idle connections: "), "the last section");
  const section = svg.slice(start);
  assert.ok(section.includes("<title>vyoma: 600,000 msg/s, 0.60x tcp</title>"));
  assert.ok(section.includes("<title>mosquitto: 90,000 msg/s, 0.90x tcp</title>"));
  assert.ok(section.includes(">mosquitto: skipped</text>"));
  assert.ok(!section.includes("aedes"));
});

Deno.test("svg: stays well-formed with missing results and a single broker", () => {
  const report = fakeReport();
  report.brokers = [report.brokers[0]];
  report.runs = report.runs.filter((r) => r.broker === "vyoma").map((r) => ({
    ...r,
    result: null,
    exitCode: 2,
  }));
  const svg = renderSvg(report);
  assertWellFormedXml(svg);
  assert.ok(svg.includes("no result"));
  assert.equal(escapeXml(`a<b>&"c'`), "a&lt;b&gt;&amp;&quot;c&apos;");
});

// ---- the stalled subscriber's packets ----

Deno.test("stalled subscriber: CONNECT and SUBSCRIBE are what mqtt-packet writes", () => {
  const theirsConnect = mqttPacket.generate({
    cmd: "connect",
    protocolId: "MQTT",
    protocolVersion: 4,
    clean: true,
    keepalive: 0,
    clientId: "bench-stalled-0123abcd",
  });
  assert.deepEqual([...connectPacket("bench-stalled-0123abcd")], [...theirsConnect]);
  const theirsSubscribe = mqttPacket.generate({
    cmd: "subscribe",
    messageId: 1,
    subscriptions: [{ topic: "#", qos: 0 }],
  });
  assert.deepEqual([...subscribePacket(1, "#")], [...theirsSubscribe]);
});

Deno.test("stalled subscriber: whole packets are split off a byte stream, partial ones wait", () => {
  const connack = [0x20, 2, 0, 0];
  const suback = [0x90, 3, 0, 1, 0];
  const both = splitPacket(new Uint8Array([...connack, ...suback]))!;
  assert.equal(both.type, 2);
  assert.deepEqual([...both.body], [0, 0]);
  const next = splitPacket(both.rest)!;
  assert.equal(next.type, 9);
  assert.deepEqual([...next.body], [0, 1, 0]);
  assert.equal(next.rest.length, 0);
  assert.equal(splitPacket(new Uint8Array([0x90])), null);
  assert.equal(splitPacket(new Uint8Array([0x90, 3, 0, 1])), null);
  // A two-byte remaining length: 200 = 0xc8 0x01.
  const big = splitPacket(new Uint8Array([0x30, 0xc8, 0x01, ...new Array(200).fill(7)]))!;
  assert.equal(big.body.length, 200);
  assert.throws(() => splitPacket(new Uint8Array([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])), /remaining length/);
});

Deno.test("stalled subscriber: VmRSS from /proc/PID/status", () => {
  const status = "Name:\tmosquitto\nVmPeak:\t   12000 kB\nVmRSS:\t    8652 kB\nRssAnon:\t 1200 kB\n";
  assert.equal(parseVmRssKb(status), 8652);
  assert.equal(parseVmRssKb("Name:\tkthreadd\nState:\tS (sleeping)\n"), null);
});

Deno.test("the well-formedness check itself rejects broken XML", () => {
  assert.throws(() => assertWellFormedXml("<svg><g></svg>"));
  assert.throws(() => assertWellFormedXml("<svg><text>a & b</text></svg>"));
  assert.throws(() => assertWellFormedXml("<svg><rect x=1/></svg>"));
  assert.throws(() => assertWellFormedXml("<svg/><svg/>"));
  assertWellFormedXml('<?xml version="1.0"?>\n<svg a="1"><g><text>x &amp; y</text></g><rect/></svg>\n');
});
