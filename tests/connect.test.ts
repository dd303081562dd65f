/**
 * CONNECT and CONNACK (MQTT 3.1.1 sections 3.1 and 3.2): protocol name and level, connect flags, client
 * identifiers, session present, refusals, session takeover and the connect timeout.
 */

import assert from "node:assert/strict";
import { startBroker, type TestBroker } from "./helpers/broker.ts";
import { connectMqttJs } from "./helpers/mqttjs.ts";
import { mosquittoTest, runMosquittoTool } from "./helpers/mosquitto.ts";
import { concat, frame, u16, utf8, utf8Bytes } from "./helpers/bytes.ts";
import { RawClient } from "./helpers/raw.ts";
import { until, within } from "./helpers/wait.ts";

// --- Local helpers -----------------------------------------------------------------------------------

/** CONNECT flag bits (MQTT 3.1.1 section 3.1.2.3). */
const RESERVED = 0x01;
const CLEAN = 0x02;
const WILL = 0x04;
const WILL_QOS_SHIFT = 3;
const WILL_RETAIN = 0x20;
const PASSWORD = 0x40;
const USERNAME = 0x80;

interface ConnectFields {
  name?: string;
  level?: number;
  /** The flags byte exactly as sent; derived from the other fields (with clean session 1) when left out. */
  flags?: number;
  keepalive?: number;
  clientId?: string;
  willTopic?: string;
  willPayload?: string;
  username?: string;
  password?: string;
  /** Bytes after the last field, inside the remaining length. */
  trailing?: number[];
}

/**
 * A CONNECT built byte by byte, for what mqtt-packet refuses to encode (bad flags, unknown names or levels,
 * empty client ids that a 3.1.1 client may not send).
 */
function connectFrame(fields: ConnectFields): Uint8Array {
  const flags = fields.flags ??
    (CLEAN | (fields.willTopic !== undefined ? WILL : 0) | (fields.username !== undefined ? USERNAME : 0) |
      (fields.password !== undefined ? PASSWORD : 0));
  const parts = [
    utf8(fields.name ?? "MQTT"),
    [fields.level ?? 4, flags, ...u16(fields.keepalive ?? 0)],
    utf8(fields.clientId ?? ""),
  ];
  if (fields.willTopic !== undefined) parts.push(utf8(fields.willTopic), utf8(fields.willPayload ?? ""));
  if (fields.username !== undefined) parts.push(utf8(fields.username));
  if (fields.password !== undefined) parts.push(utf8(fields.password));
  if (fields.trailing) parts.push(fields.trailing);
  return frame(0x10, concat(parts));
}

/** Opens a connection, sends `bytes` and returns the client, for checking what the broker answers. */
async function sendRaw(broker: TestBroker, bytes: Uint8Array, version: 3 | 4 = 4): Promise<RawClient> {
  const client = await RawClient.open(broker.port, version);
  await client.sendBytes(bytes);
  return client;
}

/** Asserts the next packet is CONNACK with `code` and session present 0, and that the broker then closes. */
async function assertRefused(client: RawClient, code: number): Promise<void> {
  const connack = await client.expect("connack");
  assert.equal(connack.returnCode, code);
  assert.equal(connack.sessionPresent, false, "a refused CONNACK has session present 0 [MQTT-3.2.2-4]");
  await client.assertClosedSilently();
}

const port = (broker: TestBroker) => String(broker.port);

// --- Protocol name and level -------------------------------------------------------------------------

Deno.test("[MQTT-3.1.2-2] protocol name MQTT with level 4 is accepted with CONNACK 0", async () => {
  await using broker = await startBroker();
  await using client = await sendRaw(broker, connectFrame({ clientId: "v4" }));
  const connack = await client.expect("connack");
  assert.equal(connack.returnCode, 0);
  assert.equal(connack.sessionPresent, false);
  await client.assertIdle();
  assert.ok(
    broker.logs.some((l) => l.includes(`client "v4" connected from 127.0.0.1:`) && l.includes("MQTT 3.1.1")),
  );
});

