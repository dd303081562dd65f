/**
 * MQTT 5.0 SUBSCRIBE and UNSUBSCRIBE (sections 3.8-3.11): the subscription options (No Local, Retain As
 * Published, Retain Handling), Subscription Identifiers on deliveries, the v5 SUBACK and UNSUBACK reason
 * codes, the broker's wildcard_subscriptions and subscription_identifiers switches, and malformed or
 * protocol-violating SUBSCRIBE packets, which end the connection with a DISCONNECT naming the reason.
 */

import assert from "node:assert/strict";
import { startBroker, type TestBroker } from "./helpers/broker.ts";
import { frame, u16, utf8 } from "./helpers/bytes.ts";
import { type Publish, type QoS, RawClient } from "./helpers/raw.ts";
import {
  assertAlive,
  assertServerDisconnect,
  bystander,
  connect5,
  prop,
  propertyBlock,
  subscriber5,
} from "./helpers/v5.ts";

// --- Local helpers ------------------------------------------------------------------------------------------

/** The Subscription Identifiers a PUBLISH carries, sorted (their order is not significant [MQTT-3.3.4-4]). */
function subscriptionIds(packet: Publish): number[] {
  const ids = packet.properties?.subscriptionIdentifier;
  return ids === undefined ? [] : [ids].flat().sort((a, b) => a - b);
}

/** SUBSCRIBE to `topic` at `qos` with Subscription Identifier `id`, asserting the QoS is granted. */
async function subscribeWithId(client: RawClient, topic: string, qos: QoS, id: number): Promise<void> {
  assert.deepEqual(await client.subscribe([[topic, qos]], { properties: { subscriptionIdentifier: id } }), [
    qos,
  ]);
}

/** The next packet must be a PUBLISH of `payload` on `topic`; acknowledges it if QoS 1. */
async function expectPublish(client: RawClient, topic: string, payload: string): Promise<Publish> {
  const publish = await client.expectPublish(topic, payload);
  if (publish.qos === 1) await client.send({ cmd: "puback", messageId: publish.messageId });
  return publish;
}

/** A SUBSCRIBE written by hand: packet id 1, exactly the `properties` given, then each filter and options byte. */
function rawSubscribe5(properties: number[][], filters: [topic: string, options: number][]): Uint8Array {
  return frame(0x82, [
    ...u16(1),
    ...propertyBlock(properties),
    ...filters.flatMap(([topic, options]) => [...utf8(topic), options]),
  ]);
}

/** The Subscription Identifier property: identifier 0x0B, then the value as a variable byte integer. */
const subscriptionIdentifier = (value: number) => prop.varint(0x0b, value);

// --- No Local ------------------------------------------------------------------------------------------------

Deno.test("[MQTT-3.8.3-3] No Local: a client's own messages are not sent back to it; other clients' are", async () => {
  await using broker = await startBroker();
  await using me = await subscriber5(broker.port, "me", [{ topic: "chat/#", qos: 1, nl: true }]);
  await using other = await subscriber5(broker.port, "other", [{ topic: "chat/#", qos: 1 }]);

  // QoS 0, so that nothing but a PUBLISH could come back: publishAcked's PINGREQ shows the echo if any.
  await me.publishAcked("chat/me", "mine");
  await expectPublish(other, "chat/me", "mine");
  await me.assertIdle();

  await other.publish("chat/other", "theirs");
  await expectPublish(me, "chat/other", "theirs");
  // "other" subscribed without No Local: its own message comes back to it.
  await expectPublish(other, "chat/other", "theirs");
  await me.assertIdle();
});

// --- Retain As Published ---------------------------------------------------------------------------------------

Deno.test("[MQTT-3.3.1-12] [MQTT-3.3.1-13] Retain As Published keeps RETAIN on live messages; without it RETAIN is 0", async () => {
  await using broker = await startBroker();
  await using kept = await subscriber5(broker.port, "kept", [{ topic: "r/#", qos: 1, rap: true }]);
  await using cleared = await subscriber5(broker.port, "cleared", [{ topic: "r/#", qos: 1, rap: false }]);
  await using pub = await connect5(broker.port, "pub");

  await pub.publishAcked("r/a", "retained live", { qos: 1, retain: true });
  assert.equal(
    (await expectPublish(kept, "r/a", "retained live")).retain,
    true,
    "RAP 1: RETAIN as published",
  );
  assert.equal((await expectPublish(cleared, "r/a", "retained live")).retain, false, "RAP 0: RETAIN 0");

  await pub.publishAcked("r/b", "plain", { qos: 1 });
  assert.equal((await expectPublish(kept, "r/b", "plain")).retain, false, "RAP 1 and RETAIN 0 published");
  assert.equal((await expectPublish(cleared, "r/b", "plain")).retain, false);

  // Retained messages sent because of a new subscription carry RETAIN 1 whatever Retain As Published says
  // (section 3.8.3.1).
  await using late = await connect5(broker.port, "late");
  assert.deepEqual(await late.subscribe([{ topic: "r/a", qos: 1, rap: false }]), [1]);
  assert.equal((await expectPublish(late, "r/a", "retained live")).retain, true);
});

