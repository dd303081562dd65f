/**
 * MQTT 5.0 flow control and packet economy (sections 3.1.2.11, 3.2.2.3, 3.3.2.3.4, 4.9 and 4.13 of the 5.0
 * spec): the client's and the broker's Receive Maximum, Maximum Packet Size in both directions, and Topic
 * Aliases in both directions. Every violation ends with a DISCONNECT carrying its reason code, and another
 * client, connected all along, keeps working.
 */

import assert from "node:assert/strict";
import type { IPublishPacket } from "mqtt";
import { startBroker } from "./helpers/broker.ts";
import { connectMqttJs } from "./helpers/mqttjs.ts";
import { type Publish, RawClient } from "./helpers/raw.ts";
import {
  assertAlive,
  assertServerDisconnect,
  bystander,
  connect5,
  prop,
  rawPublish5,
  subscriber5,
} from "./helpers/v5.ts";
import { delay, until, within } from "./helpers/wait.ts";

// --- Local helpers ------------------------------------------------------------------------------------------

/**
 * A v5 PUBLISH of exactly `total` bytes (fixed header included), no properties, QoS 0, on `topic`: built by
 * hand so the size is exact.
 */
function publishOfSize(topic: string, total: number): Uint8Array {
  for (let payload = total; payload >= 0; payload--) {
    const packet = rawPublish5(topic, "a".repeat(payload));
    if (packet.length === total) return packet;
  }
  throw new Error(`no PUBLISH of ${total} bytes on ${topic}`);
}

/** The Topic Alias property (0x23), any value, 0 included. */
const topicAlias = (alias: number) => prop.u16(0x23, alias);

/**
 * The topic each PUBLISH stands for, resolving the broker's aliases as a receiver must (3.3.2.3.4): a topic
 * with an alias (re)binds it; an empty topic uses the binding. Fails on an alias above `maximum`, or an empty
 * topic with an alias never bound on this connection.
 */
function aliasResolver(maximum: number): (packet: Publish) => string {
  const aliases = new Map<number, string>();
  return (packet) => {
    const alias = packet.properties?.topicAlias;
    if (alias === undefined) {
      assert.notEqual(packet.topic, "", "an empty topic needs a Topic Alias");
      return packet.topic;
    }
    assert.ok(alias >= 1 && alias <= maximum, `[MQTT-3.1.2-26] alias ${alias} within 1..${maximum}`);
    if (packet.topic !== "") {
      aliases.set(alias, packet.topic);
      return packet.topic;
    }
    const topic = aliases.get(alias);
    assert.ok(topic !== undefined, `empty topic with alias ${alias}, which was never bound`);
    return topic;
  };
}

// --- Receive Maximum: the client's (3.1.2.11.3) -------------------------------------------------------------

Deno.test("[MQTT-3.3.4-9] the client's Receive Maximum 2: exactly 2 QoS 1 PUBLISH unacknowledged, the third after a PUBACK", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber5(broker.port, "slow", [["rm", 1]], {
    properties: { receiveMaximum: 2 },
  });
  await using pub = await connect5(broker.port, "pub");
  for (let i = 1; i <= 4; i++) {
    await pub.publish("rm", `m${i}`, { qos: 1, messageId: i });
    assert.equal((await pub.expect("puback")).messageId, i);
  }
  const m1 = await sub.expectPublish("rm", "m1", 1);
  const m2 = await sub.expectPublish("rm", "m2", 1);
  // Two in flight and nothing more, however long it waits.
  await sub.assertIdle();
  await sub.send({ cmd: "puback", messageId: m1.messageId });
  const m3 = await sub.expectPublish("rm", "m3", 1);
  await sub.assertIdle();
  await sub.send({ cmd: "puback", messageId: m2.messageId });
  const m4 = await sub.expectPublish("rm", "m4", 1);
  for (const m of [m3, m4]) await sub.send({ cmd: "puback", messageId: m.messageId });
  await sub.assertIdle();
  assert.equal(new Set([m1, m2, m3, m4].map((m) => m.messageId)).size, 4, "distinct packet ids in flight");
});