Deno.test("[MQTT-3.1.2-2] an MQTT 5 CONNECT (level 5) is answered with an MQTT 5 CONNACK", async () => {
  await using broker = await startBroker();
  await using client = await RawClient.open(broker.port, 5);
  await client.send({ cmd: "connect", protocolId: "MQTT", protocolVersion: 5, clientId: "v5", clean: true });
  const connack = await client.expect("connack");
  assert.equal(connack.reasonCode, 0);
  // Only a 5.0 CONNACK has properties; the broker announces its limits there.
  assert.equal(connack.properties?.receiveMaximum, 32);
  await client.assertIdle();
  assert.ok(broker.logs.some((l) => l.includes(`client "v5" connected`) && l.includes("MQTT 5.0")));
});

mosquittoTest("[MQTT-3.1.2-2] mosquitto_pub -V mqttv5 connects and its message arrives", async () => {
  await using broker = await startBroker();
  await using sub = await RawClient.subscriber(broker.port, { clientId: "watch" }, [["v5/x", 0]]);
  const result = await runMosquittoTool("mosquitto_pub", [
    ...["-p", port(broker), "-V", "mqttv5", "-i", "mosq-v5", "-t", "v5/x", "-m", "x"],
  ]);
  assert.equal(result.code, 0, result.stderr);
  await sub.expectPublish("v5/x", "x");
});

Deno.test("[MQTT-3.1.2-2] levels that do not match the protocol name get CONNACK 1", async () => {
  await using broker = await startBroker();
  for (const [name, level] of [["MQTT", 3], ["MQTT", 6], ["MQTT", 0], ["MQIsdp", 4]] as const) {
    await using client = await sendRaw(broker, connectFrame({ name, level, clientId: `${name}-${level}` }));
    await assertRefused(client, 1);
  }
  assert.equal(broker.server.broker.sessions.size, 0);
});

Deno.test("[MQTT-3.1.2-1] an unknown protocol name closes the connection without CONNACK", async () => {
  await using broker = await startBroker();
  for (const name of ["MQTX", "mqtt", "MQIsdp3", ""]) {
    await using client = await sendRaw(broker, connectFrame({ name, clientId: "who" }));
    await client.assertClosedSilently();
  }
  assert.equal(broker.server.broker.sessions.size, 0);
  assert.ok(broker.logs.some((l) => l.includes(`unknown protocol name "MQTX"`)));
});

mosquittoTest("MQTT 3.1 (MQIsdp, level 3) is accepted and can subscribe and receive", async () => {
  await using broker = await startBroker();
  await using client = await sendRaw(broker, connectFrame({ name: "MQIsdp", level: 3, clientId: "old" }), 3);
  assert.equal((await client.expect("connack")).returnCode, 0);
  await client.subscribe([["v31/#", 1]]);
  // mosquitto_pub speaking MQTT 3.1 too.
  const pub = await runMosquittoTool("mosquitto_pub", [
    ...["-p", port(broker), "-V", "mqttv31", "-i", "old-pub", "-q", "1", "-t", "v31/x", "-m", "hello"],
  ]);
  assert.equal(pub.code, 0, pub.stderr);
  await client.expectPublish("v31/x", "hello");
  assert.ok(broker.logs.some((l) => l.includes(`client "old" connected`) && l.includes("(MQTT 3.1,")));
});

Deno.test("the bridge bit (0x80) of the protocol level is ignored", async () => {
  await using broker = await startBroker();
  await using bridge = await sendRaw(broker, connectFrame({ level: 0x84, clientId: "bridge" }));
  assert.equal((await bridge.expect("connack")).returnCode, 0);
  await bridge.assertIdle();
  // With the bit masked off, 0x86 is level 6: still refused.
  await using v6 = await sendRaw(broker, connectFrame({ level: 0x86, clientId: "bridge6" }));
  await assertRefused(v6, 1);
});

Deno.test("[MQTT-3.1.4-1] a CONNECT split into one-byte writes is accepted", async () => {
  await using broker = await startBroker();
  await using client = await RawClient.open(broker.port);
  for (const byte of connectFrame({ clientId: "trickle", keepalive: 30 })) {
    await client.sendBytes(Uint8Array.of(byte));
  }
  assert.equal((await client.expect("connack")).returnCode, 0);
  await client.assertIdle();
});

Deno.test("[MQTT-3.1.4-1] a CONNECT with bytes after its last field closes the connection without CONNACK", async () => {
  await using broker = await startBroker();
  // Flags announce no will, username or password, yet two more bytes follow the client id.
  await using client = await sendRaw(broker, connectFrame({ clientId: "surplus", trailing: [0x00, 0x00] }));
  await client.assertClosedSilently();
  assert.equal(broker.server.broker.sessions.get("surplus"), undefined);
});

