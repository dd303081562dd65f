/**
 * PUBLISH and its acknowledgements (MQTT 3.1.1 sections 3.3-3.7 and 4.3): the QoS 0, 1 and 2 flows in
 * both directions, inbound QoS 2 de-duplication, QoS downgrade, ordering, payload fidelity, invalid
 * PUBLISH packets, $SYS topics, and real publishers (MQTT.js, mosquitto_pub) checked by a subscriber.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { QoS } from "mqtt-packet";
import { startBroker, type TestBroker } from "./helpers/broker.ts";
import { frame, u16, utf8, utf8Bytes } from "./helpers/bytes.ts";
import { assertClosesConnection, assertPublish, RawClient } from "./helpers/raw.ts";
import { connectMqttJs } from "./helpers/mqttjs.ts";
import { mosquittoTest, runMosquittoTool } from "./helpers/mosquitto.ts";
import { within } from "./helpers/wait.ts";

// --- Local helpers ------------------------------------------------------------------------------------------

/** A raw client connected with `clientId` and subscribed to `filters` (all at `qos`), SUBACK checked. */
function subscriber(broker: TestBroker, clientId: string, filters: string[], qos: QoS): Promise<RawClient> {
  return RawClient.subscriber(broker.port, { clientId }, filters.map((topic) => [topic, qos]));
}

/**
 * A PUBLISH written byte by byte, for what mqtt-packet will not encode faithfully (empty or wildcard
 * topics, DUP on QoS 0, packet id 0, QoS 3). `flags` are the low four bits of the first byte.
 */
function rawPublish(flags: number, topic: string, packetId: number | null, payload = "x"): Uint8Array {
  return frame(0x30 | flags, [
    ...utf8(topic),
    ...(packetId === null ? [] : u16(packetId)),
    ...utf8Bytes(payload),
  ]);
}

// --- Client to broker ---------------------------------------------------------------------------------------

Deno.test("[MQTT-3.3.4-1] QoS 0 PUBLISH is delivered and not acknowledged", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber(broker, "sub", ["t"], 2);
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await pub.publish("t", "zero");
  await pub.assertIdle();
  const got = await sub.expectPublish("t", "zero", 0);
  assert.equal(got.dup, false);
  assert.equal(got.retain, false);
});

Deno.test("[MQTT-4.3.2-2] QoS 1 PUBLISH gets PUBACK with its packet id", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber(broker, "sub", ["t"], 1);
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await pub.publish("t", "one", { qos: 1, messageId: 1234 });
  assert.equal((await pub.expect("puback")).messageId, 1234);
  await sub.expectPublish("t", "one", 1);
  await pub.assertIdle();
});

Deno.test("[MQTT-4.3.3-2] QoS 2 PUBLISH gets PUBREC, and PUBREL gets PUBCOMP, with matching ids", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber(broker, "sub", ["t"], 2);
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await pub.publish("t", "two", { qos: 2, messageId: 4321 });
  assert.equal((await pub.expect("pubrec")).messageId, 4321);
  // Method B: the message goes on at once, before PUBREL.
  await sub.expectPublish("t", "two", 2);
  await pub.send({ cmd: "pubrel", messageId: 4321 });
  assert.equal((await pub.expect("pubcomp")).messageId, 4321);
  await pub.assertIdle();
});

// --- Broker to client ---------------------------------------------------------------------------------------

Deno.test("[MQTT-4.3.2-1] QoS 1 to a subscriber: non-zero id, DUP 0, and unacknowledged until PUBACK", async () => {
  // With a window of one, the second message can only go out once the first is acknowledged.
  await using broker = await startBroker({ limits: { max_inflight_messages: 1 } });
  await using sub = await subscriber(broker, "sub", ["t"], 1);
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await pub.publish("t", "first", { qos: 1, messageId: 1 });
  await pub.publish("t", "second", { qos: 1, messageId: 2 });
  assert.equal((await pub.expect("puback")).messageId, 1);
  assert.equal((await pub.expect("puback")).messageId, 2);

  const first = await sub.expectPublish("t", "first", 1);
  assert.notEqual(first.messageId, 0);
  assert.equal(first.dup, false);
  await sub.assertIdle();
  await sub.send({ cmd: "puback", messageId: first.messageId });
  const second = await sub.expectPublish("t", "second", 1);
  assert.notEqual(second.messageId, first.messageId);
});