Deno.test("[MQTT-3.3.4-9] the client's Receive Maximum 1 with QoS 2: the slot frees at PUBCOMP, not at PUBREC", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber5(broker.port, "slow", [["rm2", 2]], {
    properties: { receiveMaximum: 1 },
  });
  await using pub = await connect5(broker.port, "pub");
  for (let i = 1; i <= 2; i++) {
    await pub.publish("rm2", `m${i}`, { qos: 2, messageId: i });
    await pub.expect("pubrec");
    await pub.send({ cmd: "pubrel", messageId: i });
    await pub.expect("pubcomp");
  }
  const m1 = await sub.expectPublish("rm2", "m1", 2);
  await sub.send({ cmd: "pubrec", messageId: m1.messageId });
  assert.equal((await sub.expect("pubrel")).messageId, m1.messageId);
  await sub.assertIdle();
  await sub.send({ cmd: "pubcomp", messageId: m1.messageId });
  await sub.expectPublish("rm2", "m2", 2);
});

Deno.test("[MQTT-3.3.4-9] on reconnect, re-sent messages respect the new connection's smaller Receive Maximum (4.9)", async () => {
  await using broker = await startBroker();
  const persistent = { clean: false, properties: { sessionExpiryInterval: 60 } };
  await using pub = await connect5(broker.port, "pub");
  {
    await using sub = await subscriber5(broker.port, "shrinking", [["rs", 1]], {
      ...persistent,
      properties: { ...persistent.properties, receiveMaximum: 3 },
    });
    for (let i = 1; i <= 3; i++) {
      await pub.publish("rs", `m${i}`, { qos: 1, messageId: i });
      await pub.expect("puback");
    }
    for (let i = 1; i <= 3; i++) await sub.expectPublish("rs", `m${i}`, 1);
  }
  await broker.offline("shrinking");
  await using back = await connect5(broker.port, "shrinking", {
    ...persistent,
    properties: { ...persistent.properties, receiveMaximum: 1 },
  });
  assert.equal(back.sessionPresent, true);
  // The send quota starts afresh at the new Receive Maximum: one unacknowledged PUBLISH at a time.
  for (let i = 1; i <= 3; i++) {
    const resent = await back.expectPublish("rs", `m${i}`, 1);
    assert.equal(resent.dup, true);
    await back.assertIdle();
    await back.send({ cmd: "puback", messageId: resent.messageId });
  }
  await back.assertIdle();
});

Deno.test("limits.max_inflight_messages caps the outbound window even when the client's Receive Maximum is larger", async () => {
  await using broker = await startBroker({ limits: { max_inflight_messages: 2 } });
  await using sub = await subscriber5(broker.port, "roomy", [["cap", 1]], {
    properties: { receiveMaximum: 50 },
  });
  await using pub = await connect5(broker.port, "pub");
  for (let i = 1; i <= 3; i++) {
    await pub.publish("cap", `m${i}`, { qos: 1, messageId: i });
    await pub.expect("puback");
  }
  const m1 = await sub.expectPublish("cap", "m1", 1);
  await sub.expectPublish("cap", "m2", 1);
  await sub.assertIdle();
  await sub.send({ cmd: "puback", messageId: m1.messageId });
  await sub.expectPublish("cap", "m3", 1);
});

