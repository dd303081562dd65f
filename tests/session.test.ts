/**
 * Session state (MQTT 3.1.1 sections 3.1.2.4 and 4.1) and message delivery retry (4.4): persistent
 * sessions, offline queueing, re-sending on reconnect, the inflight window, queue limits and expiry.
 */

import assert from "node:assert/strict";
import { startBroker, type TestBroker } from "./helpers/broker.ts";
import { connectMqttJs } from "./helpers/mqttjs.ts";
import { runMosquittoTool } from "./helpers/mosquitto.ts";
import { type Packet, RawClient, summary } from "./helpers/raw.ts";
import { until } from "./helpers/wait.ts";

type QoS = 0 | 1 | 2;
type Publish = Extract<Packet, { cmd: "publish" }>;

/** Connects `clientId` with clean session 0 and subscribes it to `filter`. */
async function persistentSubscriber(broker: TestBroker, clientId: string, filter: string, qos: QoS = 2) {
  const client = await RawClient.connected(broker.port, { clientId, clean: false });
  await subscribe(client, filter, qos);
  return client;
}

async function subscribe(client: RawClient, filter: string, qos: QoS): Promise<void> {
  await client.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: filter, qos }] });
  assert.deepEqual((await client.expect("suback")).granted, [qos]);
}

/** Connects `clientId` with clean session 0 again; returns the client and the CONNACK's session present. */
async function reconnect(broker: TestBroker, clientId: string, clean = false) {
  const client = await RawClient.open(broker.port);
  const connack = await client.connect({ clientId, clean });
  assert.equal(connack.returnCode, 0);
  return { client, present: connack.sessionPresent };
}

/** Sends DISCONNECT; the session is offline once the broker has closed the socket. */
async function disconnect(client: RawClient): Promise<void> {
  await client.send({ cmd: "disconnect" });
  await client.closedByBroker();
}

/** Closes the socket without DISCONNECT and waits until the broker has detached the session. */
async function drop(broker: TestBroker, client: RawClient, clientId: string): Promise<void> {
  await client.close();
  await until(
    () => broker.server.broker.sessions.get(clientId)?.outlet === null,
    `${clientId} to go offline`,
  );
}

let nextId = 1;

/**
 * Publishes from `publisher` and completes the QoS flow, so the broker has routed the message on return.
 * QoS 0 is followed by PINGREQ/PINGRESP for the same reason.
 */
async function publish(publisher: RawClient, topic: string, payload: string, qos: QoS = 1): Promise<void> {
  const messageId = nextId++;
  await publisher.send({ cmd: "publish", topic, payload, qos, messageId, retain: false, dup: false });
  if (qos === 0) {
    await publisher.send({ cmd: "pingreq" });
    await publisher.expect("pingresp");
  } else if (qos === 1) {
    assert.equal((await publisher.expect("puback")).messageId, messageId);
  } else {
    assert.equal((await publisher.expect("pubrec")).messageId, messageId);
    await publisher.send({ cmd: "pubrel", messageId });
    assert.equal((await publisher.expect("pubcomp")).messageId, messageId);
  }
}

/** Asserts the next packet is a PUBLISH of `payload` on `topic` and returns it. */
async function expectMessage(client: RawClient, topic: string, payload: string): Promise<Publish> {
  const got = await client.expect("publish");
  assert.deepEqual([got.topic, got.payload.toString()], [topic, payload], JSON.stringify(summary(got)));
  return got;
}

/** PINGREQ, then PINGRESP must be the next packet: nothing else was waiting to be sent. */
async function assertNothingMore(client: RawClient): Promise<void> {
  await client.send({ cmd: "pingreq" });
  const next = await client.next();
  assert.equal(next.cmd, "pingresp", `expected nothing more, got ${JSON.stringify(summary(next))}`);
}

async function puback(client: RawClient, messageId: number | undefined): Promise<void> {
  await client.send({ cmd: "puback", messageId });
}

// --- Persistent sessions ------------------------------------------------------------------------------

Deno.test("[MQTT-3.1.2-4] clean session 0 keeps subscriptions across a reconnect", async () => {
  await using broker = startBroker();
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  {
    await using sub = await persistentSubscriber(broker, "keeper", "keep/#", 1);
    await disconnect(sub);
  }
  const { client, present } = await reconnect(broker, "keeper");
  await using sub = client;
  assert.equal(present, true);
  // No new SUBSCRIBE: the stored one routes the message.
  await publish(pub, "keep/x", "still subscribed");
  const got = await expectMessage(sub, "keep/x", "still subscribed");
  assert.equal(got.qos, 1);
});

