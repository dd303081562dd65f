/**
 * The `limits` section as a client sees it over the network: connection and packet-size caps, the write
 * buffer that protects the broker from subscribers that stop reading, and the inflight window and session
 * queue for QoS 1/2 deliveries. (limits.max_retained_messages is covered with retained messages.)
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import mqttPacket from "mqtt-packet";
import type * as MP from "mqtt-packet";
import { listenerConfig } from "../src/config/schema.ts";
import { startBroker } from "./helpers/broker.ts";
import { connectPacket, publishPacket, RawClient } from "./helpers/raw.ts";

// --- Local helpers ----------------------------------------------------------------------------------------

/** A subscriber on `q` (QoS `qos`) and `marker` (QoS 0); the marker is the barrier for "nothing else came". */
function windowSubscriber(
  port: number,
  clientId: string,
  qos: MP.QoS,
  fields: Partial<MP.IConnectPacket> = {},
): Promise<RawClient> {
  return RawClient.subscriber(port, { clientId, ...fields }, [["q", qos], ["marker", 0]]);
}

/** Publishes QoS 1 messages `payloads` on `q`, each acknowledged (with its packet id) before the next. */
async function publishQos1(pub: RawClient, payloads: string[]): Promise<void> {
  for (const payload of payloads) await pub.publishAcked("q", payload, { qos: 1 });
}

/**
 * Publishes a QoS 0 marker and asserts it is the subscriber's next packet: anything the broker sent before
 * it (such as a message the window should have held back) fails the test.
 */
async function assertNothingBefore(pub: RawClient, sub: RawClient, label: string): Promise<void> {
  await pub.publish("marker", label);
  await sub.expectPublish("marker", label);
}

/** The next PUBLISH on `q`, returning its payload and packet id. */
async function nextOnQ(sub: RawClient): Promise<{ payload: string; id: number; qos: number }> {
  const packet = await sub.expect("publish");
  assert.equal(packet.topic, "q");
  return { payload: packet.payload.toString(), id: packet.messageId!, qos: packet.qos };
}

/** A PUBLISH from topic, payload and QoS whose encoded size is exactly `total` bytes. */
function publishOfSize(total: number, topic: string, qos: MP.QoS, messageId: number): Uint8Array {
  const overhead = mqttPacket.generate(publishPacket(topic, "", { qos, messageId })).length;
  // Growing the payload can lengthen the remaining-length field; shrink until the total fits exactly.
  let payloadSize = total - overhead;
  let bytes: Uint8Array;
  do {
    bytes = mqttPacket.generate(publishPacket(topic, "p".repeat(payloadSize), { qos, messageId }));
    payloadSize--;
  } while (bytes.length > total);
  assert.equal(bytes.length, total);
  return bytes;
}

// --- limits.max_connections -------------------------------------------------------------------------------

Deno.test("limits.max_connections: the connection beyond the limit is closed at once and counted", async () => {
  await using broker = await startBroker({ limits: { max_connections: 3 } });
  await using c1 = await RawClient.connected(broker.port, { clientId: "c1" });
  await using c2 = await RawClient.connected(broker.port, { clientId: "c2" });
  await using c3 = await RawClient.connected(broker.port, { clientId: "c3" });

  await using fourth = await RawClient.open(broker.port);
  // Closed without waiting for a CONNECT (mqtt.connect_timeout is 10 s, longer than this wait).
  await fourth.assertClosedSilently();
  assert.equal(broker.server.metrics.connectionsRefused, 1);
  assert.equal(broker.server.metrics.connectionsAccepted, 3);
  for (const client of [c1, c2, c3]) await client.assertIdle();
});

Deno.test("limits.max_connections: after a connection closes a new one is accepted", async () => {
  await using broker = await startBroker({ limits: { max_connections: 3 } });
  await using c1 = await RawClient.connected(broker.port, { clientId: "c1" });
  await using c2 = await RawClient.connected(broker.port, { clientId: "c2" });
  await using c3 = await RawClient.connected(broker.port, { clientId: "c3" });
  {
    await using refused = await RawClient.open(broker.port);
    await refused.closedByBroker();
  }

  await c1.disconnect();
  await c1.close();
  await broker.disconnected("c1");

  await using c4 = await RawClient.connected(broker.port, { clientId: "c4" });
  await c4.assertIdle();
  await using fifth = await RawClient.open(broker.port);
  await fifth.closedByBroker();
  assert.equal(broker.server.metrics.connectionsRefused, 2);
  for (const client of [c2, c3]) await client.assertIdle();
});