Deno.test("[MQTT-3.3.2-5] a message waiting behind a full Receive Maximum window expires there and is not sent", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber5(broker.port, "slow", [["wait", 1]], {
    properties: { receiveMaximum: 1 },
  });
  await using pub = await connect5(broker.port, "pub");
  await pub.publish("wait", "holds the slot", { qos: 1, messageId: 1 });
  await pub.publish("wait", "expires waiting", {
    qos: 1,
    messageId: 2,
    properties: { messageExpiryInterval: 1 },
  });
  await pub.publish("wait", "outlives it", {
    qos: 1,
    messageId: 3,
    properties: { messageExpiryInterval: 60 },
  });
  for (let i = 1; i <= 3; i++) await pub.expect("puback");
  const first = await sub.expectPublish("wait", "holds the slot", 1);
  await sub.assertIdle();
  await delay(1200);
  await sub.send({ cmd: "puback", messageId: first.messageId });
  const last = await sub.expectPublish("wait", "outlives it", 1);
  const remaining = last.properties?.messageExpiryInterval;
  assert.ok(
    remaining !== undefined && remaining >= 1 && remaining <= 59,
    `[MQTT-3.3.2-6] remaining ${remaining}`,
  );
  await sub.send({ cmd: "puback", messageId: last.messageId });
  await sub.assertIdle();
});

// --- Receive Maximum: the broker's (3.2.2.3.3) --------------------------------------------------------------

Deno.test("limits.max_inflight_messages 2: CONNACK Receive Maximum 2; a third unreleased QoS 2 PUBLISH gets DISCONNECT 0x93", async () => {
  await using broker = await startBroker({ limits: { max_inflight_messages: 2 } });
  await using other = await bystander(broker.port);
  await using client = await connect5(broker.port, "eager");
  assert.equal(client.connack.properties?.receiveMaximum, 2);
  await client.publish("eager/t", "q2-1", { qos: 2, messageId: 1 });
  assert.equal((await client.expect("pubrec")).messageId, 1);
  await client.publish("eager/t", "q2-2", { qos: 2, messageId: 2 });
  assert.equal((await client.expect("pubrec")).messageId, 2);
  // PUBCOMP gives a slot back: one more is fine.
  await client.send({ cmd: "pubrel", messageId: 1 });
  assert.equal((await client.expect("pubcomp")).messageId, 1);
  await client.publish("eager/t", "q2-3", { qos: 2, messageId: 3 });
  assert.equal((await client.expect("pubrec")).messageId, 3);
  // Ids 2 and 3 are unreleased: a third is one more than the Receive Maximum.
  await client.publish("eager/t", "q2-4", { qos: 2, messageId: 4 });
  await assertServerDisconnect(client, 0x93);
  await assertAlive(broker, other);
});

Deno.test("limits.max_inflight_messages 1: QoS 1 PUBLISHes, each acknowledged at once, never exceed the Receive Maximum", async () => {
  await using broker = await startBroker({ limits: { max_inflight_messages: 1 } });
  await using client = await connect5(broker.port, "steady");
  for (let i = 1; i <= 5; i++) {
    await client.publish("t", `m${i}`, { qos: 1, messageId: i });
    assert.equal((await client.expect("puback")).messageId, i);
  }
  await client.assertIdle();
});

// --- Maximum Packet Size: the client's (3.1.2.11.4) ---------------------------------------------------------

Deno.test("[MQTT-3.1.2-24] [MQTT-3.1.2-25] the client's Maximum Packet Size: larger PUBLISHes are not sent and are counted; smaller ones are", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber5(broker.port, "small", [["mps/#", 1]], {
    // Receive Maximum 1 too: a dropped message must not keep its inflight slot [MQTT-3.1.2-25].
    properties: { maximumPacketSize: 128, receiveMaximum: 1 },
  });
  await using pub = await connect5(broker.port, "pub");
  assert.equal(broker.server.metrics.droppedTooLarge, 0);
  await pub.publish("mps/big", "x".repeat(500), { qos: 1, messageId: 1 });
  await pub.expect("puback");
  // A small payload made too large by its User Property.
  await pub.publish("mps/props", "tiny", {
    qos: 1,
    messageId: 2,
    properties: { userProperties: { padding: "p".repeat(200) } },
  });
  await pub.expect("puback");
  await pub.publish("mps/big0", "y".repeat(300), { qos: 0 });
  await pub.publish("mps/small", "fits", { qos: 1, messageId: 3 });
  await pub.expect("puback");

  const small = await sub.expectPublish("mps/small", "fits", 1);
  await sub.send({ cmd: "puback", messageId: small.messageId });
  await sub.assertIdle();
  assert.equal(broker.server.metrics.droppedTooLarge, 3);
});