Deno.test("[MQTT-3.1.2-5] QoS 1 and 2 messages published while offline are delivered on reconnect, in order", async () => {
  await using broker = startBroker();
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  {
    await using sub = await persistentSubscriber(broker, "away", "q/#", 2);
    await disconnect(sub);
  }
  const sent: [string, QoS][] = [["m1", 1], ["m2", 2], ["m3", 1], ["m4", 2], ["m5", 2]];
  for (const [payload, qos] of sent) await publish(pub, "q/t", payload, qos);
  assert.equal(broker.server.broker.sessions.get("away")?.queue.length, sent.length);

  const { client, present } = await reconnect(broker, "away");
  await using sub = client;
  assert.equal(present, true);
  for (const [payload, qos] of sent) {
    const got = await expectMessage(sub, "q/t", payload);
    assert.equal(got.qos, qos);
    assert.equal(got.dup, false, "a first delivery has DUP 0");
  }
});

Deno.test("[MQTT-3.1.2-5] QoS 0 messages are not queued for an offline session", async () => {
  await using broker = startBroker();
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  {
    await using sub = await persistentSubscriber(broker, "away", "q1/#", 1);
    await subscribe(sub, "q0/#", 0);
    await disconnect(sub);
  }
  await publish(pub, "q1/zero", "published at QoS 0", 0);
  // Published at QoS 1 but granted QoS 0: delivered at QoS 0, so not queued either.
  await publish(pub, "q0/one", "granted QoS 0", 1);
  await publish(pub, "q1/one", "published at QoS 1", 1);
  const { client } = await reconnect(broker, "away");
  await using sub = client;
  await expectMessage(sub, "q1/one", "published at QoS 1");
  await assertNothingMore(sub);
});

Deno.test("[MQTT-3.1.2-4] mosquitto_sub -c -i: messages published while it was away arrive when it returns", async () => {
  await using broker = startBroker();
  const sub = (extra: string[]) =>
    runMosquittoTool("mosquitto_sub", [
      ...["-p", String(broker.port), "-c", "-i", "mosq-keeper", "-q", "1", "-t", "mq/#", "-v"],
      ...extra,
    ]);
  // -E: exit (with DISCONNECT) once subscribed.
  const first = await sub(["-E"]);
  assert.equal(first.code, 0, first.stderr);
  await until(
    () => broker.server.broker.sessions.get("mosq-keeper")?.outlet === null,
    "mosquitto_sub to leave",
  );
  const pub = await runMosquittoTool("mosquitto_pub", [
    ...["-p", String(broker.port), "-i", "mosq-pub", "-q", "1", "-t", "mq/a", "-m", "while away"],
  ]);
  assert.equal(pub.code, 0, pub.stderr);
  const second = await sub(["-C", "1", "-W", "5"]);
  assert.equal(second.code, 0, second.stderr);
  assert.equal(second.stdout, "mq/a while away\n");
});

Deno.test("[MQTT-3.1.2-5] MQTT.js with clean: false gets QoS 1 and 2 messages queued while it was away", async () => {
  await using broker = startBroker();
  {
    await using sub = await connectMqttJs(broker.port, { clientId: "mqttjs-keeper", clean: false });
    await sub.mqtt.subscribeAsync("mj/#", { qos: 2 });
    await sub.end();
  }
  await until(() => broker.server.broker.sessions.get("mqttjs-keeper")?.outlet === null, "MQTT.js to leave");
  await using pub = await connectMqttJs(broker.port, { clientId: "mqttjs-pub" });
  await pub.mqtt.publishAsync("mj/1", "one", { qos: 1 });
  await pub.mqtt.publishAsync("mj/2", "two", { qos: 2 });
  await using back = await connectMqttJs(broker.port, { clientId: "mqttjs-keeper", clean: false });
  const messages = await back.received(2);
  const got = messages.map((m) => [m.topic, m.payload, m.qos]);
  assert.deepEqual(got, [["mj/1", "one", 1], ["mj/2", "two", 2]]);
});

Deno.test("[MQTT-3.1.2-6] clean session 1 discards the stored session: queued messages and subscriptions", async () => {
  await using broker = startBroker();
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  {
    await using sub = await persistentSubscriber(broker, "fickle", "old/#", 1);
    await disconnect(sub);
  }
  await publish(pub, "old/queued", "queued for the old session");
  {
    const { client, present } = await reconnect(broker, "fickle", true);
    await using fresh = client;
    assert.equal(present, false);
    // Neither the queued message nor the old subscription survived.
    await assertNothingMore(fresh);
    await subscribe(fresh, "new/marker", 1);
    await publish(pub, "old/live", "old subscription");
    await publish(pub, "new/marker", "marker");
    await expectMessage(fresh, "new/marker", "marker");
    await disconnect(fresh);
  }
  // The clean session ended with its connection; nothing is left to resume.
  const { client, present } = await reconnect(broker, "fickle");
  await using after = client;
  assert.equal(present, false);
  await assertNothingMore(after);
});