Deno.test("[MQTT-2.2.1-2] one QoS 1 message to two subscribers carries each session's own packet id", async () => {
  await using broker = await startBroker();
  // "ahead" has used packet id 1 already, so the shared message gets id 2 there and id 1 at "fresh".
  await using ahead = await RawClient.subscriber(broker.port, { clientId: "ahead" }, [["ids/#", 1]]);
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await pub.publishAcked("ids/first", "first", { qos: 1 });
  const first = await ahead.expectPublish("ids/first", "first", 1);
  await ahead.send({ cmd: "puback", messageId: first.messageId });
  await using fresh = await RawClient.subscriber(broker.port, { clientId: "fresh" }, [["ids/#", 1]]);
  await pub.publishAcked("ids/shared", "shared", { qos: 1 });
  const atAhead = await ahead.expectPublish("ids/shared", "shared", 1);
  const atFresh = await fresh.expectPublish("ids/shared", "shared", 1);
  // One encoded message serves both; each copy must be patched on its own, not through a shared view.
  assert.deepEqual([atAhead.messageId, atFresh.messageId], [first.messageId! + 1, 1]);
  for (const [client, id] of [[ahead, atAhead.messageId], [fresh, atFresh.messageId]] as const) {
    await client.send({ cmd: "puback", messageId: id });
    await client.assertIdle();
  }
  assert.equal(broker.server.broker.sessions.get("ahead")!.inflight.size, 0);
  assert.equal(broker.server.broker.sessions.get("fresh")!.inflight.size, 0);
});

Deno.test("[MQTT-4.3.3-1] QoS 2 to a subscriber: PUBREC gets PUBREL with the same id, PUBCOMP completes it", async () => {
  await using broker = await startBroker({ limits: { max_inflight_messages: 1 } });
  await using sub = await subscriber(broker, "sub", ["t"], 2);
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await pub.publish("t", "first", { qos: 2, messageId: 1 });
  await pub.publish("t", "second", { qos: 2, messageId: 2 });
  assert.equal((await pub.expect("pubrec")).messageId, 1);
  assert.equal((await pub.expect("pubrec")).messageId, 2);

  const first = await sub.expectPublish("t", "first", 2);
  assert.notEqual(first.messageId, 0);
  assert.equal(first.dup, false);
  await sub.send({ cmd: "pubrec", messageId: first.messageId });
  assert.equal((await sub.expect("pubrel")).messageId, first.messageId);
  // Still in flight after PUBREL: the next message waits for PUBCOMP.
  await sub.assertIdle();
  await sub.send({ cmd: "pubcomp", messageId: first.messageId });
  await sub.expectPublish("t", "second", 2);
});

// --- Inbound QoS 2 de-duplication -------------------------------------------------------------------------------

Deno.test("[MQTT-4.3.3-2] a re-sent QoS 2 PUBLISH (DUP 1) before PUBREL gets PUBREC but is delivered once", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber(broker, "sub", ["t"], 2);
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await pub.publish("t", "once", { qos: 2, messageId: 5 });
  assert.equal((await pub.expect("pubrec")).messageId, 5);
  await pub.publish("t", "once", { qos: 2, messageId: 5, dup: true });
  assert.equal((await pub.expect("pubrec")).messageId, 5);
  await pub.publish("t", "marker", { qos: 0 });

  await sub.expectPublish("t", "once", 2);
  // The marker, published after the re-send, is next: the duplicate was not delivered.
  await sub.expectPublish("t", "marker", 0);

  await pub.send({ cmd: "pubrel", messageId: 5 });
  assert.equal((await pub.expect("pubcomp")).messageId, 5);
});

Deno.test("[MQTT-4.3.3-2] after PUBREL/PUBCOMP the same packet id starts a new message", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber(broker, "sub", ["t"], 0);
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await pub.publish("t", "first", { qos: 2, messageId: 9 });
  await pub.expect("pubrec");
  await pub.send({ cmd: "pubrel", messageId: 9 });
  await pub.expect("pubcomp");
  await pub.publish("t", "second", { qos: 2, messageId: 9 });
  assert.equal((await pub.expect("pubrec")).messageId, 9);
  await sub.expectPublish("t", "first", 0);
  await sub.expectPublish("t", "second", 0);
});

Deno.test("[MQTT-4.3.3-2] PUBREL for an unknown packet id gets PUBCOMP", async () => {
  await using broker = await startBroker();
  await using client = await RawClient.connected(broker.port, { clientId: "c" });
  await client.send({ cmd: "pubrel", messageId: 777 });
  assert.equal((await client.expect("pubcomp")).messageId, 777);
});