Deno.test("[MQTT-3.1.2-24] the client's Maximum Packet Size counts the whole packet: exactly the limit is sent, one byte more is not", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber5(broker.port, "edge", [["b", 0]], {
    properties: { maximumPacketSize: 100 },
  });
  await using pub = await connect5(broker.port, "pub");
  // QoS 0 on "b" with no properties: 2 bytes of fixed header, 3 of topic, 1 of property length, then payload.
  await pub.publish("b", "x".repeat(95));
  await pub.publish("b", "y".repeat(94));
  await pub.assertIdle();
  const got = await sub.expectPublish("b", "y".repeat(94), 0);
  assert.deepEqual(got.properties ?? {}, {});
  await sub.assertIdle();
  assert.equal(broker.server.metrics.droppedTooLarge, 1);
});

Deno.test("[MQTT-3.1.2-24] the client's Maximum Packet Size applies to retained messages sent on SUBSCRIBE", async () => {
  await using broker = await startBroker();
  await using pub = await connect5(broker.port, "pub");
  await pub.publish("keep/big", "z".repeat(400), { retain: true });
  await pub.publish("keep/small", "ok", { retain: true });
  await pub.assertIdle();
  await using sub = await subscriber5(broker.port, "small", [["keep/#", 0]], {
    properties: { maximumPacketSize: 100 },
  });
  const got = await sub.expectPublish("keep/small", "ok", 0);
  assert.equal(got.retain, true);
  await sub.assertIdle();
  assert.equal(broker.server.metrics.droppedTooLarge, 1);
});

Deno.test("MQTT.js v5 with maximumPacketSize gets only the messages that fit", async () => {
  await using broker = await startBroker();
  await using sub = await connectMqttJs(broker.port, {
    protocolVersion: 5,
    clientId: "js-small",
    properties: { maximumPacketSize: 200 },
  });
  await within(sub.mqtt.subscribeAsync("js/#", { qos: 1 }), "MQTT.js SUBACK");
  await using pub = await connect5(broker.port, "pub");
  await pub.publish("js/big", "b".repeat(1000), { qos: 1, messageId: 1 });
  await pub.expect("puback");
  await pub.publish("js/small", "s", { qos: 1, messageId: 2 });
  await pub.expect("puback");
  const [message] = await sub.received(1);
  assert.deepEqual([message.topic, message.payload], ["js/small", "s"]);
  await until(() => broker.server.metrics.droppedTooLarge === 1, "droppedTooLarge to be 1");
  assert.equal(sub.messages.length, 1);
});

Deno.test("[MQTT-3.4.2-2] [MQTT-3.14.2-3] the Reason String is left out of a PUBACK or DISCONNECT it would make too large", async () => {
  await using broker = await startBroker({ mqtt: { retain_available: false } });
  await using other = await bystander(broker.port);
  await using client = await connect5(broker.port, "tight", {
    properties: { maximumPacketSize: 30 },
  });
  await client.publish("$SYS/vyoma-test/x", "forged", { qos: 1, messageId: 1 });
  const puback = await client.expect("puback");
  assert.equal(puback.reasonCode, 0x87);
  assert.equal(puback.properties?.reasonString, undefined);
  await client.publish("alive", "kept?", { retain: true });
  const disconnect = await client.expect("disconnect");
  assert.equal(disconnect.reasonCode, 0x9a);
  assert.equal(disconnect.properties?.reasonString, undefined);
  await client.closedByBroker();
  await assertAlive(broker, other);
});

// --- Maximum Packet Size: the broker's (3.2.2.3.6) ----------------------------------------------------------