Deno.test("[MQTT-3.1.4-2] a clean session 0 takeover resumes the session and re-sends what was unacknowledged", async () => {
  await using broker = startBroker();
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await using old = await persistentSubscriber(broker, "mover", "mv/#", 1);
  await publish(pub, "mv/1", "unacknowledged");
  const first = await expectMessage(old, "mv/1", "unacknowledged");
  const { client, present } = await reconnect(broker, "mover");
  await using taker = client;
  assert.equal(present, true);
  await old.closedByBroker();
  const again = await expectMessage(taker, "mv/1", "unacknowledged");
  assert.deepEqual([again.dup, again.messageId], [true, first.messageId]);
  await publish(pub, "mv/2", "subscription kept");
  await expectMessage(taker, "mv/2", "subscription kept");
});

// --- Re-sending on reconnect ---------------------------------------------------------------------------

Deno.test("[MQTT-4.4.0-1] unacknowledged QoS 1 deliveries are re-sent on reconnect with DUP 1 and the same ids", async () => {
  await using broker = startBroker();
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await using sub = await persistentSubscriber(broker, "forgetful", "r/#", 1);
  await publish(pub, "r/1", "first");
  await publish(pub, "r/2", "second");
  const originals = [await expectMessage(sub, "r/1", "first"), await expectMessage(sub, "r/2", "second")];
  assert.deepEqual(originals.map((p) => p.dup), [false, false]);
  await drop(broker, sub, "forgetful");

  const { client } = await reconnect(broker, "forgetful");
  await using back = client;
  // Re-sent in the original order [MQTT-4.6.0-1], flagged as duplicates [MQTT-3.3.1-1].
  const resent = [await expectMessage(back, "r/1", "first"), await expectMessage(back, "r/2", "second")];
  assert.deepEqual(
    resent.map((p) => [p.dup, p.qos, p.messageId]),
    originals.map((p) => [true, 1, p.messageId]),
  );
  for (const p of resent) await puback(back, p.messageId);
  await assertNothingMore(back);
  assert.equal(broker.server.broker.sessions.get("forgetful")?.inflight.size, 0);
});

Deno.test("[MQTT-4.4.0-1] a QoS 2 delivery without PUBREC is re-sent as PUBLISH with DUP 1 and the same id", async () => {
  await using broker = startBroker();
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await using sub = await persistentSubscriber(broker, "slow", "r2/#", 2);
  await publish(pub, "r2/x", "exactly once", 2);
  const original = await expectMessage(sub, "r2/x", "exactly once");
  assert.equal(original.qos, 2);
  await drop(broker, sub, "slow");

  const { client } = await reconnect(broker, "slow");
  await using back = client;
  const resent = await expectMessage(back, "r2/x", "exactly once");
  assert.deepEqual([resent.dup, resent.qos, resent.messageId], [true, 2, original.messageId]);
  await back.send({ cmd: "pubrec", messageId: resent.messageId });
  assert.equal((await back.expect("pubrel")).messageId, original.messageId);
  await back.send({ cmd: "pubcomp", messageId: resent.messageId });
  await assertNothingMore(back);
});

Deno.test("[MQTT-4.4.0-1] a QoS 2 delivery whose PUBREC arrived gets PUBREL, not PUBLISH, re-sent", async () => {
  await using broker = startBroker();
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await using sub = await persistentSubscriber(broker, "halfway", "r3/#", 2);
  await publish(pub, "r3/x", "received", 2);
  const original = await expectMessage(sub, "r3/x", "received");
  await sub.send({ cmd: "pubrec", messageId: original.messageId });
  // The broker's PUBREL proves it handled the PUBREC before we go.
  assert.equal((await sub.expect("pubrel")).messageId, original.messageId);
  await drop(broker, sub, "halfway");

  const { client } = await reconnect(broker, "halfway");
  await using back = client;
  const next = await back.next();
  assert.deepEqual(summary(next), { cmd: "pubrel", messageId: original.messageId });
  await back.send({ cmd: "pubcomp", messageId: original.messageId });
  await assertNothingMore(back);
  assert.equal(broker.server.broker.sessions.get("halfway")?.inflight.size, 0);
});

