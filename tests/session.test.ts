/**
 * Session state (MQTT 3.1.1 sections 3.1.2.4 and 4.1) and message delivery retry (4.4): persistent
 * sessions, offline queueing, re-sending on reconnect, the inflight window, queue limits and expiry.
 */

import assert from "node:assert/strict";
import { startBroker, type TestBroker } from "./helpers/broker.ts";
import { connectMqttJs } from "./helpers/mqttjs.ts";
import { mosquittoTest, runMosquittoTool } from "./helpers/mosquitto.ts";
import { RawClient, summary } from "./helpers/raw.ts";
import { until } from "./helpers/wait.ts";

type QoS = 0 | 1 | 2;

/** Connects `clientId` with clean session 0 and subscribes it to `filter`. */
function persistentSubscriber(broker: TestBroker, clientId: string, filter: string, qos: QoS = 2) {
  return RawClient.subscriber(broker.port, { clientId, clean: false }, [[filter, qos]]);
}

/** Connects `clientId` again, with clean session 0 unless `clean`; the CONNACK's flag is `sessionPresent`. */
function reconnect(broker: TestBroker, clientId: string, clean = false): Promise<RawClient> {
  return RawClient.connected(broker.port, { clientId, clean });
}

/** Closes the socket without DISCONNECT and waits until the broker has detached the session. */
async function drop(broker: TestBroker, client: RawClient, clientId: string): Promise<void> {
  await client.close();
  await broker.offline(clientId);
}

async function puback(client: RawClient, messageId: number | undefined): Promise<void> {
  await client.send({ cmd: "puback", messageId });
}

// --- Persistent sessions ------------------------------------------------------------------------------

Deno.test("[MQTT-3.1.2-4] clean session 0 keeps subscriptions across a reconnect", async () => {
  await using broker = await startBroker();
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  {
    await using sub = await persistentSubscriber(broker, "keeper", "keep/#", 1);
    await sub.disconnect();
  }
  await using sub = await reconnect(broker, "keeper");
  assert.equal(sub.sessionPresent, true);
  // No new SUBSCRIBE: the stored one routes the message.
  await pub.publishAcked("keep/x", "still subscribed", { qos: 1 });
  const got = await sub.expectPublish("keep/x", "still subscribed");
  assert.equal(got.qos, 1);
});

Deno.test("[MQTT-3.1.2-5] QoS 1 and 2 messages published while offline are delivered on reconnect, in order", async () => {
  await using broker = await startBroker();
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  {
    await using sub = await persistentSubscriber(broker, "away", "q/#", 2);
    await sub.disconnect();
  }
  const sent: [string, QoS][] = [["m1", 1], ["m2", 2], ["m3", 1], ["m4", 2], ["m5", 2]];
  for (const [payload, qos] of sent) await pub.publishAcked("q/t", payload, { qos });
  assert.equal(broker.server.broker.sessions.get("away")?.queued, sent.length);

  await using sub = await reconnect(broker, "away");
  assert.equal(sub.sessionPresent, true);
  for (const [payload, qos] of sent) {
    const got = await sub.expectPublish("q/t", payload);
    assert.equal(got.qos, qos);
    assert.equal(got.dup, false, "a first delivery has DUP 0");
  }
});

Deno.test("[MQTT-3.1.2-5] QoS 0 messages are not queued for an offline session", async () => {
  await using broker = await startBroker();
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  {
    await using sub = await persistentSubscriber(broker, "away", "q1/#", 1);
    assert.deepEqual(await sub.subscribe([["q0/#", 0]]), [0]);
    await sub.disconnect();
  }
  await pub.publishAcked("q1/zero", "published at QoS 0", { qos: 0 });
  // Published at QoS 1 but granted QoS 0: delivered at QoS 0, so not queued either.
  await pub.publishAcked("q0/one", "granted QoS 0", { qos: 1 });
  await pub.publishAcked("q1/one", "published at QoS 1", { qos: 1 });
  await using sub = await reconnect(broker, "away");
  await sub.expectPublish("q1/one", "published at QoS 1");
  await sub.assertIdle();
});