Deno.test("limits.max_packet_size: CONNACK Maximum Packet Size; a PUBLISH of exactly it passes, one byte more gets DISCONNECT 0x95", async () => {
  await using broker = await startBroker({ limits: { max_packet_size: 256 } });
  await using other = await bystander(broker.port);
  await using client = await connect5(broker.port, "big");
  assert.equal(client.connack.properties?.maximumPacketSize, 256);

  const fits = publishOfSize("alive", 256);
  assert.equal(fits.length, 256);
  await client.sendBytes(fits);
  await client.assertIdle();
  // Delivered at QoS 0: the fixed header (3 bytes), topic (7) and property length (1) are not payload.
  const got = await other.expect("publish");
  assert.equal(got.payload.length, 256 - 3 - 7 - 1);

  await client.sendBytes(publishOfSize("alive", 257));
  await assertServerDisconnect(client, 0x95);
  await assertAlive(broker, other);
});

Deno.test("limits.max_packet_size: a v5 PUBLISH made too large by its properties gets DISCONNECT 0x95", async () => {
  await using broker = await startBroker({ limits: { max_packet_size: 256 } });
  await using other = await bystander(broker.port);
  await using client = await connect5(broker.port, "props");
  await client.publish("alive", "small", { properties: { userProperties: { pad: "p".repeat(300) } } });
  await assertServerDisconnect(client, 0x95);
  await assertAlive(broker, other);
});

// --- Topic aliases from the client (3.3.2.3.4) ---------------------------------------------------------------

Deno.test("[MQTT-3.3.2-12] an inbound alias set with a topic is used with an empty topic, and may be rebound", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber5(broker.port, "sub", [["alias/#", 1]]);
  await using pub = await connect5(broker.port, "pub");
  assert.equal(pub.connack.properties?.topicAliasMaximum, 10, "the default topic_alias_maximum is announced");

  await pub.publish("alias/one", "set", { qos: 1, messageId: 1, properties: { topicAlias: 10 } });
  await pub.publish("", "used", { qos: 1, messageId: 2, properties: { topicAlias: 10 } });
  await pub.publish("", "used at 0", { properties: { topicAlias: 10 } });
  await pub.publish("alias/two", "rebound", { qos: 1, messageId: 3, properties: { topicAlias: 10 } });
  await pub.publish("", "used again", { qos: 1, messageId: 4, properties: { topicAlias: 10 } });
  for (let i = 1; i <= 4; i++) {
    const puback = await pub.expect("puback");
    assert.deepEqual([puback.messageId, puback.reasonCode], [i, 0]);
  }
  const expected: [string, string][] = [
    ["alias/one", "set"],
    ["alias/one", "used"],
    ["alias/one", "used at 0"],
    ["alias/two", "rebound"],
    ["alias/two", "used again"],
  ];
  for (const [topic, payload] of expected) {
    const got = await sub.expectPublish(topic, payload);
    // The publisher's alias is its own: the subscriber set no Topic Alias Maximum [MQTT-3.1.2-27].
    assert.equal(got.properties?.topicAlias, undefined);
    if (got.qos > 0) await sub.send({ cmd: "puback", messageId: got.messageId });
  }
  await sub.assertIdle();
});

Deno.test("[MQTT-3.3.2-8] an inbound Topic Alias of 0 gets DISCONNECT 0x94", async () => {
  await using broker = await startBroker();
  await using other = await bystander(broker.port);
  await using client = await connect5(broker.port, "zero");
  await client.sendBytes(rawPublish5("alive", "alias zero", [topicAlias(0)]));
  await assertServerDisconnect(client, 0x94);
  await assertAlive(broker, other);
});

Deno.test("[MQTT-3.3.2-9] topic_alias_maximum 2: alias 2 works, alias 3 gets DISCONNECT 0x94", async () => {
  await using broker = await startBroker({ mqtt: { topic_alias_maximum: 2 } });
  await using other = await bystander(broker.port);
  await using client = await connect5(broker.port, "over");
  assert.equal(client.connack.properties?.topicAliasMaximum, 2);
  await client.sendBytes(rawPublish5("alive", "alias two", [topicAlias(2)], { qos: 1, packetId: 1 }));
  assert.equal((await client.expect("puback")).reasonCode, 0);
  const got = await other.expectPublish("alive", "alias two", 1);
  await other.send({ cmd: "puback", messageId: got.messageId });
  await client.sendBytes(rawPublish5("alive", "alias three", [topicAlias(3)]));
  await assertServerDisconnect(client, 0x94);
  await assertAlive(broker, other);
});