Deno.test("[MQTT-4.6.0-6] re-sent deliveries go before messages queued while offline, all in order", async () => {
  await using broker = startBroker({ limits: { max_inflight_messages: 1 } });
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await using sub = await persistentSubscriber(broker, "ordered", "o/#", 1);
  await publish(pub, "o/t", "m1");
  const m1 = await expectMessage(sub, "o/t", "m1");
  await drop(broker, sub, "ordered");
  await publish(pub, "o/t", "m2");
  await publish(pub, "o/t", "m3");

  const { client } = await reconnect(broker, "ordered");
  await using back = client;
  const again = await expectMessage(back, "o/t", "m1");
  assert.deepEqual([again.dup, again.messageId], [true, m1.messageId]);
  // The window of one is full until m1 is acknowledged.
  await assertNothingMore(back);
  await puback(back, again.messageId);
  const m2 = await expectMessage(back, "o/t", "m2");
  assert.equal(m2.dup, false);
  await puback(back, m2.messageId);
  const m3 = await expectMessage(back, "o/t", "m3");
  await puback(back, m3.messageId);
  await assertNothingMore(back);
});

// --- Limits --------------------------------------------------------------------------------------------

Deno.test("limits.max_queued_messages: offline messages beyond the limit are dropped and counted", async () => {
  await using broker = startBroker({ limits: { max_queued_messages: 3 } });
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  {
    await using sub = await persistentSubscriber(broker, "full", "f/#", 1);
    await disconnect(sub);
  }
  for (let i = 1; i <= 5; i++) await publish(pub, "f/t", `m${i}`);
  assert.equal(broker.server.metrics.droppedQueueFull, 2);

  const { client } = await reconnect(broker, "full");
  await using back = client;
  for (const payload of ["m1", "m2", "m3"]) {
    await puback(back, (await expectMessage(back, "f/t", payload)).messageId);
  }
  await assertNothingMore(back);
});

Deno.test("limits.max_queued_messages: online, messages beyond a full window and a full queue are dropped", async () => {
  await using broker = startBroker({ limits: { max_inflight_messages: 1, max_queued_messages: 2 } });
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await using sub = await persistentSubscriber(broker, "busy", "b/#", 1);
  for (let i = 1; i <= 4; i++) await publish(pub, "b/t", `m${i}`);
  assert.equal(broker.server.metrics.droppedQueueFull, 1);
  for (const payload of ["m1", "m2", "m3"]) {
    await puback(sub, (await expectMessage(sub, "b/t", payload)).messageId);
  }
  await assertNothingMore(sub);
});

Deno.test("limits.max_inflight_messages bounds unacknowledged QoS 1 deliveries; PUBACKs let more through", async () => {
  await using broker = startBroker({ limits: { max_inflight_messages: 2 } });
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await using sub = await persistentSubscriber(broker, "window", "w/#", 1);
  for (let i = 1; i <= 5; i++) await publish(pub, "w/t", `m${i}`);
  const m1 = await expectMessage(sub, "w/t", "m1");
  const m2 = await expectMessage(sub, "w/t", "m2");
  await assertNothingMore(sub);
  await puback(sub, m1.messageId);
  const m3 = await expectMessage(sub, "w/t", "m3");
  await assertNothingMore(sub);
  await puback(sub, m2.messageId);
  const m4 = await expectMessage(sub, "w/t", "m4");
  await puback(sub, m3.messageId);
  const m5 = await expectMessage(sub, "w/t", "m5");
  await puback(sub, m4.messageId);
  await puback(sub, m5.messageId);
  await assertNothingMore(sub);
  assert.equal(broker.server.metrics.droppedQueueFull, 0);
});

Deno.test("limits.max_inflight_messages: a QoS 2 delivery holds its slot until PUBCOMP, not PUBREC", async () => {
  await using broker = startBroker({ limits: { max_inflight_messages: 1 } });
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await using sub = await persistentSubscriber(broker, "window2", "w2/#", 2);
  await publish(pub, "w2/t", "m1", 2);
  await publish(pub, "w2/t", "m2", 2);
  const m1 = await expectMessage(sub, "w2/t", "m1");
  await sub.send({ cmd: "pubrec", messageId: m1.messageId });
  assert.equal((await sub.expect("pubrel")).messageId, m1.messageId);
  await assertNothingMore(sub);
  await sub.send({ cmd: "pubcomp", messageId: m1.messageId });
  const m2 = await expectMessage(sub, "w2/t", "m2");
  assert.equal(m2.qos, 2);
});

// --- Expiry ----------------------------------------------------------------------------------------------