// --- Retain Handling -------------------------------------------------------------------------------------------

/** A broker holding the retained message "stored" on r/t. */
async function brokerWithRetained(): Promise<TestBroker> {
  const broker = await startBroker();
  await using pub = await connect5(broker.port, "retainer");
  await pub.publishAcked("r/t", "stored", { qos: 1, retain: true });
  return broker;
}

Deno.test("[MQTT-3.3.1-9] Retain Handling 0: retained messages are sent on every SUBSCRIBE, new or repeated", async () => {
  await using broker = await brokerWithRetained();
  await using client = await connect5(broker.port, "rh0");
  assert.deepEqual(await client.subscribe([{ topic: "r/#", qos: 1, rh: 0 }]), [1]);
  assert.equal((await expectPublish(client, "r/t", "stored")).retain, true);
  await client.assertIdle();
  assert.deepEqual(await client.subscribe([{ topic: "r/#", qos: 1, rh: 0 }]), [1]);
  assert.equal((await expectPublish(client, "r/t", "stored")).retain, true);
  await client.assertIdle();
});

Deno.test("[MQTT-3.3.1-10] Retain Handling 1: retained messages only when the subscription did not exist", async () => {
  await using broker = await brokerWithRetained();
  await using client = await connect5(broker.port, "rh1");
  assert.deepEqual(await client.subscribe([{ topic: "r/#", qos: 1, rh: 1 }]), [1]);
  await expectPublish(client, "r/t", "stored");
  await client.assertIdle();

  // The same filter again replaces the existing subscription: nothing is sent.
  assert.deepEqual(await client.subscribe([{ topic: "r/#", qos: 1, rh: 1 }]), [1]);
  await client.assertIdle();

  // Unsubscribed, the next SUBSCRIBE makes a new subscription: the retained message comes again.
  assert.deepEqual(await client.unsubscribe(["r/#"]), [0x00]);
  assert.deepEqual(await client.subscribe([{ topic: "r/#", qos: 1, rh: 1 }]), [1]);
  await expectPublish(client, "r/t", "stored");
  await client.assertIdle();
});

Deno.test("[MQTT-3.3.1-11] Retain Handling 2: retained messages are never sent on SUBSCRIBE; live ones are", async () => {
  await using broker = await brokerWithRetained();
  await using client = await connect5(broker.port, "rh2");
  assert.deepEqual(await client.subscribe([{ topic: "r/#", qos: 1, rh: 2 }]), [1]);
  await client.assertIdle();
  assert.deepEqual(await client.subscribe([{ topic: "r/#", qos: 1, rh: 2 }]), [1]);
  await client.assertIdle();

  await using pub = await connect5(broker.port, "pub");
  await pub.publishAcked("r/t", "live", { qos: 1 });
  await expectPublish(client, "r/t", "live");
});

// --- Subscription Identifiers -------------------------------------------------------------------------------

Deno.test("[MQTT-3.3.4-3] a delivery carries the Subscription Identifier of the subscription it matched", async () => {
  await using broker = await brokerWithRetained();
  await using client = await connect5(broker.port, "ids");
  await subscribeWithId(client, "r/#", 1, 268435455);
  // The retained message sent because of the subscription is a match to it too.
  assert.deepEqual(subscriptionIds(await expectPublish(client, "r/t", "stored")), [268435455]);

  assert.deepEqual(await client.subscribe([{ topic: "plain/t", qos: 1 }]), [1]);
  await using pub = await connect5(broker.port, "pub");
  await pub.publishAcked("r/x", "with id", { qos: 1 });
  assert.deepEqual(subscriptionIds(await expectPublish(client, "r/x", "with id")), [268435455]);
  await pub.publishAcked("plain/t", "without id", { qos: 1 });
  assert.deepEqual(subscriptionIds(await expectPublish(client, "plain/t", "without id")), []);
  await client.assertIdle();
});