Deno.test("topic_alias_maximum 0: CONNACK announces no aliases, and any alias gets DISCONNECT 0x94", async () => {
  await using broker = await startBroker({ mqtt: { topic_alias_maximum: 0 } });
  await using other = await bystander(broker.port);
  await using client = await connect5(broker.port, "none");
  assert.equal(client.connack.properties?.topicAliasMaximum ?? 0, 0);
  await client.sendBytes(rawPublish5("alive", "alias one", [topicAlias(1)]));
  await assertServerDisconnect(client, 0x94);
  await assertAlive(broker, other);
});

Deno.test("an empty topic with an alias never set on the connection gets DISCONNECT 0x82 (3.3.2.3.4)", async () => {
  await using broker = await startBroker();
  await using other = await bystander(broker.port);
  await using client = await connect5(broker.port, "unknown");
  await client.sendBytes(rawPublish5("alive", "bound", [topicAlias(1)]));
  await client.assertIdle();
  await other.expectPublish("alive", "bound", 0);
  await client.sendBytes(rawPublish5("", "unbound", [topicAlias(2)]));
  await assertServerDisconnect(client, 0x82);
  await assertAlive(broker, other);
});

Deno.test("an empty topic without any Topic Alias gets DISCONNECT 0x82", async () => {
  await using broker = await startBroker();
  await using other = await bystander(broker.port);
  await using client = await connect5(broker.port, "empty");
  await client.sendBytes(rawPublish5("", "a"));
  await assertServerDisconnect(client, 0x82);
  await assertAlive(broker, other);
});

Deno.test("[MQTT-3.3.2-7] inbound aliases do not carry over to the next connection of the same session", async () => {
  await using broker = await startBroker();
  await using other = await bystander(broker.port);
  const session = { clean: false, properties: { sessionExpiryInterval: 60 } };
  {
    await using first = await connect5(broker.port, "returning", session);
    await first.sendBytes(rawPublish5("alive", "bound", [topicAlias(1)]));
    await first.assertIdle();
    await other.expectPublish("alive", "bound", 0);
  }
  await broker.offline("returning");
  await using second = await connect5(broker.port, "returning", session);
  assert.equal(second.sessionPresent, true);
  await second.sendBytes(rawPublish5("", "stale alias", [topicAlias(1)]));
  await assertServerDisconnect(second, 0x82);
  await assertAlive(broker, other);
});

Deno.test("an inbound aliased PUBLISH reaches a 3.1.1 subscriber with its full topic, and is retained under it", async () => {
  await using broker = await startBroker();
  await using old = await RawClient.subscriber(broker.port, { clientId: "v311" }, [["al/#", 0]]);
  await using pub = await connect5(broker.port, "pub");
  await pub.publish("al/kept", "set", { properties: { topicAlias: 1 } });
  await pub.publish("", "by alias", { retain: true, properties: { topicAlias: 1 } });
  await pub.assertIdle();
  await old.expectPublish("al/kept", "set", 0);
  await old.expectPublish("al/kept", "by alias", 0);
  await using late = await subscriber5(broker.port, "late", [["al/#", 0]]);
  const retained = await late.expectPublish("al/kept", "by alias", 0);
  assert.equal(retained.retain, true);
});

// --- Topic aliases to the client (3.3.2.3.4) -----------------------------------------------------------------