mosquittoTest(
  "[MQTT-3.1.2-4] mosquitto_sub -c -i: messages published while it was away arrive when it returns",
  async () => {
    await using broker = await startBroker();
    const sub = (extra: string[]) =>
      runMosquittoTool("mosquitto_sub", [
        ...["-p", String(broker.port), "-c", "-i", "mosq-keeper", "-q", "1", "-t", "mq/#", "-v"],
        ...extra,
      ]);
    // -E: exit (with DISCONNECT) once subscribed.
    const first = await sub(["-E"]);
    assert.equal(first.code, 0, first.stderr);
    await broker.offline("mosq-keeper");
    const pub = await runMosquittoTool("mosquitto_pub", [
      ...["-p", String(broker.port), "-i", "mosq-pub", "-q", "1", "-t", "mq/a", "-m", "while away"],
    ]);
    assert.equal(pub.code, 0, pub.stderr);
    const second = await sub(["-C", "1", "-W", "5"]);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.stdout, "mq/a while away\n");
  },
);

Deno.test("[MQTT-3.1.2-5] MQTT.js with clean: false gets QoS 1 and 2 messages queued while it was away", async () => {
  await using broker = await startBroker();
  {
    await using sub = await connectMqttJs(broker.port, { clientId: "mqttjs-keeper", clean: false });
    await sub.mqtt.subscribeAsync("mj/#", { qos: 2 });
    await sub.end();
  }
  await broker.offline("mqttjs-keeper");
  await using pub = await connectMqttJs(broker.port, { clientId: "mqttjs-pub" });
  await pub.mqtt.publishAsync("mj/1", "one", { qos: 1 });
  await pub.mqtt.publishAsync("mj/2", "two", { qos: 2 });
  await using back = await connectMqttJs(broker.port, { clientId: "mqttjs-keeper", clean: false });
  const messages = await back.received(2);
  const got = messages.map((m) => [m.topic, m.payload, m.qos]);
  assert.deepEqual(got, [["mj/1", "one", 1], ["mj/2", "two", 2]]);
});

Deno.test("[MQTT-3.1.2-6] clean session 1 discards the stored session: queued messages and subscriptions", async () => {
  await using broker = await startBroker();
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  {
    await using sub = await persistentSubscriber(broker, "fickle", "old/#", 1);
    await sub.disconnect();
  }
  await pub.publishAcked("old/queued", "queued for the old session", { qos: 1 });
  {
    await using fresh = await reconnect(broker, "fickle", true);
    assert.equal(fresh.sessionPresent, false);
    // Neither the queued message nor the old subscription survived.
    await fresh.assertIdle();
    assert.deepEqual(await fresh.subscribe([["new/marker", 1]]), [1]);
    await pub.publishAcked("old/live", "old subscription", { qos: 1 });
    await pub.publishAcked("new/marker", "marker", { qos: 1 });
    await fresh.expectPublish("new/marker", "marker");
    await fresh.disconnect();
  }
  // The clean session ended with its connection; nothing is left to resume.
  await using after = await reconnect(broker, "fickle");
  assert.equal(after.sessionPresent, false);
  await after.assertIdle();
});

Deno.test("[MQTT-3.1.4-2] a clean session 0 takeover resumes the session and re-sends what was unacknowledged", async () => {
  await using broker = await startBroker();
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await using old = await persistentSubscriber(broker, "mover", "mv/#", 1);
  await pub.publishAcked("mv/1", "unacknowledged", { qos: 1 });
  const first = await old.expectPublish("mv/1", "unacknowledged");
  await using taker = await reconnect(broker, "mover");
  assert.equal(taker.sessionPresent, true);
  await old.closedByBroker();
  const again = await taker.expectPublish("mv/1", "unacknowledged");
  assert.deepEqual([again.dup, again.messageId], [true, first.messageId]);
  await pub.publishAcked("mv/2", "subscription kept", { qos: 1 });
  await taker.expectPublish("mv/2", "subscription kept");
});

// --- Re-sending on reconnect ---------------------------------------------------------------------------