// --- Connect flags ---------------------------------------------------------------------------------

Deno.test("[MQTT-3.1.2-3] reserved connect flag bit 0 set closes the connection without CONNACK", async () => {
  await using broker = await startBroker();
  await using client = await sendRaw(broker, connectFrame({ flags: CLEAN | RESERVED, clientId: "reserved" }));
  await client.assertClosedSilently();
  assert.equal(broker.server.broker.sessions.get("reserved"), undefined);
  await until(() => broker.server.metrics.protocolErrors === 1, "protocolErrors to count the bad CONNECT");
});

Deno.test("[MQTT-3.1.2-11] will QoS or will retain set without the will flag closes the connection", async () => {
  await using broker = await startBroker();
  const badFlags = [CLEAN | (1 << WILL_QOS_SHIFT), CLEAN | (2 << WILL_QOS_SHIFT), CLEAN | WILL_RETAIN];
  for (const flags of badFlags) {
    await using client = await sendRaw(broker, connectFrame({ flags, clientId: "nowill" }));
    await client.assertClosedSilently();
  }
  assert.equal(broker.server.broker.sessions.size, 0);
});

Deno.test("[MQTT-3.1.2-14] will QoS 3 closes the connection without CONNACK", async () => {
  await using broker = await startBroker();
  const flags = CLEAN | WILL | (3 << WILL_QOS_SHIFT);
  await using client = await sendRaw(
    broker,
    connectFrame({ flags, clientId: "q3", willTopic: "w", willPayload: "x" }),
  );
  await client.assertClosedSilently();
  assert.equal(broker.server.broker.sessions.size, 0);
});

Deno.test("[MQTT-3.1.2-9] every valid will QoS and will retain combination is accepted", async () => {
  await using broker = await startBroker();
  for (const qos of [0, 1, 2]) {
    for (const retain of [0, WILL_RETAIN]) {
      const flags = CLEAN | WILL | (qos << WILL_QOS_SHIFT) | retain;
      const clientId = `will-${qos}-${retain}`;
      await using client = await sendRaw(
        broker,
        connectFrame({ flags, clientId, willTopic: "w/t", willPayload: "p" }),
      );
      assert.equal((await client.expect("connack")).returnCode, 0, clientId);
      await client.disconnect();
    }
  }
});

Deno.test("[MQTT-3.3.2-2] a will topic with wildcards, or empty [MQTT-4.7.3-1], closes the connection", async () => {
  await using broker = await startBroker();
  for (const willTopic of ["w/+", "w/#", "#", ""]) {
    await using client = await sendRaw(
      broker,
      connectFrame({ clientId: "badwill", willTopic, willPayload: "x" }),
    );
    await client.assertClosedSilently();
  }
  assert.equal(broker.server.broker.sessions.size, 0);
});

Deno.test("[MQTT-3.1.2-22] password flag without username flag closes the connection", async () => {
  await using broker = await startBroker();
  const flags = CLEAN | PASSWORD;
  await using client = await sendRaw(broker, connectFrame({ flags, clientId: "pw", password: "secret" }));
  await client.assertClosedSilently();
  assert.equal(broker.server.broker.sessions.size, 0);
  // Username and password together are fine while anonymous access is allowed.
  await using both = await sendRaw(broker, connectFrame({ clientId: "pw2", username: "u", password: "p" }));
  assert.equal((await both.expect("connack")).returnCode, 0);
});

// --- Client identifiers ------------------------------------------------------------------------------

