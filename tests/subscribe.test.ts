/**
 * SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK (MQTT 3.1.1 sections 3.8-3.11) and topic matching (4.7):
 * wildcards, "$" topics, overlapping subscriptions, granted QoS, invalid filters and malformed packets.
 */

import assert from "node:assert/strict";
import { startBroker } from "./helpers/broker.ts";
import { frame, u16, utf8 } from "./helpers/bytes.ts";
import { assertClosesConnection, RawClient } from "./helpers/raw.ts";
import { connectMqttJs } from "./helpers/mqttjs.ts";
import { MosquittoSub, mosquittoTest } from "./helpers/mosquitto.ts";
import { within } from "./helpers/wait.ts";

// --- Local helpers ------------------------------------------------------------------------------------------

/**
 * A SUBSCRIBE (or, with `first` 0xa2, an UNSUBSCRIBE) written byte by byte, for what mqtt-packet will not
 * encode: wrong header flags, QoS 3, no filters. Each entry is a filter, followed by its options byte when
 * `options` is a number.
 */
function rawSubscribe(first: number, packetId: number, entries: [string, number | null][]): Uint8Array {
  const body = u16(packetId);
  for (const [filter, options] of entries) body.push(...utf8(filter), ...(options === null ? [] : [options]));
  return frame(first, body);
}

// --- Topic matching ------------------------------------------------------------------------------------------

/** Does a subscription to `filter` receive a message published to `topic`? */
const MATCHING: { filter: string; topic: string; matches: boolean; rule: string }[] = [
  { filter: "a/b", topic: "a/b", matches: true, rule: "MQTT-4.7.3-4" },
  { filter: "a/b", topic: "A/b", matches: false, rule: "MQTT-4.7.3-4" },
  { filter: "a/b", topic: "a/b/", matches: false, rule: "MQTT-4.7.3-4" },
  { filter: "a/+", topic: "a/b", matches: true, rule: "MQTT-4.7.1-3" },
  { filter: "a/+", topic: "a/b/c", matches: false, rule: "MQTT-4.7.1-3" },
  { filter: "a/+", topic: "a", matches: false, rule: "MQTT-4.7.1-3" },
  { filter: "a/+", topic: "a/", matches: true, rule: "MQTT-4.7.1-3" },
  { filter: "a/+/b", topic: "a//b", matches: true, rule: "MQTT-4.7.1-3" },
  { filter: "+/+", topic: "/x", matches: true, rule: "MQTT-4.7.1-3" },
  { filter: "+", topic: "a", matches: true, rule: "MQTT-4.7.1-3" },
  { filter: "+", topic: "a/b", matches: false, rule: "MQTT-4.7.1-3" },
  { filter: "a/#", topic: "a/b/c", matches: true, rule: "MQTT-4.7.1-2" },
  { filter: "a/#", topic: "a", matches: true, rule: "MQTT-4.7.1-2" },
  { filter: "a/#", topic: "ab", matches: false, rule: "MQTT-4.7.1-2" },
  { filter: "a/+/#", topic: "a/b", matches: true, rule: "MQTT-4.7.1-2" },
  { filter: "#", topic: "x/y/z", matches: true, rule: "MQTT-4.7.1-2" },
  { filter: "#", topic: "/x", matches: true, rule: "MQTT-4.7.1-2" },
  { filter: "#", topic: "$app/x", matches: false, rule: "MQTT-4.7.2-1" },
  { filter: "+/x", topic: "$app/x", matches: false, rule: "MQTT-4.7.2-1" },
  { filter: "+/#", topic: "$app/x", matches: false, rule: "MQTT-4.7.2-1" },
  { filter: "$app/#", topic: "$app/x", matches: true, rule: "MQTT-4.7.2-1" },
  { filter: "$app/+", topic: "$app/x", matches: true, rule: "MQTT-4.7.2-1" },
  { filter: "a/+", topic: "a/$x", matches: true, rule: "MQTT-4.7.2-1" },
];

for (const { filter, topic, matches, rule } of MATCHING) {
  Deno.test(`[${rule}] filter "${filter}" ${matches ? "matches" : "does not match"} topic "${topic}"`, async () => {
    await using broker = await startBroker();
    await using sub = await RawClient.connected(broker.port, { clientId: "sub" });
    assert.deepEqual(await sub.subscribe([[filter, 0], ["marker", 0]]), [0, 0]);
    await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
    await pub.publish(topic, "probe");
    await pub.publish("marker", "marker");
    // The marker is published after the probe, so it arrives after it if the probe was delivered.
    if (matches) await sub.expectPublish(topic, "probe");
    await sub.expectPublish("marker", "marker");
  });
}

// --- Overlaps and granted QoS ----------------------------------------------------------------------------------