Deno.test("listeners[].max_connections caps one listener while another keeps accepting", async () => {
  await using broker = await startBroker({
    listeners: [
      listenerConfig("tcp", { port: 0, max_connections: 2 }),
      listenerConfig("tcp", { port: 0 }),
    ],
  });
  const [capped, open] = broker.server.listeners.map((l) => l.port);
  await using a = await RawClient.connected(capped, { clientId: "a" });
  await using b = await RawClient.connected(capped, { clientId: "b" });
  {
    await using third = await RawClient.open(capped);
    await third.assertClosedSilently();
  }
  assert.equal(broker.server.metrics.connectionsRefused, 1);
  assert.ok(broker.logs.some((l) => l.includes("listeners[0].max_connections = 2")));
  await using other = await RawClient.connected(open, { clientId: "other" });
  // A place freed on the capped listener is taken again.
  await a.disconnect();
  await broker.disconnected("a");
  await using again = await RawClient.connected(capped, { clientId: "again" });
  for (const client of [b, other, again]) await client.assertIdle();
});

// --- limits.max_packet_size -------------------------------------------------------------------------------

Deno.test("limits.max_packet_size: a PUBLISH of exactly the limit (header included) is accepted", async () => {
  await using broker = await startBroker({ limits: { max_packet_size: 1024 } });
  await using sub = await RawClient.connected(broker.port, { clientId: "sub" });
  await sub.subscribe([["big", 1]]);
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });

  const packet = publishOfSize(1024, "big", 1, 5);
  await pub.sendBytes(packet);
  assert.equal((await pub.expect("puback")).messageId, 5);
  const got = await sub.expect("publish");
  assert.equal(got.topic, "big");
  assert.equal(got.payload.length, packet.length - 10); // 1 + 2 (remaining length) + 2 + 3 ("big") + 2 (id)
  assert.equal(broker.server.metrics.protocolErrors, 0);
});

Deno.test("limits.max_packet_size: a PUBLISH one byte over the limit closes the connection, nothing routed", async () => {
  await using broker = await startBroker({ limits: { max_packet_size: 1024 } });
  await using sub = await RawClient.connected(broker.port, { clientId: "sub" });
  await sub.subscribe([["big", 1], ["marker", 0]]);
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });

  await pub.sendBytes(publishOfSize(1025, "big", 1, 5));
  await pub.assertClosedSilently(); // no PUBACK
  assert.equal(broker.server.metrics.protocolErrors, 1);
  await using other = await RawClient.connected(broker.port, { clientId: "other" });
  await assertNothingBefore(other, sub, "after oversize");
});

// --- limits.max_write_buffer ------------------------------------------------------------------------------

Deno.test("limits.max_write_buffer: QoS 0 to a subscriber that stops reading is dropped; others are unaffected", async () => {
  await using broker = await startBroker({ limits: { max_write_buffer: 4096 } });
  // A subscriber that sends CONNECT and SUBSCRIBE and then never reads its socket.
  const stalled = await Deno.connect({ hostname: "127.0.0.1", port: broker.port });
  try {
    const hello = Buffer.concat([
      mqttPacket.generate(connectPacket({ clientId: "stalled" })),
      mqttPacket.generate({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "flood", qos: 0 }] }),
    ]);
    for (let at = 0; at < hello.length;) at += await stalled.write(hello.subarray(at));
    await broker.subscribed("stalled", "flood");

    await using pub = await RawClient.connected(broker.port, { clientId: "flooder" });
    // Three 1 KiB messages per round trip: each burst alone fits in the 4 KiB buffer, so a drop can only
    // come from bytes piling up unsent for the subscriber that does not read.
    const payload = "x".repeat(1024);
    const burst = Buffer.concat(
      Array.from({ length: 3 }, () => mqttPacket.generate(publishPacket("flood", payload))),
    );
    assert.ok(burst.length < 4096);
    // The burst and its PINGREQ in one write: the flood runs many rounds, and one write a round is faster.
    const burstThenPing = Buffer.concat([burst, mqttPacket.generate({ cmd: "pingreq" })]);
    // Socket buffers on loopback absorb a few MB before the broker's own buffer fills; bound the flood.
    const maxBytes = 64 * 1024 * 1024;
    let sent = 0;
    while (broker.server.metrics.droppedWriteBufferFull === 0) {
      assert.ok(sent < maxBytes, `no QoS 0 message dropped after ${sent} bytes published`);
      await pub.sendBytes(burstThenPing);
      sent += burst.length;
      // The publisher is never held back by the slow subscriber: its PINGREQ is answered.
      await pub.expect("pingresp");
    }
    // The subscriber still does not read, so every further QoS 0 message for it is dropped and counted,
    // while it stays connected.
    const dropped = broker.server.metrics.droppedWriteBufferFull;
    await pub.sendBytes(burstThenPing);
    await pub.expect("pingresp");
    assert.equal(broker.server.metrics.droppedWriteBufferFull, dropped + 3);
    assert.ok(broker.server.broker.sessions.get("stalled")?.outlet, "the slow subscriber is still connected");

    // A third client still gets full service.
    await using third = await RawClient.connected(broker.port, { clientId: "third" });
    await third.subscribe([["check", 1]]);
    await third.publish("check", "still here", { qos: 1, messageId: 9 });
    const [first, second] = [await third.next(), await third.next()];
    const message = [first, second].find((p) => p.cmd === "publish");
    assert.ok([first, second].some((p) => p.cmd === "puback" && p.messageId === 9));
    assert.equal(message?.payload.toString(), "still here");
  } finally {
    stalled.close();
  }
});