Deno.test("[MQTT-3.1.2-26] outbound aliases: the first delivery carries topic and alias, the next an empty topic and the same alias", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber5(broker.port, "aliased", [["oa/#", 1]], {
    properties: { topicAliasMaximum: 5 },
  });
  await using pub = await connect5(broker.port, "pub");
  await pub.publish("oa/topic/with/a/long/name", "first");
  await pub.publish("oa/topic/with/a/long/name", "second", { qos: 1, messageId: 1 });
  await pub.publish("oa/topic/with/a/long/name", "third");
  await pub.expect("puback");

  const first = await sub.expect("publish");
  assert.equal(first.topic, "oa/topic/with/a/long/name");
  const alias = first.properties?.topicAlias;
  assert.ok(alias !== undefined && alias >= 1 && alias <= 5, `first delivery's alias ${alias} within 1..5`);
  for (const payload of ["second", "third"]) {
    const next = await sub.expect("publish");
    assert.deepEqual(
      [next.topic, next.properties?.topicAlias, next.payload.toString()],
      ["", alias, payload],
      `${payload}: an empty topic and the alias`,
    );
    if (next.qos > 0) await sub.send({ cmd: "puback", messageId: next.messageId });
  }
  await sub.assertIdle();
});

Deno.test("[MQTT-3.1.2-26] [MQTT-3.3.2-10] outbound aliases never exceed the client's Topic Alias Maximum; every delivery resolves", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber5(broker.port, "two-aliases", [["many/#", 0]], {
    properties: { topicAliasMaximum: 2 },
  });
  await using pub = await connect5(broker.port, "pub");
  const topics = ["many/a", "many/b", "many/c", "many/d", "many/e"];
  const sent: string[] = [];
  for (let round = 0; round < 3; round++) {
    for (const topic of [...topics, topics[0], topics[0]]) {
      sent.push(topic);
      await pub.publish(topic, `${sent.length}`);
    }
  }
  await pub.assertIdle();
  const resolve = aliasResolver(2);
  const aliasesSeen = new Set<number>();
  for (const [i, topic] of sent.entries()) {
    const packet = await sub.expect("publish");
    assert.equal(packet.payload.toString(), `${i + 1}`, "in order");
    assert.equal(resolve(packet), topic, `delivery ${i + 1}`);
    if (packet.properties?.topicAlias !== undefined) aliasesSeen.add(packet.properties.topicAlias);
  }
  assert.ok(aliasesSeen.size > 0, "the broker used aliases");
  await sub.assertIdle();
});

Deno.test("[MQTT-3.1.2-27] a client that sets no Topic Alias Maximum gets no aliases", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber5(broker.port, "plain", [["na/#", 0]]);
  await using zero = await subscriber5(broker.port, "zero", [["na/#", 0]], {
    properties: { topicAliasMaximum: 0 },
  });
  await using pub = await connect5(broker.port, "pub");
  for (let i = 0; i < 3; i++) await pub.publish("na/same", `m${i}`);
  for (const client of [sub, zero]) {
    for (let i = 0; i < 3; i++) {
      const got = await client.expectPublish("na/same", `m${i}`, 0);
      assert.equal(got.properties?.topicAlias, undefined);
    }
  }
});

Deno.test("[MQTT-3.3.2-7] outbound aliases start afresh on a new connection: the first delivery carries the topic again", async () => {
  await using broker = await startBroker();
  const session = { clean: false, properties: { sessionExpiryInterval: 60, topicAliasMaximum: 3 } };
  await using pub = await connect5(broker.port, "pub");
  {
    await using sub = await subscriber5(broker.port, "returning", [["re/#", 0]], session);
    await pub.publish("re/t", "one");
    await pub.publish("re/t", "two");
    const resolve = aliasResolver(3);
    assert.equal(resolve(await sub.expect("publish")), "re/t");
    const second = await sub.expect("publish");
    assert.equal(resolve(second), "re/t");
    assert.equal(second.topic, "", "the alias was in use on the first connection");
  }
  await broker.offline("returning");
  await using back = await connect5(broker.port, "returning", session);
  assert.equal(back.sessionPresent, true);
  await pub.publish("re/t", "three");
  const first = await back.expect("publish");
  assert.equal(first.topic, "re/t", "no alias is known on a new connection");
  assert.equal(first.payload.toString(), "three");
});