Deno.test("[MQTT-4.4.0-1] unacknowledged QoS 1 deliveries are re-sent on reconnect with DUP 1 and the same ids", async () => {
  await using broker = await startBroker();
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await using sub = await persistentSubscriber(broker, "forgetful", "r/#", 1);
  await pub.publishAcked("r/1", "first", { qos: 1 });
  await pub.publishAcked("r/2", "second", { qos: 1 });
  const originals = [await sub.expectPublish("r/1", "first"), await sub.expectPublish("r/2", "second")];
  assert.deepEqual(originals.map((p) => p.dup), [false, false]);
  await drop(broker, sub, "forgetful");

  await using back = await reconnect(broker, "forgetful");
  // Re-sent in the original order [MQTT-4.6.0-1], flagged as duplicates [MQTT-3.3.1-1].
  const resent = [await back.expectPublish("r/1", "first"), await back.expectPublish("r/2", "second")];
  assert.deepEqual(
    resent.map((p) => [p.dup, p.qos, p.messageId]),
    originals.map((p) => [true, 1, p.messageId]),
  );
  for (const p of resent) await puback(back, p.messageId);
  await back.assertIdle();
  assert.equal(broker.server.broker.sessions.get("forgetful")?.inflight.size, 0);
});

Deno.test("[MQTT-4.4.0-1] a QoS 2 delivery without PUBREC is re-sent as PUBLISH with DUP 1 and the same id", async () => {
  await using broker = await startBroker();
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await using sub = await persistentSubscriber(broker, "slow", "r2/#", 2);
  await pub.publishAcked("r2/x", "exactly once", { qos: 2 });
  const original = await sub.expectPublish("r2/x", "exactly once");
  assert.equal(original.qos, 2);
  await drop(broker, sub, "slow");

  await using back = await reconnect(broker, "slow");
  const resent = await back.expectPublish("r2/x", "exactly once");
  assert.deepEqual([resent.dup, resent.qos, resent.messageId], [true, 2, original.messageId]);
  await back.send({ cmd: "pubrec", messageId: resent.messageId });
  assert.equal((await back.expect("pubrel")).messageId, original.messageId);
  await back.send({ cmd: "pubcomp", messageId: resent.messageId });
  await back.assertIdle();
});

Deno.test("[MQTT-4.4.0-1] a QoS 2 delivery whose PUBREC arrived gets PUBREL, not PUBLISH, re-sent", async () => {
  await using broker = await startBroker();
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await using sub = await persistentSubscriber(broker, "halfway", "r3/#", 2);
  await pub.publishAcked("r3/x", "received", { qos: 2 });
  const original = await sub.expectPublish("r3/x", "received");
  await sub.send({ cmd: "pubrec", messageId: original.messageId });
  // The broker's PUBREL proves it handled the PUBREC before we go.
  assert.equal((await sub.expect("pubrel")).messageId, original.messageId);
  await drop(broker, sub, "halfway");

  await using back = await reconnect(broker, "halfway");
  const next = await back.next();
  assert.deepEqual(summary(next), { cmd: "pubrel", messageId: original.messageId });
  await back.send({ cmd: "pubcomp", messageId: original.messageId });
  await back.assertIdle();
  assert.equal(broker.server.broker.sessions.get("halfway")?.inflight.size, 0);
});

Deno.test("[MQTT-4.6.0-6] re-sent deliveries go before messages queued while offline, all in order", async () => {
  await using broker = await startBroker({ limits: { max_inflight_messages: 1 } });
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await using sub = await persistentSubscriber(broker, "ordered", "o/#", 1);
  await pub.publishAcked("o/t", "m1", { qos: 1 });
  const m1 = await sub.expectPublish("o/t", "m1");
  await drop(broker, sub, "ordered");
  await pub.publishAcked("o/t", "m2", { qos: 1 });
  await pub.publishAcked("o/t", "m3", { qos: 1 });

  await using back = await reconnect(broker, "ordered");
  const again = await back.expectPublish("o/t", "m1");
  assert.deepEqual([again.dup, again.messageId], [true, m1.messageId]);
  // The window of one is full until m1 is acknowledged.
  await back.assertIdle();
  await puback(back, again.messageId);
  const m2 = await back.expectPublish("o/t", "m2");
  assert.equal(m2.dup, false);
  await puback(back, m2.messageId);
  const m3 = await back.expectPublish("o/t", "m3");
  await puback(back, m3.messageId);
  await back.assertIdle();
});