Deno.test("[MQTT-3.1.3-6] an empty client id with clean session 1 gets a unique assigned id that works", async () => {
  await using broker = await startBroker();
  await using first = await sendRaw(broker, connectFrame({ clientId: "" }));
  assert.equal((await first.expect("connack")).returnCode, 0);
  await using second = await sendRaw(broker, connectFrame({ clientId: "" }));
  assert.equal((await second.expect("connack")).returnCode, 0);
  const ids = [...broker.server.broker.sessions.values()].map((s) => s.clientId);
  assert.equal(ids.length, 2);
  for (const id of ids) {
    assert.match(id, /^auto-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  }
  // Two anonymous clients are two sessions: neither took the other over, and both route messages.
  await first.subscribe([["anon/1", 0]]);
  await second.publish("anon/1", "to first");
  await first.expectPublish("anon/1", "to first");
  await second.subscribe([["anon/2", 0]]);
  await first.publish("anon/2", "to second");
  await second.expectPublish("anon/2", "to second");
});

Deno.test("[MQTT-3.1.3-8] an empty client id with clean session 0 gets CONNACK 2, then close", async () => {
  await using broker = await startBroker();
  await using client = await sendRaw(broker, connectFrame({ flags: 0, clientId: "" }));
  await assertRefused(client, 2);
  assert.equal(broker.server.broker.sessions.size, 0);
  assert.ok(broker.logs.some((l) => l.includes("refused: identifier rejected")));
});

Deno.test("[MQTT-3.1.3-9] MQTT 3.1 client ids must have 1 to 23 characters, else CONNACK 2", async () => {
  await using broker = await startBroker();
  await using tooLong = await sendRaw(
    broker,
    connectFrame({ name: "MQIsdp", level: 3, clientId: "x".repeat(24) }),
    3,
  );
  await assertRefused(tooLong, 2);
  await using empty = await sendRaw(broker, connectFrame({ name: "MQIsdp", level: 3, clientId: "" }), 3);
  await assertRefused(empty, 2);
  await using longest = await sendRaw(
    broker,
    connectFrame({ name: "MQIsdp", level: 3, clientId: "y".repeat(23) }),
    3,
  );
  assert.equal((await longest.expect("connack")).returnCode, 0);
  assert.deepEqual([...broker.server.broker.sessions.values()].map((s) => s.clientId), ["y".repeat(23)]);
});

mosquittoTest(
  "[MQTT-3.1.3-9] mosquitto_pub -V mqttv31 with a 24-character id is refused, 23 characters work",
  async () => {
    await using broker = await startBroker();
    const args = (id: string) => ["-p", port(broker), "-V", "mqttv31", "-i", id, "-t", "ids", "-m", id];
    const refused = await runMosquittoTool("mosquitto_pub", args("a".repeat(24)));
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /identifier rejected/);
    await using watcher = await RawClient.connected(broker.port, { clientId: "watcher" });
    await watcher.subscribe([["ids", 0]]);
    const accepted = await runMosquittoTool("mosquitto_pub", args("b".repeat(23)));
    assert.equal(accepted.code, 0, accepted.stderr);
    await watcher.expectPublish("ids", "b".repeat(23));
  },
);

Deno.test("a 3.1.1 client id longer than 23 characters is accepted", async () => {
  await using broker = await startBroker();
  const clientId = "a-rather-long-client-identifier-of-3.1.1";
  await using client = await RawClient.connected(broker.port, { clientId });
  await client.assertIdle();
  assert.ok(broker.server.broker.sessions.get(clientId));
});

// --- Packet order --------------------------------------------------------------------------------------

Deno.test("[MQTT-3.1.0-1] a first packet other than CONNECT closes the connection without CONNACK", async () => {
  await using broker = await startBroker();
  await using watcher = await RawClient.connected(broker.port, { clientId: "watcher" });
  await watcher.subscribe([["first/#", 0]]);
  const publish = frame(0x30, [...utf8("first/early"), ...utf8Bytes("sneaky")]);
  for (
    const bytes of [
      publish,
      Uint8Array.of(0xc0, 0),
      frame(0x82, [...u16(1), ...utf8("#"), 0]),
    ]
  ) {
    await using client = await sendRaw(broker, bytes);
    await client.assertClosedSilently();
  }
  // The early PUBLISH was not routed: the next message the watcher sees is this marker.
  await watcher.publish("first/marker", "marker");
  await watcher.expectPublish("first/marker", "marker");
  assert.ok(broker.logs.some((l) => l.includes("first packet is not CONNECT")));
});

Deno.test("[MQTT-3.1.0-2] a second CONNECT on a connection closes it", async () => {
  await using broker = await startBroker();
  await using client = await RawClient.connected(broker.port, { clientId: "twice" });
  await client.sendBytes(connectFrame({ clientId: "twice" }));
  await client.assertClosedSilently();
  assert.ok(broker.loggedDisconnect("twice", "second CONNECT"));
  assert.equal(broker.server.broker.sessions.get("twice"), undefined);
});

// --- Session present ---------------------------------------------------------------------------------