// --- limits.max_inflight_messages and limits.max_queued_messages ------------------------------------------

Deno.test("limits.max_inflight_messages: a subscriber that does not ack QoS 1 gets the window, then one per PUBACK", async () => {
  await using broker = await startBroker({ limits: { max_inflight_messages: 3 } });
  await using sub = await windowSubscriber(broker.port, "slow", 1);
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await publishQos1(pub, ["1", "2", "3", "4", "5", "6"]);

  const first = [await nextOnQ(sub), await nextOnQ(sub), await nextOnQ(sub)];
  assert.deepEqual(first.map((m) => m.payload), ["1", "2", "3"]);
  await assertNothingBefore(pub, sub, "window full");

  // Each PUBACK lets exactly one more message out, in publish order.
  for (const [i, acked] of first.entries()) {
    await sub.send({ cmd: "puback", messageId: acked.id });
    const next = await nextOnQ(sub);
    assert.equal(next.payload, String(i + 4));
    assert.equal(next.qos, 1);
    await assertNothingBefore(pub, sub, `after PUBACK ${i + 1}`);
  }
  assert.equal(broker.server.metrics.droppedQueueFull, 0);
});

Deno.test("limits.max_queued_messages: beyond window + queue, QoS 1 messages are dropped and counted", async () => {
  await using broker = await startBroker({ limits: { max_inflight_messages: 2, max_queued_messages: 3 } });
  await using sub = await windowSubscriber(broker.port, "slow", 1);
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await publishQos1(pub, ["1", "2", "3", "4", "5", "6", "7", "8"]);
  assert.equal(broker.server.metrics.droppedQueueFull, 3);

  const received: string[] = [];
  const inflight: number[] = [];
  for (let i = 0; i < 2; i++) {
    const message = await nextOnQ(sub);
    received.push(message.payload);
    inflight.push(message.id);
  }
  await assertNothingBefore(pub, sub, "window full");
  // Ack one at a time: the queued three come out in order, then nothing more.
  while (inflight.length > 0) {
    await sub.send({ cmd: "puback", messageId: inflight.shift()! });
    if (received.length < 5) {
      const message = await nextOnQ(sub);
      received.push(message.payload);
      inflight.push(message.id);
    }
  }
  await assertNothingBefore(pub, sub, "queue drained");
  assert.deepEqual(received, ["1", "2", "3", "4", "5"]);

  // Dropping was only while full: a new message goes straight out.
  await publishQos1(pub, ["9"]);
  assert.equal((await nextOnQ(sub)).payload, "9");
  assert.equal(broker.server.metrics.droppedQueueFull, 3);
});

Deno.test("limits.max_inflight_messages: a QoS 2 delivery holds its slot until PUBCOMP, not PUBREC", async () => {
  await using broker = await startBroker({ limits: { max_inflight_messages: 1 } });
  await using sub = await windowSubscriber(broker.port, "slow", 2);
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  for (const id of [1, 2]) await pub.publishAcked("q", String(id), { qos: 2, messageId: id });

  const first = await nextOnQ(sub);
  assert.deepEqual([first.payload, first.qos], ["1", 2]);
  await sub.send({ cmd: "pubrec", messageId: first.id });
  assert.equal((await sub.expect("pubrel")).messageId, first.id);
  await assertNothingBefore(pub, sub, "after PUBREC");

  await sub.send({ cmd: "pubcomp", messageId: first.id });
  const second = await nextOnQ(sub);
  assert.deepEqual([second.payload, second.qos], ["2", 2]);
});

Deno.test("limits.max_queued_messages: an offline session keeps only that many, delivered through the window", async () => {
  await using broker = await startBroker({ limits: { max_inflight_messages: 2, max_queued_messages: 3 } });
  {
    await using sub = await windowSubscriber(broker.port, "offline", 1, { clean: false });
    await sub.disconnect();
  }
  await broker.offline("offline");
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await publishQos1(pub, ["1", "2", "3", "4", "5", "6"]);
  assert.equal(broker.server.metrics.droppedQueueFull, 3);

  await using sub = await RawClient.connected(broker.port, { clientId: "offline", clean: false });
  assert.equal(sub.sessionPresent, true);
  const window = [await nextOnQ(sub), await nextOnQ(sub)];
  assert.deepEqual(window.map((m) => m.payload), ["1", "2"]);
  await assertNothingBefore(pub, sub, "window full after reconnect");
  await sub.send({ cmd: "puback", messageId: window[0].id });
  assert.equal((await nextOnQ(sub)).payload, "3");
  await sub.send({ cmd: "puback", messageId: window[1].id });
  await assertNothingBefore(pub, sub, "queue drained");
});
