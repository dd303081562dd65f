/**
 * Bad input over a real socket: each malformed or forbidden byte sequence must close only the connection
 * that sent it, be logged once, count in metrics.protocolErrors, and leave other clients working.
 *
 * The bad connection is a bare `Deno.connect` (see `BareConn`) so the test knows its local port and can find
 * the broker's log lines about it; a second, already-connected client (the "witness", subscribed to `#`)
 * proves the broker still serves others, and, because it sees every routed message, that the bad input
 * delivered nothing.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import mqttPacket from "mqtt-packet";
import type * as MP from "mqtt-packet";
import { type ConfigOverrides, startBroker, type TestBroker } from "./helpers/broker.ts";
import { utf8Bytes, varInt } from "./helpers/bytes.ts";
import { connectPacket, type Packet, RawClient, summary } from "./helpers/raw.ts";
import { until, within } from "./helpers/wait.ts";

// --- Local helpers ----------------------------------------------------------------------------------------

/** A raw TCP connection that knows its own local port and records every byte the broker sends. */
class BareConn implements AsyncDisposable {
  readonly localPort: number;
  readonly #conn: Deno.TcpConn;
  readonly #received: number[] = [];
  readonly #reading: Promise<void>;
  #ended = false;
  #wake: (() => void) | null = null;

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
    this.localPort = (conn.localAddr as Deno.NetAddr).port;
    this.#reading = this.#read();
  }

  static async open(port: number): Promise<BareConn> {
    return new BareConn(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /** Each write leaves as its own segment. */
  setNoDelay(): void {
    this.#conn.setNoDelay(true);
  }

  get ended(): boolean {
    return this.#ended;
  }

  async send(bytes: Uint8Array | number[]): Promise<void> {
    const data = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    for (let at = 0; at < data.length;) at += await this.#conn.write(data.subarray(at));
  }

  /** CONNECT (3.1.1, clean session) as `clientId`, asserting the broker accepts it with CONNACK 0. */
  async connect(clientId: string, fields: Partial<MP.IConnectPacket> = {}): Promise<void> {
    await this.send(connectBytes({ clientId, ...fields }));
    await this.#waitFor(() => this.#received.length >= 4 || this.#ended, "CONNACK");
    assert.deepEqual(this.#received.splice(0, 4), [0x20, 0x02, 0x00, 0x00], "expected CONNACK accepted");
  }

  /** Waits until the broker closes the connection; returns the bytes it sent (after any CONNACK taken). */
  async closedByBroker(ms?: number): Promise<number[]> {
    await this.#waitFor(() => this.#ended, "the broker to close the connection", ms);
    return this.#received.splice(0);
  }

  async close(): Promise<void> {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
    await this.#reading;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #read(): Promise<void> {
    const buffer = new Uint8Array(4096);
    try {
      while (true) {
        const n = await this.#conn.read(buffer);
        if (n === null) break;
        this.#received.push(...buffer.subarray(0, n));
        this.#wake?.();
      }
    } catch {
      // reset by the broker, or closed by us
    }
    this.#ended = true;
    this.#wake?.();
  }

  #waitFor(ready: () => boolean, what: string, ms?: number): Promise<void> {
    return within(
      new Promise<void>((resolve) => {
        const check = () => {
          if (!ready()) return;
          this.#wake = null;
          resolve();
        };
        this.#wake = check;
        check();
      }),
      what,
      ms,
    );
  }
}

/** A CONNECT (3.1.1, clean session unless `fields` say otherwise) as bytes. */
function connectBytes(fields: Partial<MP.IConnectPacket> = {}): Uint8Array {
  return mqttPacket.generate(connectPacket(fields));
}

/** `count` reproducible pseudo-random bytes: the Numerical Recipes LCG, top byte of each state. */
function lcgBytes(seed: number, count: number): number[] {
  const out: number[] = [];
  let state = seed >>> 0;
  for (let i = 0; i < count; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out.push(state >>> 24);
  }
  return out;
}

/** Log lines from `from` on that name this connection: its address:port, or its client id. */
function linesAbout(broker: TestBroker, from: number, port: number, clientId?: string): string[] {
  const address = new RegExp(`127\\.0\\.0\\.1:${port}(?!\\d)`);
  return broker.logs.slice(from).filter((line) =>
    address.test(line) || (clientId !== undefined && line.includes(`"${clientId}"`))
  );
}

/** An already-connected client subscribed to everything at QoS 1. */
function connectWitness(port: number): Promise<RawClient> {
  return RawClient.subscriber(port, { clientId: "witness" }, [["#", 1]]);
}

/**
 * The witness publishes a QoS 1 message to itself: its next two packets must be exactly that PUBLISH and
 * its PUBACK. Anything routed earlier (a message the bad input should not have produced) would show up
 * first and fail this.
 */
async function assertStillServes(witness: RawClient, id: number): Promise<void> {
  const payload = `check ${id}`;
  await witness.publish("witness/check", payload, { qos: 1, messageId: id });
  const packets: Packet[] = [await witness.next(), await witness.next()];
  const ack = packets.find((p) => p.cmd === "puback");
  const message = packets.find((p) => p.cmd === "publish");
  assert.ok(ack && message, `expected PUBLISH + PUBACK, got ${JSON.stringify(packets.map(summary))}`);
  assert.equal(ack.messageId, id);
  assert.equal(message.topic, "witness/check");
  assert.equal(message.payload.toString(), payload);
  assert.equal(message.qos, 1);
  await witness.send({ cmd: "puback", messageId: message.messageId });
}

interface BadInput {
  /** Complete a CONNECT as this client id before sending the bad bytes. */
  clientId?: string;
  overrides?: ConfigOverrides;
  /** Send one byte at a time, each followed by a witness round trip, so the broker reads them apart. */
  byteByByte?: boolean;
}

/**
 * The whole contract for one bad input: the connection that sent `bytes` is closed with nothing more sent
 * to it, exactly one log line names it, protocolErrors is 1, and the witness still works.
 */
async function assertRejectedAlone(bytes: number[], options: BadInput = {}): Promise<void> {
  await using broker = await startBroker(options.overrides);
  await using witness = await connectWitness(broker.port);
  await using bad = await BareConn.open(broker.port);
  if (options.clientId !== undefined) await bad.connect(options.clientId);
  const logFrom = broker.logs.length;

  if (options.byteByByte) {
    bad.setNoDelay();
    for (const byte of bytes) {
      await bad.send([byte]);
      await witness.assertIdle();
    }
  } else {
    await bad.send(bytes);
  }
  const answer = await bad.closedByBroker();
  assert.deepEqual(answer, [], "the broker must close without answering");
  assert.equal(broker.server.metrics.protocolErrors, 1);

  await assertStillServes(witness, 2);
  const lines = linesAbout(broker, logFrom, bad.localPort, options.clientId);
  assert.equal(lines.length, 1, `expected one log line about the connection, got:\n${lines.join("\n")}`);
  assert.match(
    lines[0],
    options.clientId === undefined ? /closed before CONNECT completed/ : /disconnected: /,
  );
  assert.equal(broker.server.metrics.protocolErrors, 1, "counted once");
}

// --- The bad inputs ---------------------------------------------------------------------------------------

const TEN_MB = 10 * 1024 * 1024;

interface BadCase {
  name: string;
  bytes: number[];
  /** Send a valid CONNECT first (the bad bytes come on an established MQTT connection). */
  connected: boolean;
  overrides?: ConfigOverrides;
}

const BAD_CASES: BadCase[] = [
  {
    name: "remaining length of 5 bytes (continuation bit on the 4th) before CONNECT",
    bytes: [0x10, 0xff, 0xff, 0xff, 0xff, 0x01],
    connected: false,
  },
  {
    name: "remaining length of 5 bytes (continuation bit on the 4th) after CONNECT",
    bytes: [0x30, 0x80, 0x80, 0x80, 0x80, 0x01],
    connected: true,
  },
  {
    name: "[MQTT-3.6.1-1] PUBREL with header flags 0x60 instead of 0x62",
    bytes: [0x60, 2, 0, 1],
    connected: true,
  },
  {
    name: "[MQTT-3.8.1-1] SUBSCRIBE with header flags 0x80 instead of 0x82",
    bytes: [0x80, 6, 0, 1, 0, 1, ...utf8Bytes("a"), 0],
    connected: true,
  },
  {
    name: "[MQTT-3.10.1-1] UNSUBSCRIBE with header flags 0xA0 instead of 0xA2",
    bytes: [0xa0, 5, 0, 1, 0, 1, ...utf8Bytes("a")],
    connected: true,
  },
  {
    name: "[MQTT-2.2.2-2] PINGREQ with reserved header flag set (0xC1)",
    bytes: [0xc1, 0],
    connected: true,
  },
  {
    name: "[MQTT-2.2.2-2] DISCONNECT with reserved header flag set (0xE1)",
    bytes: [0xe1, 0],
    connected: true,
  },
  {
    name: "[MQTT-2.2.2-2] [MQTT-3.1.4-1] CONNECT with reserved header flag set (0x11)",
    bytes: [0x11, ...connectBytes({ clientId: "flags" }).subarray(1)],
    connected: false,
  },
  {
    name: "[MQTT-4.8.0-1] reserved packet type 0",
    bytes: [0x00, 0],
    connected: true,
  },
  {
    name: "[MQTT-4.8.0-1] packet type 15 (AUTH does not exist in MQTT 3.1.1)",
    bytes: [0xf0, 0],
    connected: true,
  },
  {
    name: "[MQTT-3.1.0-1] PUBLISH as the first packet",
    bytes: [0x30, 5, 0, 1, ...utf8Bytes("a"), ...utf8Bytes("hi")],
    connected: false,
  },
  {
    name: "[MQTT-3.1.0-1] PINGREQ as the first packet",
    bytes: [0xc0, 0],
    connected: false,
  },
  {
    name: "[MQTT-3.1.0-1] 64 pseudo-random bytes (LCG seed 42) as the first packet",
    bytes: lcgBytes(42, 64),
    connected: false,
  },
  {
    name: "[MQTT-3.1.4-1] CONNECT truncated inside the client id",
    // Name, level 4, clean session, keep-alive 0, then a client id announcing 10 bytes with 3 present.
    bytes: [0x10, 15, 0, 4, ...utf8Bytes("MQTT"), 4, 0x02, 0, 0, 0, 10, ...utf8Bytes("abc")],
    connected: false,
  },
  {
    name: "[MQTT-4.8.0-1] PUBLISH whose topic length points past the end of the packet",
    bytes: [0x30, 5, 0, 0x10, ...utf8Bytes("abc")],
    connected: true,
  },
  {
    name: "[MQTT-4.8.0-1] PUBACK with remaining length 3",
    bytes: [0x40, 3, 0, 1, 0],
    connected: true,
  },
  {
    name: "[MQTT-4.8.0-1] PINGREQ with remaining length 1",
    bytes: [0xc0, 1, 0],
    connected: true,
  },
  {
    name: "[MQTT-1.5.3-1] PUBLISH topic with invalid UTF-8 (0xC3 0x28)",
    bytes: [0x30, 6, 0, 2, 0xc3, 0x28, ...utf8Bytes("hi")],
    connected: true,
  },
  {
    name: "[MQTT-1.5.3-2] PUBLISH topic containing U+0000",
    bytes: [0x30, 7, 0, 3, ...utf8Bytes("a"), 0x00, ...utf8Bytes("b"), ...utf8Bytes("hi")],
    connected: true,
  },
  {
    name: "[MQTT-1.5.3-1] PUBLISH topic with an encoded UTF-16 surrogate (0xED 0xA0 0x80 = U+D800)",
    bytes: [0x30, 7, 0, 3, 0xed, 0xa0, 0x80, ...utf8Bytes("hi")],
    connected: true,
  },
  {
    name: "[MQTT-1.5.3-1] [MQTT-3.1.4-1] CONNECT with a client id that is invalid UTF-8 (0xC3 0x28)",
    bytes: [0x10, 14, 0, 4, ...utf8Bytes("MQTT"), 4, 0x02, 0, 0, 0, 2, 0xc3, 0x28],
    connected: false,
  },
  {
    name: "[MQTT-1.5.3-2] [MQTT-3.1.4-1] CONNECT with a will topic containing U+0000",
    bytes: [
      ...connectBytes({
        clientId: "nul-will",
        will: { topic: "w\u0000x", payload: Buffer.from("p"), qos: 0, retain: false },
      }),
    ],
    connected: false,
  },
  {
    name: "[MQTT-3.3.1-4] PUBLISH with both QoS bits set",
    bytes: [0x36, 5, 0, 1, ...utf8Bytes("a"), 0, 1],
    connected: true,
  },
  {
    name: "[MQTT-4.8.0-1] CONNACK sent by a client",
    bytes: [0x20, 2, 0, 0],
    connected: true,
  },
  {
    name: "[MQTT-4.8.0-1] SUBACK sent by a client",
    bytes: [0x90, 3, 0, 1, 0],
    connected: true,
  },
  {
    name: "[MQTT-4.8.0-1] UNSUBACK sent by a client",
    bytes: [0xb0, 2, 0, 1],
    connected: true,
  },
  {
    name: "[MQTT-4.8.0-1] PINGRESP sent by a client",
    bytes: [0xd0, 0],
    connected: true,
  },
  {
    name: "limits.max_packet_size 1024: a PUBLISH fixed header announcing 10 MB, body never sent",
    bytes: [0x32, ...varInt(TEN_MB)],
    connected: true,
    overrides: { limits: { max_packet_size: 1024 } },
  },
  {
    name: "limits.max_packet_size 1024: a CONNECT fixed header announcing 10 MB, body never sent",
    bytes: [0x10, ...varInt(TEN_MB)],
    connected: false,
    overrides: { limits: { max_packet_size: 1024 } },
  },
  {
    name: "default limits: remaining length 268435455 (the largest encodable), body never sent",
    bytes: [0x30, 0xff, 0xff, 0xff, 0x7f],
    connected: true,
  },
];

const BYTE_BY_BYTE: BadCase[] = [
  {
    // The fourth length byte's continuation bit already makes it malformed; no fifth byte is sent.
    name: "remaining length with a continuation bit on its 4th byte, one byte per read",
    bytes: [0x30, 0x80, 0x80, 0x80, 0x80],
    connected: true,
  },
  {
    name: "limits.max_packet_size 1024: a fixed header announcing 10 MB, one byte per read",
    bytes: [0x30, ...varInt(TEN_MB)],
    connected: true,
    overrides: { limits: { max_packet_size: 1024 } },
  },
  {
    name: "[MQTT-4.8.0-1] PINGREQ with remaining length 1, one byte per read",
    bytes: [0xc0, 1, 0],
    connected: true,
  },
];

for (const bad of BYTE_BY_BYTE) {
  Deno.test(`bad input split across reads closes only that connection: ${bad.name}`, () =>
    assertRejectedAlone(bad.bytes, { clientId: "bad-client", overrides: bad.overrides, byteByByte: true }));
}

for (const bad of BAD_CASES) {
  Deno.test(`bad input closes only that connection: ${bad.name}`, () =>
    assertRejectedAlone(bad.bytes, {
      clientId: bad.connected ? "bad-client" : undefined,
      overrides: bad.overrides,
    }));
}

// --- Cases with more to check -----------------------------------------------------------------------------

Deno.test("a truncated PUBLISH is held, never delivered, and its client's close leaves the broker healthy", async () => {
  await using broker = await startBroker();
  await using witness = await connectWitness(broker.port);
  await using bad = await BareConn.open(broker.port);
  const will = { topic: "trunc/will", payload: Buffer.from("gone"), qos: 0 as const, retain: false };
  await bad.connect("truncated", { will });
  const logFrom = broker.logs.length;

  // QoS 0 PUBLISH to "trunc/x" announcing 100 bytes of which only 20 are sent; the socket stays open.
  const sent = [0x30, 100, 0, 7, ...utf8Bytes("trunc/x"), ...utf8Bytes("partial-body")];
  assert.ok(sent.length < 102);
  await bad.send(sent);
  await assertStillServes(witness, 2); // the broker is not blocked by the pending packet
  assert.ok(
    !broker.loggedDisconnect("truncated"),
    "the broker waits for the body",
  );

  await bad.close();
  await broker.disconnected("truncated");
  // An abnormal close publishes the will; the partial PUBLISH is never delivered (the witness's own
  // check must come right after the will).
  await witness.expectPublish("trunc/will", "gone");
  await assertStillServes(witness, 3);

  const lines = linesAbout(broker, logFrom, bad.localPort, "truncated");
  assert.equal(lines.length, 1, lines.join("\n"));
  await using next = await RawClient.connected(broker.port, { clientId: "after-truncated" });
  await next.assertIdle();
});

Deno.test("a truncated CONNECT followed by the client closing leaves the broker healthy", async () => {
  await using broker = await startBroker();
  await using witness = await connectWitness(broker.port);
  await using bad = await BareConn.open(broker.port);
  const full = connectBytes({ clientId: "never-completes" });
  await bad.send(full.subarray(0, full.length - 5));
  await assertStillServes(witness, 2);
  assert.equal(bad.ended, false);
  await bad.close();

  await until(() => linesAbout(broker, 0, bad.localPort).length > 0, "the close to be logged");
  const lines = linesAbout(broker, 0, bad.localPort);
  assert.equal(lines.length, 1, lines.join("\n"));
  assert.match(lines[0], /closed before/);
  assert.equal(broker.server.broker.sessions.get("never-completes"), undefined);
  await assertStillServes(witness, 3);
  await using next = await RawClient.connected(broker.port, { clientId: "after-truncated" });
  await next.assertIdle();
});

Deno.test("[MQTT-2.2.2-2] a DISCONNECT with bad flags is a protocol error, so the will is published", async () => {
  await using broker = await startBroker();
  await using witness = await connectWitness(broker.port);
  await using bad = await BareConn.open(broker.port);
  await bad.connect("bad-disconnect", {
    will: { topic: "will/e1", payload: Buffer.from("bye"), qos: 0, retain: false },
  });
  await bad.send([0xe1, 0]);
  assert.deepEqual(await bad.closedByBroker(), []);
  await witness.expectPublish("will/e1", "bye");
  assert.equal(broker.server.metrics.protocolErrors, 1);
});

Deno.test("[MQTT-1.5.3-1] a topic containing a real U+FFFD (0xEF 0xBF 0xBD) is well-formed and delivered", async () => {
  await using broker = await startBroker();
  await using witness = await connectWitness(broker.port);
  await using pub = await BareConn.open(broker.port);
  await pub.connect("replacement-char");
  await pub.send([0x30, 9, 0, 5, ...utf8Bytes("r/"), 0xef, 0xbf, 0xbd, ...utf8Bytes("hi")]);
  await witness.expectPublish("r/\uFFFD", "hi");
  assert.equal(pub.ended, false);
  assert.equal(broker.server.metrics.protocolErrors, 0);
});

Deno.test("[MQTT-1.5.3-2] SUBSCRIBE with U+0000 in a topic filter closes the connection, no SUBACK", async () => {
  await using broker = await startBroker();
  await using witness = await connectWitness(broker.port);
  await using bad = await BareConn.open(broker.port);
  await bad.connect("nul-filter");
  await bad.send([0x82, 8, 0, 1, 0, 3, ...utf8Bytes("a"), 0x00, ...utf8Bytes("b"), 0]);
  assert.deepEqual(await bad.closedByBroker(), [], "no SUBACK");
  assert.equal(broker.server.metrics.protocolErrors, 1);
  assert.equal(broker.server.broker.sessions.get("nul-filter"), undefined);
  await assertStillServes(witness, 2);
});

Deno.test("50 garbage connections in parallel do not disturb a QoS 1 stream and are all counted", async () => {
  const cases = BAD_CASES.filter((c) => !c.overrides);
  const total = 50;
  const messages = 100;
  await using broker = await startBroker();
  await using sub = await RawClient.subscriber(broker.port, { clientId: "stream-sub" }, [["stream", 1]]);
  await using pub = await RawClient.connected(broker.port, { clientId: "stream-pub" });

  const publish = async () => {
    for (let i = 1; i <= messages; i++) await pub.publishAcked("stream", String(i), { qos: 1, messageId: i });
  };
  const receive = async () => {
    const got: string[] = [];
    while (got.length < messages) {
      const message = await sub.expect("publish");
      got.push(message.payload.toString());
      await sub.send({ cmd: "puback", messageId: message.messageId });
    }
    return got;
  };
  const garbage = () =>
    Promise.all(Array.from({ length: total }, async (_, i) => {
      const bad = cases[i % cases.length];
      await using conn = await BareConn.open(broker.port);
      const clientId = bad.connected ? `garbage-${i}` : undefined;
      if (clientId) await conn.connect(clientId);
      await conn.send(bad.bytes);
      assert.deepEqual(await conn.closedByBroker(), [], bad.name);
      return { port: conn.localPort, clientId, name: bad.name };
    }));

  const [, received, closed] = await Promise.all([publish(), receive(), garbage()]);
  assert.deepEqual(received, Array.from({ length: messages }, (_, i) => String(i + 1)));
  assert.equal(broker.server.metrics.protocolErrors, total);
  for (const { port, clientId, name } of closed) {
    const lines = linesAbout(broker, 0, port, clientId).filter((l) => !l.includes(" connected from "));
    assert.equal(lines.length, 1, `${name}: ${lines.join("\n")}`);
  }
  await using late = await RawClient.connected(broker.port, { clientId: "late" });
  await late.assertIdle();
});