Deno.test("[MQTT-3.3.4-2] [MQTT-3.3.4-4] two matching subscriptions: one PUBLISH at the highest QoS with both identifiers", async () => {
  await using broker = await startBroker();
  await using client = await connect5(broker.port, "overlap");
  await subscribeWithId(client, "s/+", 0, 1);
  await subscribeWithId(client, "s/x", 1, 2);
  await using pub = await connect5(broker.port, "pub");

  await pub.publishAcked("s/x", "both", { qos: 2 });
  const both = await expectPublish(client, "s/x", "both");
  assert.equal(both.qos, 1, "the highest QoS of the matching subscriptions");
  assert.deepEqual(subscriptionIds(both), [1, 2]);
  await client.assertIdle(); // one copy only

  await pub.publishAcked("s/y", "one", { qos: 2 });
  const one = await expectPublish(client, "s/y", "one");
  assert.equal(one.qos, 0);
  assert.deepEqual(subscriptionIds(one), [1]);
  await client.assertIdle();
});

Deno.test("[MQTT-3.8.4-3] re-subscribing replaces the subscription and its Subscription Identifier", async () => {
  await using broker = await startBroker();
  await using client = await connect5(broker.port, "replace");
  await subscribeWithId(client, "s/x", 1, 5);
  await using pub = await connect5(broker.port, "pub");
  await pub.publishAcked("s/x", "first", { qos: 1 });
  assert.deepEqual(subscriptionIds(await expectPublish(client, "s/x", "first")), [5]);

  await subscribeWithId(client, "s/x", 1, 6);
  await pub.publishAcked("s/x", "second", { qos: 1 });
  assert.deepEqual(subscriptionIds(await expectPublish(client, "s/x", "second")), [6]);

  // Replaced by a SUBSCRIBE without one, the subscription has no identifier any more (section 3.8.2.1.2).
  assert.deepEqual(await client.subscribe([{ topic: "s/x", qos: 1 }]), [1]);
  await pub.publishAcked("s/x", "third", { qos: 1 });
  assert.deepEqual(subscriptionIds(await expectPublish(client, "s/x", "third")), []);
  await client.assertIdle();
});

// --- UNSUBACK and SUBACK reason codes ------------------------------------------------------------------------

Deno.test("[MQTT-3.11.3-1] UNSUBACK: 0x00 for a removed subscription, 0x11 where none existed, 0x8F for an invalid filter", async () => {
  await using broker = await startBroker();
  await using client = await subscriber5(broker.port, "unsub", [{ topic: "a", qos: 1 }, {
    topic: "c/+",
    qos: 0,
  }]);
  assert.deepEqual(await client.unsubscribe(["a", "b", "c/+"]), [0x00, 0x11, 0x00]);
  assert.deepEqual(await client.unsubscribe(["a"]), [0x11], "already gone");
  // An invalid filter cannot name a subscription: Topic Filter invalid, and the connection stays.
  assert.deepEqual(await client.unsubscribe(["a/#/b", "$share//t", "b"]), [0x8f, 0x8f, 0x11]);

  await using pub = await connect5(broker.port, "pub");
  await pub.publishAcked("a", "gone", { qos: 1 });
  await pub.publishAcked("c/d", "gone too", { qos: 1 });
  await client.assertIdle();
});

Deno.test("[MQTT-3.9.3-1] SUBACK 0x8F for an invalid filter; the other filters of the SUBSCRIBE are granted", async () => {
  await using broker = await startBroker();
  await using client = await connect5(broker.port, "mixed");
  const granted = await client.subscribe([
    { topic: "ok/1", qos: 1 },
    { topic: "bad/#/x", qos: 1 },
    { topic: "bad+", qos: 0 },
    { topic: "ok/2", qos: 2 },
  ]);
  assert.deepEqual(granted, [1, 0x8f, 0x8f, 2]);
  await client.assertIdle(); // the connection stays open

  await using pub = await connect5(broker.port, "pub");
  await pub.publishAcked("ok/1", "one", { qos: 1 });
  await expectPublish(client, "ok/1", "one");
  await pub.publishAcked("ok/2", "two", { qos: 0 });
  await expectPublish(client, "ok/2", "two");
});

for (const problemInformation of [true, false]) {
  Deno.test(`SUBACK failure: Reason String ${problemInformation ? "sent" : "not sent"} with Request Problem Information ${Number(problemInformation)} (section 3.1.2.11.7)`, async () => {
    await using broker = await startBroker();
    await using client = await connect5(broker.port, "problems", {
      properties: { requestProblemInformation: problemInformation },
    });
    await client.send({ cmd: "subscribe", messageId: 3, subscriptions: [{ topic: "a/#/b", qos: 0 }] });
    const suback = await client.expect("suback");
    assert.deepEqual([suback.messageId, suback.granted], [3, [0x8f]]);
    const reasonString = suback.properties?.reasonString;
    if (problemInformation) {
      assert.ok(typeof reasonString === "string" && reasonString.length > 0, "a Reason String says why");
    } else {
      assert.equal(
        reasonString,
        undefined,
        "[MQTT-3.1.2-29] no Reason String when the client asked for none",
      );
    }
  });
}