Deno.test("[MQTT-3.3.2-7] a QoS 1 message re-sent after reconnect carries its topic, not an alias of the old connection", async () => {
  await using broker = await startBroker();
  const session = { clean: false, properties: { sessionExpiryInterval: 60, topicAliasMaximum: 3 } };
  await using pub = await connect5(broker.port, "pub");
  {
    await using sub = await subscriber5(broker.port, "returning", [["rs/#", 1]], session);
    await pub.publish("rs/t", "acked", { qos: 1, messageId: 1 });
    await pub.publish("rs/t", "unacked", { qos: 1, messageId: 2 });
    for (let i = 0; i < 2; i++) await pub.expect("puback");
    const resolve = aliasResolver(3);
    const acked = await sub.expect("publish");
    assert.equal(resolve(acked), "rs/t");
    await sub.send({ cmd: "puback", messageId: acked.messageId });
    const unacked = await sub.expect("publish");
    assert.equal(resolve(unacked), "rs/t");
    assert.equal(unacked.topic, "", "sent by alias on the first connection");
  }
  await broker.offline("returning");
  await using back = await connect5(broker.port, "returning", session);
  assert.equal(back.sessionPresent, true);
  const resent = await back.expect("publish");
  assert.equal(resent.payload.toString(), "unacked");
  assert.equal(resent.dup, true, "[MQTT-4.4.0-1] re-sent with DUP");
  assert.equal(aliasResolver(3)(resent), "rs/t", "the new connection knows no alias yet");
});

Deno.test("outbound aliases apply to retained messages sent on SUBSCRIBE, and every one resolves", async () => {
  await using broker = await startBroker();
  await using pub = await connect5(broker.port, "pub");
  for (const topic of ["ret/a", "ret/b", "ret/c"]) await pub.publish(topic, topic, { retain: true });
  await pub.assertIdle();
  await using sub = await subscriber5(broker.port, "sub", [["ret/#", 0]], {
    properties: { topicAliasMaximum: 2 },
  });
  const resolve = aliasResolver(2);
  const got: string[] = [];
  for (let i = 0; i < 3; i++) {
    const packet = await sub.expect("publish");
    const topic = resolve(packet);
    assert.equal(packet.payload.toString(), topic);
    got.push(topic);
  }
  for (const topic of ["ret/a", "ret/b", "ret/c"]) await pub.publish(topic, topic);
  for (let i = 0; i < 3; i++) {
    const packet = await sub.expect("publish");
    assert.equal(resolve(packet), packet.payload.toString());
  }
  assert.deepEqual(got.toSorted(), ["ret/a", "ret/b", "ret/c"]);
});

Deno.test("MQTT.js v5 with topicAliasMaximum resolves the broker's aliases: every message has its topic", async () => {
  await using broker = await startBroker();
  await using sub = await connectMqttJs(broker.port, {
    protocolVersion: 5,
    clientId: "js-alias",
    properties: { topicAliasMaximum: 3 },
  });
  const packets: IPublishPacket[] = [];
  sub.mqtt.on("message", (_topic, _payload, packet) => packets.push(packet));
  await within(sub.mqtt.subscribeAsync("jsa/#", { qos: 1 }), "MQTT.js SUBACK");
  await using pub = await connect5(broker.port, "pub");
  const expected: [string, string][] = [];
  for (let round = 0; round < 3; round++) {
    for (const topic of ["jsa/one", "jsa/two", "jsa/three", "jsa/four"]) {
      expected.push([topic, `${expected.length}`]);
      await pub.publish(topic, `${expected.length - 1}`, { qos: 1, messageId: expected.length });
      await pub.expect("puback");
    }
  }
  const messages = await sub.received(expected.length);
  assert.deepEqual(messages.map((m) => [m.topic, m.payload]), expected);
  const aliases = packets.map((p) => p.properties?.topicAlias).filter((a) => a !== undefined);
  assert.ok(aliases.length > 0, "the broker sent aliases to MQTT.js");
  assert.ok(aliases.every((a) => a >= 1 && a <= 3), `aliases within 1..3: ${aliases}`);
});