Deno.test("[MQTT-3.3.5-1] overlapping subscriptions get the message once at the highest matching QoS", async () => {
  await using broker = await startBroker();
  await using sub = await RawClient.connected(broker.port, { clientId: "sub" });
  assert.deepEqual(await sub.subscribe([["o/#", 0], ["o/+", 2], ["o/t", 1], ["marker", 0]]), [0, 2, 1, 0]);
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await pub.publish("o/t", "overlap", { qos: 2, messageId: 1 });
  await pub.expect("pubrec");
  await pub.publish("marker", "marker");
  await sub.expectPublish("o/t", "overlap", 2);
  // The marker comes next: no second copy for the other matching filters.
  await sub.expectPublish("marker", "marker");
});

Deno.test("[MQTT-3.8.4-6] granted QoS is capped by mqtt.max_qos and deliveries follow the grant", async () => {
  await using broker = await startBroker({ mqtt: { max_qos: 1 } });
  await using sub = await RawClient.connected(broker.port, { clientId: "sub" });
  assert.deepEqual(await sub.subscribe([["c/0", 0], ["c/1", 1], ["c/2", 2]]), [0, 1, 1]);
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await pub.publish("c/2", "capped", { qos: 2, messageId: 1 });
  await pub.expect("pubrec");
  await sub.expectPublish("c/2", "capped", 1);
});

Deno.test("[MQTT-3.9.3-1] SUBACK has one return code per filter, in the order of the SUBSCRIBE", async () => {
  await using broker = await startBroker();
  await using sub = await RawClient.connected(broker.port, { clientId: "sub" });
  const granted = await sub.subscribe([["s/2", 2], ["s/0", 0], ["s/1", 1], ["s/#", 2], ["+/0", 0]], {
    messageId: 4242,
  });
  assert.deepEqual(granted, [2, 0, 1, 2, 0]);
});

Deno.test("[MQTT-3.8.4-3] subscribing again to the same filter replaces its QoS", async () => {
  await using broker = await startBroker();
  await using sub = await RawClient.connected(broker.port, { clientId: "sub" });
  assert.deepEqual(await sub.subscribe([["r/t", 2]], { messageId: 1 }), [2]);
  assert.deepEqual(await sub.subscribe([["r/t", 0]], { messageId: 2 }), [0]);
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await pub.publish("r/t", "requalified", { qos: 2, messageId: 1 });
  await pub.publish("r/t", "marker");
  // Delivered once, at the new QoS 0, then the marker.
  await sub.expectPublish("r/t", "requalified", 0);
  await sub.expectPublish("r/t", "marker", 0);
});

// --- Invalid SUBSCRIBE and UNSUBSCRIBE ----------------------------------------------------------------------------

for (
  const [filter, rule] of [
    ["a/#/b", "MQTT-4.7.1-2"],
    ["a#", "MQTT-4.7.1-2"],
    ["#a", "MQTT-4.7.1-2"],
    ["##", "MQTT-4.7.1-2"],
    ["a+/b", "MQTT-4.7.1-3"],
    ["a/+b", "MQTT-4.7.1-3"],
    ["", "MQTT-4.7.3-1"],
  ]
) {
  Deno.test(`[${rule}] SUBSCRIBE with invalid filter "${filter}" (after a valid one) closes without SUBACK`, async () => {
    await using broker = await startBroker();
    await assertClosesConnection(broker, rawSubscribe(0x82, 1, [["ok/+", 0], [filter, 0]]));
  });
}

Deno.test('[MQTT-4.7.1-2] UNSUBSCRIBE with invalid filter "a/#/b" closes without UNSUBACK', async () => {
  await using broker = await startBroker();
  await assertClosesConnection(broker, rawSubscribe(0xa2, 1, [["a/#/b", null]]));
});

Deno.test("[MQTT-3.8.1-1] SUBSCRIBE with reserved header bits 0000 (first byte 0x80) closes", async () => {
  await using broker = await startBroker();
  await assertClosesConnection(broker, rawSubscribe(0x80, 1, [["a", 0]]));
});

Deno.test("[MQTT-3.10.1-1] UNSUBSCRIBE with reserved header bits 0000 (first byte 0xa0) closes", async () => {
  await using broker = await startBroker();
  await assertClosesConnection(broker, rawSubscribe(0xa0, 1, [["a", null]]));
});

Deno.test("[MQTT-3-8.3-4] SUBSCRIBE requesting QoS 3 closes without SUBACK", async () => {
  await using broker = await startBroker();
  await assertClosesConnection(broker, rawSubscribe(0x82, 1, [["a", 3]]));
});

Deno.test("[MQTT-3-8.3-4] SUBSCRIBE with reserved option bits set closes without SUBACK", async () => {
  await using broker = await startBroker();
  await assertClosesConnection(broker, rawSubscribe(0x82, 1, [["a", 0x41]]));
});