Deno.test("wildcard_subscriptions false: CONNACK says so, + and # filters get SUBACK 0xA2 (v5), plain ones are granted", async () => {
  await using broker = await startBroker({ mqtt: { wildcard_subscriptions: false } });
  await using client = await connect5(broker.port, "nowild");
  assert.equal(
    client.connack.properties?.wildcardSubscriptionAvailable,
    false,
    "Wildcard Subscription Available 0",
  );
  const granted = await client.subscribe([
    { topic: "a/+", qos: 1 },
    { topic: "b/#", qos: 1 },
    { topic: "plain", qos: 1 },
  ]);
  assert.deepEqual(granted, [0xa2, 0xa2, 1]);
  await client.assertIdle();
  await client.publish("plain", "ok");
  await expectPublish(client, "plain", "ok");
});

Deno.test("wildcard_subscriptions false: a 3.1.1 client gets SUBACK 0x80 for a wildcard filter and stays connected", async () => {
  await using broker = await startBroker({ mqtt: { wildcard_subscriptions: false } });
  await using client = await RawClient.connected(broker.port, { clientId: "nowild311" });
  assert.deepEqual(await client.subscribe([["a/+", 1], ["#", 0], ["plain", 1]]), [0x80, 0x80, 1]);
  await client.assertIdle();
  await client.publish("plain", "ok");
  await client.expectPublish("plain", "ok", 0);
});

Deno.test("subscription_identifiers false: CONNACK says so; a SUBSCRIBE with one gets DISCONNECT 0xA1", async () => {
  await using broker = await startBroker({ mqtt: { subscription_identifiers: false } });
  await using other = await bystander(broker.port);
  await using client = await connect5(broker.port, "noids");
  assert.equal(client.connack.properties?.subscriptionIdentifiersAvailable, false);
  // Without an identifier, SUBSCRIBE works as usual.
  assert.deepEqual(await client.subscribe([{ topic: "t", qos: 0 }]), [0]);
  await client.send({
    cmd: "subscribe",
    messageId: 7,
    subscriptions: [{ topic: "u", qos: 0 }],
    properties: { subscriptionIdentifier: 3 },
  });
  await assertServerDisconnect(client, 0xa1);
  await assertAlive(broker, other);
});

Deno.test("CONNACK leaves out the *Available flags when the features are on", async () => {
  await using broker = await startBroker();
  await using client = await connect5(broker.port, "defaults");
  assert.equal(client.connack.properties?.wildcardSubscriptionAvailable, undefined);
  assert.equal(client.connack.properties?.subscriptionIdentifiersAvailable, undefined);
  assert.equal(client.connack.properties?.sharedSubscriptionAvailable, undefined);
});

// --- Malformed and protocol-violating SUBSCRIBE packets ------------------------------------------------------

const violations: [name: string, bytes: Uint8Array, reasonCode: number][] = [
  [
    "[MQTT-3.8.3-5] reserved bits 6-7 of the Subscription Options set: malformed",
    rawSubscribe5([], [["t", 0x40]]),
    0x81,
  ],
  ["retain handling 3 (section 3.8.3.1): protocol error", rawSubscribe5([], [["t", 0x30]]), 0x82],
  [
    "Subscription Identifier 0 (section 3.8.2.1.2): protocol error",
    rawSubscribe5([subscriptionIdentifier(0)], [["t", 0]]),
    0x82,
  ],
  [
    "a Subscription Identifier given twice (section 3.8.2.1.2): protocol error",
    rawSubscribe5([subscriptionIdentifier(1), subscriptionIdentifier(2)], [["t", 0]]),
    0x82,
  ],
];

for (const [name, bytes, reasonCode] of violations) {
  Deno.test(`SUBSCRIBE with ${name} -> DISCONNECT 0x${reasonCode.toString(16)} and close`, async () => {
    await using broker = await startBroker();
    await using other = await bystander(broker.port);
    await using client = await connect5(broker.port, "offender");
    await client.sendBytes(bytes);
    await assertServerDisconnect(client, reasonCode);
    assert.equal(broker.server.metrics.protocolErrors, 1, "counted as one protocol error");
    await assertAlive(broker, other);
  });
}

Deno.test("a valid hand-made SUBSCRIBE (the builder above) is accepted: the violations are what the broker rejects", async () => {
  await using broker = await startBroker();
  await using client = await connect5(broker.port, "control");
  // Retain handling 2, Retain As Published, No Local, QoS 1, and identifier 9.
  await client.sendBytes(rawSubscribe5([subscriptionIdentifier(9)], [["t", 0x2d]]));
  const suback = await client.expect("suback");
  assert.deepEqual([suback.messageId, suback.granted], [1, [1]]);
  await client.assertIdle();
});