// --- Limits --------------------------------------------------------------------------------------------

Deno.test("limits.max_queued_messages: offline messages beyond the limit are dropped and counted", async () => {
  await using broker = await startBroker({ limits: { max_queued_messages: 3 } });
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  {
    await using sub = await persistentSubscriber(broker, "full", "f/#", 1);
    await sub.disconnect();
  }
  for (let i = 1; i <= 5; i++) await pub.publishAcked("f/t", `m${i}`, { qos: 1 });
  assert.equal(broker.server.metrics.droppedQueueFull, 2);

  await using back = await reconnect(broker, "full");
  for (const payload of ["m1", "m2", "m3"]) {
    await puback(back, (await back.expectPublish("f/t", payload)).messageId);
  }
  await back.assertIdle();
});

Deno.test("limits.max_queued_messages: online, messages beyond a full window and a full queue are dropped", async () => {
  await using broker = await startBroker({ limits: { max_inflight_messages: 1, max_queued_messages: 2 } });
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await using sub = await persistentSubscriber(broker, "busy", "b/#", 1);
  for (let i = 1; i <= 4; i++) await pub.publishAcked("b/t", `m${i}`, { qos: 1 });
  assert.equal(broker.server.metrics.droppedQueueFull, 1);
  for (const payload of ["m1", "m2", "m3"]) {
    await puback(sub, (await sub.expectPublish("b/t", payload)).messageId);
  }
  await sub.assertIdle();
});

Deno.test("limits.max_inflight_messages bounds unacknowledged QoS 1 deliveries; PUBACKs let more through", async () => {
  await using broker = await startBroker({ limits: { max_inflight_messages: 2 } });
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await using sub = await persistentSubscriber(broker, "window", "w/#", 1);
  for (let i = 1; i <= 5; i++) await pub.publishAcked("w/t", `m${i}`, { qos: 1 });
  const m1 = await sub.expectPublish("w/t", "m1");
  const m2 = await sub.expectPublish("w/t", "m2");
  await sub.assertIdle();
  await puback(sub, m1.messageId);
  const m3 = await sub.expectPublish("w/t", "m3");
  await sub.assertIdle();
  await puback(sub, m2.messageId);
  const m4 = await sub.expectPublish("w/t", "m4");
  await puback(sub, m3.messageId);
  const m5 = await sub.expectPublish("w/t", "m5");
  await puback(sub, m4.messageId);
  await puback(sub, m5.messageId);
  await sub.assertIdle();
  assert.equal(broker.server.metrics.droppedQueueFull, 0);
});

Deno.test("limits.max_inflight_messages: a QoS 2 delivery holds its slot until PUBCOMP, not PUBREC", async () => {
  await using broker = await startBroker({ limits: { max_inflight_messages: 1 } });
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await using sub = await persistentSubscriber(broker, "window2", "w2/#", 2);
  await pub.publishAcked("w2/t", "m1", { qos: 2 });
  await pub.publishAcked("w2/t", "m2", { qos: 2 });
  const m1 = await sub.expectPublish("w2/t", "m1");
  await sub.send({ cmd: "pubrec", messageId: m1.messageId });
  assert.equal((await sub.expect("pubrel")).messageId, m1.messageId);
  await sub.assertIdle();
  await sub.send({ cmd: "pubcomp", messageId: m1.messageId });
  const m2 = await sub.expectPublish("w2/t", "m2");
  assert.equal(m2.qos, 2);
});

// --- Expiry ----------------------------------------------------------------------------------------------