Deno.test("[MQTT-3.8.3-3] SUBSCRIBE with no topic filter closes without SUBACK", async () => {
  await using broker = await startBroker();
  await assertClosesConnection(broker, rawSubscribe(0x82, 1, []));
});

Deno.test("[MQTT-3.10.3-2] UNSUBSCRIBE with no topic filter closes without UNSUBACK", async () => {
  await using broker = await startBroker();
  await assertClosesConnection(broker, rawSubscribe(0xa2, 1, []));
});

Deno.test("[MQTT-2.3.1-1] SUBSCRIBE with packet id 0 closes without SUBACK", async () => {
  await using broker = await startBroker();
  await assertClosesConnection(broker, rawSubscribe(0x82, 0, [["a", 0]]));
});

Deno.test("[MQTT-2.3.1-1] UNSUBSCRIBE with packet id 0 closes without UNSUBACK", async () => {
  await using broker = await startBroker();
  await assertClosesConnection(broker, rawSubscribe(0xa2, 0, [["a", null]]));
});

// --- UNSUBSCRIBE ------------------------------------------------------------------------------------------------

Deno.test("[MQTT-3.10.4-2] after UNSUBACK the unsubscribed filter gets no more messages", async () => {
  await using broker = await startBroker();
  await using sub = await RawClient.connected(broker.port, { clientId: "sub" });
  await sub.subscribe([["u/gone", 1], ["u/kept", 1]]);
  await sub.send({ cmd: "unsubscribe", messageId: 77, unsubscriptions: ["u/gone"] });
  assert.equal((await sub.expect("unsuback")).messageId, 77, "[MQTT-3.10.4-4] UNSUBACK has the same id");
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await pub.publish("u/gone", "dropped");
  await pub.publish("u/kept", "marker");
  await sub.expectPublish("u/kept", "marker");
});

Deno.test("[MQTT-3.10.4-6] UNSUBSCRIBE with several filters removes them all and sends one UNSUBACK", async () => {
  await using broker = await startBroker();
  await using sub = await RawClient.connected(broker.port, { clientId: "sub" });
  await sub.subscribe([["m/1", 0], ["m/2", 0], ["m/3", 0]]);
  await sub.send({ cmd: "unsubscribe", messageId: 5, unsubscriptions: ["m/1", "m/2"] });
  assert.equal((await sub.expect("unsuback")).messageId, 5);
  await sub.assertIdle();
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await pub.publish("m/1", "dropped");
  await pub.publish("m/2", "dropped");
  await pub.publish("m/3", "marker");
  await sub.expectPublish("m/3", "marker");
});

Deno.test("[MQTT-3.10.4-1] UNSUBSCRIBE matches filters literally: 'a/+' does not remove 'a/b'", async () => {
  await using broker = await startBroker();
  await using sub = await RawClient.connected(broker.port, { clientId: "sub" });
  await sub.subscribe([["a/b", 0]]);
  await sub.send({ cmd: "unsubscribe", messageId: 2, unsubscriptions: ["a/+"] });
  await sub.expect("unsuback");
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await pub.publish("a/b", "still here");
  await sub.expectPublish("a/b", "still here");
});

Deno.test("[MQTT-3.10.4-5] UNSUBACK is sent even when no subscription existed", async () => {
  await using broker = await startBroker();
  await using client = await RawClient.connected(broker.port, { clientId: "c" });
  await client.send({ cmd: "unsubscribe", messageId: 31337, unsubscriptions: ["never/subscribed"] });
  assert.equal((await client.expect("unsuback")).messageId, 31337);
  await client.assertIdle();
});

// --- Real subscribers ---------------------------------------------------------------------------------------------

mosquittoTest("mosquitto_sub with several -t filters receives matching messages from MQTT.js", async () => {
  await using broker = await startBroker();
  await using sub = new MosquittoSub([
    ...["-p", String(broker.port), "-i", "mosq-sub", "-q", "1", "-v", "-C", "3", "-W", "10"],
    ...["-t", "ms/+/x", "-t", "other/#", "-t", "exact"],
  ]);
  for (const filter of ["ms/+/x", "other/#", "exact"]) await broker.subscribed("mosq-sub", filter);
  await using pub = await connectMqttJs(broker.port, { clientId: "mqttjs-pub" });
  for (
    const [topic, payload] of [["ms/a/x", "1"], ["ms/a/y", "no"], ["other", "2"], ["nope", "no"], [
      "exact",
      "3",
    ]]
  ) {
    await within(pub.mqtt.publishAsync(topic, payload, { qos: 1 }), "MQTT.js PUBACK");
  }
  const result = await sub.finished();
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, "ms/a/x 1\nother 2\nexact 3\n");
});