Deno.test("mqtt.session_expiry: an offline session expires, then reconnecting gets session present 0", async () => {
  await using broker = startBroker({ mqtt: { session_expiry: 1 } });
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  {
    await using sub = await persistentSubscriber(broker, "brief", "exp/#", 1);
    await disconnect(sub);
  }
  await publish(pub, "exp/queued", "queued before expiry");
  await until(() => broker.server.metrics.sessionsExpired === 1, "the session to expire", 3000);
  assert.equal(broker.server.broker.sessions.get("brief"), undefined);
  assert.ok(broker.logs.some((l) => l.includes(`session "brief" expired after 1s offline`)));

  const { client, present } = await reconnect(broker, "brief");
  await using back = client;
  assert.equal(present, false);
  // The queued message and the subscription went with the session.
  await subscribe(back, "exp/marker", 1);
  await publish(pub, "exp/after", "old subscription");
  await publish(pub, "exp/marker", "marker");
  await expectMessage(back, "exp/marker", "marker");
});

Deno.test("mqtt.session_expiry: an online session never expires and reconnecting cancels the expiry", async () => {
  await using broker = startBroker({ mqtt: { session_expiry: 1 } });
  {
    await using returning = await persistentSubscriber(broker, "returning", "ret/#", 1);
    await using leaving = await persistentSubscriber(broker, "leaving", "lea/#", 1);
    // "returning" goes offline first, so its expiry would come before "leaving"'s.
    await disconnect(returning);
    await disconnect(leaving);
  }
  const { client, present } = await reconnect(broker, "returning");
  await using back = client;
  assert.equal(present, true);
  await until(() => broker.server.metrics.sessionsExpired === 1, "the other session to expire", 3000);
  assert.equal(broker.server.broker.sessions.get("leaving"), undefined);
  assert.ok(broker.server.broker.sessions.get("returning")?.subscriptions.has("ret/#"));
  await back.send({ cmd: "pingreq" });
  await back.expect("pingresp");
  assert.equal(broker.server.metrics.sessionsExpired, 1);
});

// --- Inbound QoS 2 state -----------------------------------------------------------------------------------

Deno.test("[MQTT-4.3.3-2] inbound QoS 2 packet id state survives a reconnect: a re-sent PUBLISH is not delivered twice", async () => {
  await using broker = startBroker();
  await using watch = await RawClient.connected(broker.port, { clientId: "watch" });
  await subscribe(watch, "in/#", 0);
  await using publisher = await RawClient.connected(broker.port, { clientId: "qos2-pub", clean: false });
  const send = (client: RawClient, payload: string, dup: boolean) =>
    client.send({ cmd: "publish", topic: "in/t", payload, qos: 2, messageId: 5, retain: false, dup });
  await send(publisher, "first", false);
  assert.equal((await publisher.expect("pubrec")).messageId, 5);
  await expectMessage(watch, "in/t", "first");
  // Gone before sending PUBREL.
  await drop(broker, publisher, "qos2-pub");

  const { client, present } = await reconnect(broker, "qos2-pub");
  await using back = client;
  assert.equal(present, true);
  await send(back, "first", true);
  assert.equal((await back.expect("pubrec")).messageId, 5);
  await back.send({ cmd: "pubrel", messageId: 5 });
  assert.equal((await back.expect("pubcomp")).messageId, 5);
  // After PUBREL the id is free again: a new message with it is delivered.
  await send(back, "second", false);
  assert.equal((await back.expect("pubrec")).messageId, 5);
  // "first" came once: the next delivery is "second".
  await expectMessage(watch, "in/t", "second");
});

Deno.test("[MQTT-3.1.2-6] clean session 1 starts without inbound QoS 2 state from an earlier session", async () => {
  await using broker = startBroker();
  await using watch = await RawClient.connected(broker.port, { clientId: "watch" });
  await subscribe(watch, "in/#", 0);
  await using publisher = await RawClient.connected(broker.port, { clientId: "qos2-pub", clean: false });
  const send = (client: RawClient, payload: string) =>
    client.send({ cmd: "publish", topic: "in/t", payload, qos: 2, messageId: 9, retain: false, dup: false });
  await send(publisher, "old session");
  await publisher.expect("pubrec");
  await expectMessage(watch, "in/t", "old session");
  await drop(broker, publisher, "qos2-pub");

  const { client } = await reconnect(broker, "qos2-pub", true);
  await using fresh = client;
  await send(fresh, "new session");
  assert.equal((await fresh.expect("pubrec")).messageId, 9);
  await expectMessage(watch, "in/t", "new session");
});