Deno.test("[MQTT-3.2.2-3] clean session 0 without a stored session gets session present 0", async () => {
  await using broker = await startBroker();
  await using client = await RawClient.connected(broker.port, { clientId: "fresh", clean: false });
  assert.equal(client.sessionPresent, false);
  await using clean = await RawClient.connected(broker.port, { clientId: "fresh-clean", clean: true });
  assert.equal(clean.sessionPresent, false);
});

Deno.test("[MQTT-3.2.2-2] clean session 0 resuming a stored session gets session present 1", async () => {
  await using broker = await startBroker();
  {
    await using first = await RawClient.connected(broker.port, { clientId: "keeper", clean: false });
    assert.equal(first.sessionPresent, false);
    await first.disconnect();
  }
  await using second = await RawClient.connected(broker.port, { clientId: "keeper", clean: false });
  assert.equal(second.sessionPresent, true);
  // A socket closed without DISCONNECT keeps the session too.
  await second.close();
  await broker.offline("keeper");
  await using third = await RawClient.connected(broker.port, { clientId: "keeper", clean: false });
  assert.equal(third.sessionPresent, true);
});

Deno.test("[MQTT-3.2.2-1] clean session 1 gets session present 0 even when a session was stored", async () => {
  await using broker = await startBroker();
  {
    await using first = await RawClient.connected(broker.port, { clientId: "cleaner", clean: false });
    await first.disconnect();
  }
  await using clean = await RawClient.connected(broker.port, { clientId: "cleaner", clean: true });
  assert.equal(clean.sessionPresent, false);
  await clean.disconnect();
  // The clean session discarded the stored one and ended with its connection [MQTT-3.1.2-6].
  await using after = await RawClient.connected(broker.port, { clientId: "cleaner", clean: false });
  assert.equal(after.sessionPresent, false);
});

Deno.test("MQTT 3.1 CONNACK keeps its reserved flags byte 0, even when a persistent session is resumed", async () => {
  await using broker = await startBroker();
  const connect31 = () => connectFrame({ name: "MQIsdp", level: 3, flags: 0, clientId: "old-keeper" });
  {
    await using first = await sendRaw(broker, connect31(), 3);
    assert.equal((await first.expect("connack")).returnCode, 0);
    await first.subscribe([["old/#", 1]]);
    await first.disconnect();
  }
  await using second = await sendRaw(broker, connect31(), 3);
  const connack = await second.expect("connack");
  assert.equal(connack.returnCode, 0);
  // MQTT 3.1 has no session present flag: the first byte of the CONNACK variable header is reserved.
  assert.equal(connack.sessionPresent, false, "session present bit sent to an MQTT 3.1 client");
  // The session was resumed all the same: its subscription still routes.
  await using pub = await RawClient.connected(broker.port, { clientId: "old-pub" });
  await pub.publish("old/x", "kept");
  await second.expectPublish("old/x", "kept");
});

Deno.test("[MQTT-3.2.2-4] a refused CONNECT has session present 0 and leaves the stored session alone", async () => {
  await using broker = await startBroker();
  await using owner = await RawClient.connected(broker.port, { clientId: "owned", clean: false });
  // Same client id, unsupported level: refused before any session handling, so no takeover.
  await using refused = await sendRaw(broker, connectFrame({ level: 3, flags: 0, clientId: "owned" }));
  await assertRefused(refused, 1);
  await owner.assertIdle();
  await owner.close();
  await using back = await RawClient.connected(broker.port, { clientId: "owned", clean: false });
  assert.equal(back.sessionPresent, true);
});

// --- Refusals ------------------------------------------------------------------------------------------

mosquittoTest("[MQTT-3.2.2-5] auth.allow_anonymous false refuses every client with CONNACK 5", async () => {
  await using broker = await startBroker({ auth: { allow_anonymous: false } });
  await using anonymous = await sendRaw(broker, connectFrame({ clientId: "anon" }));
  await assertRefused(anonymous, 5);
  await using named = await sendRaw(
    broker,
    connectFrame({ clientId: "named", username: "u", password: "p" }),
  );
  await assertRefused(named, 5);
  const mosquitto = await runMosquittoTool("mosquitto_pub", [
    ...["-p", port(broker), "-i", "mosq", "-u", "user", "-P", "pass", "-t", "a", "-m", "x"],
  ]);
  assert.notEqual(mosquitto.code, 0);
  assert.match(mosquitto.stderr, /not authori[sz]ed/i);
  assert.equal(broker.server.broker.sessions.size, 0);
});