Deno.test("PUBREC for an unknown packet id gets PUBREL", async () => {
  await using broker = await startBroker();
  await using client = await RawClient.connected(broker.port, { clientId: "c" });
  await client.send({ cmd: "pubrec", messageId: 888 });
  assert.equal((await client.expect("pubrel")).messageId, 888);
});

// --- QoS downgrade -------------------------------------------------------------------------------------------

for (
  const [published, granted, delivered] of [
    [2, 0, 0],
    [0, 2, 0],
    [2, 1, 1],
    [1, 2, 1],
  ] as const
) {
  Deno.test(
    `[MQTT-3.8.4-6] QoS ${published} publish to a QoS ${granted} subscription arrives at QoS ${delivered}`,
    async () => {
      await using broker = await startBroker();
      await using sub = await subscriber(broker, "sub", ["q/t"], granted);
      await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
      await pub.publish("q/t", "down", { qos: published, messageId: published > 0 ? 3 : undefined });
      const got = await sub.expectPublish("q/t", "down", delivered);
      if (delivered === 0) assert.equal(got.messageId, undefined);
    },
  );
}

// --- Ordering and payloads ---------------------------------------------------------------------------------------

Deno.test("[MQTT-4.6.0-6] 100 QoS 1 messages from one publisher arrive in order", async () => {
  await using broker = await startBroker();
  await using sub = await connectMqttJs(broker.port, { clientId: "sub" });
  await within(sub.mqtt.subscribeAsync("order", { qos: 1 }), "MQTT.js SUBACK");
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  const expected = Array.from({ length: 100 }, (_, i) => `m${i}`);
  for (const [i, payload] of expected.entries()) {
    await pub.publish("order", payload, { qos: 1, messageId: i + 1 });
  }
  for (let i = 1; i <= 100; i++) assert.equal((await pub.expect("puback")).messageId, i);
  const messages = await sub.received(100);
  assert.deepEqual(messages.map((m) => m.payload), expected);
  assert.ok(messages.every((m) => m.qos === 1));
});

Deno.test("(3.3.3) binary payload bytes (all 256 values) arrive unchanged", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber(broker, "sub", ["bin"], 1);
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  // 0..255 then 255..0: every byte value, including ones that are never valid UTF-8.
  const bytes = Uint8Array.from({ length: 512 }, (_, i) => i < 256 ? i : 511 - i);
  await pub.publish("bin", bytes, { qos: 1, messageId: 1 });
  const got = await sub.expect("publish");
  assert.deepEqual(new Uint8Array(got.payload as Buffer), bytes);
});

Deno.test("(3.3.3) a zero-length payload arrives as zero-length", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber(broker, "sub", ["empty"], 2);
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await pub.publish("empty", new Uint8Array(0), { qos: 2, messageId: 1 });
  await pub.expect("pubrec");
  const got = await sub.expect("publish");
  assert.equal(got.topic, "empty");
  assert.equal(got.payload.length, 0);
});

Deno.test("(3.3.3) a 100 KiB payload arrives unchanged", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber(broker, "sub", ["big"], 1);
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  // A pattern that does not repeat every 256 bytes, so a shifted or truncated copy cannot match.
  const bytes = Uint8Array.from({ length: 100 * 1024 }, (_, i) => (i * 31 + (i >> 8)) & 0xff);
  await pub.publish("big", bytes, { qos: 1, messageId: 1 });
  await pub.expect("puback");
  const got = await sub.expect("publish");
  assert.equal(got.payload.length, bytes.length);
  assert.ok(Buffer.from(bytes).equals(got.payload as Buffer), "payload bytes differ");
});

// --- Invalid PUBLISH packets -------------------------------------------------------------------------------------

for (const topic of ["a/+", "+", "a/#", "#", "a/b+c", "a#"]) {
  Deno.test(`[MQTT-3.3.2-2] PUBLISH to topic name "${topic}" (wildcard) closes the connection`, async () => {
    await using broker = await startBroker();
    await assertClosesConnection(broker, rawPublish(0x02, topic, 1));
  });
}

Deno.test("[MQTT-4.7.3-1] PUBLISH with an empty topic name closes the connection", async () => {
  await using broker = await startBroker();
  await assertClosesConnection(broker, rawPublish(0x02, "", 1));
});