Deno.test("mqtt.session_expiry: an offline session expires, then reconnecting gets session present 0", async () => {
  await using broker = await startBroker({ mqtt: { session_expiry: 1 } });
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  {
    await using sub = await persistentSubscriber(broker, "brief", "exp/#", 1);
    await sub.disconnect();
  }
  await pub.publishAcked("exp/queued", "queued before expiry", { qos: 1 });
  await until(() => broker.server.metrics.sessionsExpired === 1, "the session to expire", 3000);
  assert.equal(broker.server.broker.sessions.get("brief"), undefined);
  assert.ok(broker.logs.some((l) => l.includes(`session "brief" expired after 1s offline`)));

  await using back = await reconnect(broker, "brief");
  assert.equal(back.sessionPresent, false);
  // The queued message and the subscription went with the session.
  assert.deepEqual(await back.subscribe([["exp/marker", 1]]), [1]);
  await pub.publishAcked("exp/after", "old subscription", { qos: 1 });
  await pub.publishAcked("exp/marker", "marker", { qos: 1 });
  await back.expectPublish("exp/marker", "marker");
});

Deno.test("mqtt.session_expiry: an online session never expires and reconnecting cancels the expiry", async () => {
  await using broker = await startBroker({ mqtt: { session_expiry: 1 } });
  {
    await using returning = await persistentSubscriber(broker, "returning", "ret/#", 1);
    await using leaving = await persistentSubscriber(broker, "leaving", "lea/#", 1);
    // "returning" goes offline first, so its expiry would come before "leaving"'s.
    await returning.disconnect();
    await leaving.disconnect();
  }
  await using back = await reconnect(broker, "returning");
  assert.equal(back.sessionPresent, true);
  await until(() => broker.server.metrics.sessionsExpired === 1, "the other session to expire", 3000);
  assert.equal(broker.server.broker.sessions.get("leaving"), undefined);
  assert.ok(broker.server.broker.sessions.get("returning")?.subscriptions.has("ret/#"));
  await back.assertIdle();
  assert.equal(broker.server.metrics.sessionsExpired, 1);
});

// --- Inbound QoS 2 state -----------------------------------------------------------------------------------

Deno.test("[MQTT-4.3.3-2] inbound QoS 2 packet id state survives a reconnect: a re-sent PUBLISH is not delivered twice", async () => {
  await using broker = await startBroker();
  await using watch = await RawClient.connected(broker.port, { clientId: "watch" });
  assert.deepEqual(await watch.subscribe([["in/#", 0]]), [0]);
  await using publisher = await RawClient.connected(broker.port, { clientId: "qos2-pub", clean: false });
  const send = (client: RawClient, payload: string, dup: boolean) =>
    client.publish("in/t", payload, { qos: 2, messageId: 5, dup });
  await send(publisher, "first", false);
  assert.equal((await publisher.expect("pubrec")).messageId, 5);
  await watch.expectPublish("in/t", "first");
  // Gone before sending PUBREL.
  await drop(broker, publisher, "qos2-pub");

  await using back = await reconnect(broker, "qos2-pub");
  assert.equal(back.sessionPresent, true);
  await send(back, "first", true);
  assert.equal((await back.expect("pubrec")).messageId, 5);
  await back.send({ cmd: "pubrel", messageId: 5 });
  assert.equal((await back.expect("pubcomp")).messageId, 5);
  // After PUBREL the id is free again: a new message with it is delivered.
  await send(back, "second", false);
  assert.equal((await back.expect("pubrec")).messageId, 5);
  // "first" came once: the next delivery is "second".
  await watch.expectPublish("in/t", "second");
});

Deno.test("[MQTT-3.1.2-6] clean session 1 starts without inbound QoS 2 state from an earlier session", async () => {
  await using broker = await startBroker();
  await using watch = await RawClient.connected(broker.port, { clientId: "watch" });
  assert.deepEqual(await watch.subscribe([["in/#", 0]]), [0]);
  await using publisher = await RawClient.connected(broker.port, { clientId: "qos2-pub", clean: false });
  const send = (client: RawClient, payload: string) =>
    client.publish("in/t", payload, { qos: 2, messageId: 9 });
  await send(publisher, "old session");
  await publisher.expect("pubrec");
  await watch.expectPublish("in/t", "old session");
  await drop(broker, publisher, "qos2-pub");

  await using fresh = await reconnect(broker, "qos2-pub", true);
  await send(fresh, "new session");
  assert.equal((await fresh.expect("pubrec")).messageId, 9);
  await watch.expectPublish("in/t", "new session");
});