Deno.test("[MQTT-3.1.4-5] data sent after a refused CONNECT is not processed", async () => {
  await using broker = await startBroker();
  await using watcher = await RawClient.connected(broker.port, { clientId: "watcher" });
  await watcher.subscribe([["after/#", 0]]);
  const refusedConnect = connectFrame({ level: 6, clientId: "refused" });
  const publish = frame(0x30, [...utf8("after/refused"), ...utf8Bytes("must not route")]);
  await using client = await sendRaw(broker, concat([refusedConnect, publish]));
  await assertRefused(client, 1);
  await watcher.publish("after/marker", "marker");
  await watcher.expectPublish("after/marker", "marker");
});

Deno.test("limits.max_sessions reached: a client needing a new session gets CONNACK 3", async () => {
  await using broker = await startBroker({ limits: { max_sessions: 2 } });
  await using online = await RawClient.connected(broker.port, { clientId: "online" });
  {
    const offline = await RawClient.connected(broker.port, { clientId: "offline", clean: false });
    await offline.close();
  }
  await broker.offline("offline");
  // An offline persistent session still counts.
  await using third = await sendRaw(broker, connectFrame({ clientId: "third" }));
  await assertRefused(third, 3);
  assert.ok(
    broker.logs.some((l) => l.includes(`client "third"`) && l.includes("refused: server unavailable")),
  );
  // Resuming an existing session needs no new one.
  await using resumed = await RawClient.connected(broker.port, { clientId: "offline", clean: false });
  assert.equal(resumed.sessionPresent, true);
  // Once a session is gone there is room again.
  await online.disconnect();
  await using fourth = await RawClient.connected(broker.port, { clientId: "fourth" });
  await fourth.assertIdle();
});

// --- Takeover ------------------------------------------------------------------------------------------

Deno.test("[MQTT-3.1.4-2] a CONNECT with a connected client id closes the old connection; the new one works", async () => {
  await using broker = await startBroker();
  await using old = await RawClient.connected(broker.port, { clientId: "same" });
  await old.subscribe([["take/#", 0]]);
  await using taker = await RawClient.connected(broker.port, { clientId: "same" });
  await old.assertClosedSilently();
  assert.ok(broker.loggedDisconnect("same", "session taken over"));
  await taker.subscribe([["take/#", 0]]);
  await taker.publish("take/me", "new owner");
  await taker.expectPublish("take/me", "new owner");
  assert.equal(broker.server.broker.sessions.size, 1);
});

mosquittoTest(
  "[MQTT-3.1.4-2] mosquitto_pub -i with MQTT.js's client id takes over MQTT.js's connection",
  async () => {
    await using broker = await startBroker();
    await using mqttjs = await connectMqttJs(broker.port, { clientId: "shared-id" });
    const closed = new Promise<void>((resolve) => mqttjs.mqtt.once("close", () => resolve()));
    const args = ["-p", port(broker), "-i", "shared-id", "-t", "t", "-m", "x"];
    const pub = await runMosquittoTool("mosquitto_pub", args);
    assert.equal(pub.code, 0, pub.stderr);
    await within(closed, "MQTT.js to be disconnected by the takeover");
    assert.ok(broker.loggedDisconnect("shared-id", "session taken over"));
  },
);

// --- Connect timeout -------------------------------------------------------------------------------------

Deno.test("mqtt.connect_timeout closes a connection that sends no CONNECT (and not a connected client)", async () => {
  await using broker = await startBroker({ mqtt: { connect_timeout: 1 } });
  await using connected = await RawClient.connected(broker.port, { clientId: "prompt" });
  await using silent = await RawClient.open(broker.port);
  // Half a CONNECT is not a CONNECT either.
  await using partial = await sendRaw(broker, connectFrame({ clientId: "partial" }).subarray(0, 6));
  await silent.assertClosedSilently();
  await partial.assertClosedSilently();
  assert.ok(broker.logs.some((l) => l.includes("closed before CONNECT completed: no CONNECT within 1s")));
  assert.equal(broker.server.metrics.protocolErrors, 2);
  // The client that did connect in time is past the same deadline and still open.
  await connected.assertIdle();
});