Deno.test("[MQTT-3.3.1-2] QoS 0 PUBLISH with DUP 1 closes the connection", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber(broker, "sub", ["t"], 0);
  await assertClosesConnection(broker, rawPublish(0x08, "t", null, "dup"));
  // The bad message was not routed: the first thing the subscriber sees is a later valid one.
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await pub.publish("t", "valid");
  await sub.expectPublish("t", "valid", 0);
});

Deno.test("[MQTT-3.3.1-4] PUBLISH with both QoS bits set (QoS 3) closes the connection", async () => {
  await using broker = await startBroker();
  await assertClosesConnection(broker, rawPublish(0x06, "t", 1));
});

for (const qos of [1, 2]) {
  Deno.test(`[MQTT-2.3.1-1] QoS ${qos} PUBLISH with packet id 0 closes the connection`, async () => {
    await using broker = await startBroker();
    await assertClosesConnection(broker, rawPublish(qos << 1, "t", 0));
  });
}

// --- $SYS and the publisher's own messages -------------------------------------------------------------------------

Deno.test('publishes to "$SYS/..." are acknowledged, not routed, and counted', async () => {
  await using broker = await startBroker();
  await using sub = await subscriber(broker, "sub", ["$SYS/#", "$SYS/x", "marker"], 2);
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await pub.publish("$SYS/x", "one", { qos: 1, messageId: 1 });
  assert.equal((await pub.expect("puback")).messageId, 1);
  await pub.publish("$SYS/x", "two", { qos: 2, messageId: 2 });
  assert.equal((await pub.expect("pubrec")).messageId, 2);
  await pub.send({ cmd: "pubrel", messageId: 2 });
  assert.equal((await pub.expect("pubcomp")).messageId, 2);
  await pub.publish("$SYS/x", "zero", { qos: 0 });
  await pub.publish("marker", "after", { qos: 0 });
  await sub.expectPublish("marker", "after", 0);
  assert.equal(broker.server.metrics.droppedSysTopic, 3);
  assert.equal(broker.server.metrics.protocolErrors, 0);
});

Deno.test("a publisher not subscribed to the topic does not receive its own message", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber(broker, "sub", ["own"], 1);
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await pub.publish("own", "mine", { qos: 1, messageId: 1 });
  await pub.expect("puback");
  await sub.expectPublish("own", "mine", 1);
  await pub.assertIdle();
});

Deno.test("a publisher subscribed to the topic receives its own message", async () => {
  await using broker = await startBroker();
  await using pub = await subscriber(broker, "pub", ["own"], 1);
  await pub.publish("own", "mine", { qos: 1, messageId: 1 });
  // PUBACK and the delivery may come in either order.
  const packets = [await pub.next(), await pub.next()];
  const ack = packets.find((p) => p.cmd === "puback");
  assert.equal(ack?.messageId, 1);
  const delivery = packets.find((p) => p.cmd === "publish");
  assert.ok(delivery, "own message delivered");
  assertPublish(delivery, "own", "mine", 1);
});

// --- Real publishers ---------------------------------------------------------------------------------------------

for (const qos of [0, 1, 2] as const) {
  Deno.test(`MQTT.js publishing at QoS ${qos} reaches a subscriber at QoS ${qos}`, async () => {
    await using broker = await startBroker();
    await using sub = await subscriber(broker, "sub", ["js/t"], 2);
    await using pub = await connectMqttJs(broker.port, { clientId: "mqttjs-pub" });
    // Resolves once the broker has completed the QoS flow (PUBACK, or PUBREC/PUBREL/PUBCOMP).
    await within(
      pub.mqtt.publishAsync("js/t", `from mqtt.js at ${qos}`, { qos }),
      "MQTT.js publish to complete",
    );
    await sub.expectPublish("js/t", `from mqtt.js at ${qos}`, qos);
  });

  mosquittoTest(`mosquitto_pub -q ${qos} reaches a subscriber at QoS ${qos}`, async () => {
    await using broker = await startBroker();
    await using sub = await subscriber(broker, "sub", ["mosq/t"], 2);
    const result = await runMosquittoTool("mosquitto_pub", [
      ...[
        "-p",
        String(broker.port),
        "-i",
        "mosq-pub",
        "-q",
        String(qos),
        "-t",
        "mosq/t",
        "-m",
        `mosquitto ${qos}`,
      ],
    ]);
    assert.equal(result.code, 0, result.stderr);
    await sub.expectPublish("mosq/t", `mosquitto ${qos}`, qos);
  });
}
