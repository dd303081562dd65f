/**
 * MQTT 5.0 PUBLISH (sections 3.3-3.7 and 4.3 of the 5.0 spec): reason codes on PUBACK, PUBREC and PUBCOMP,
 * the end of a QoS 2 flow on an error PUBREC, request/response properties, the properties forwarded untouched
 * and in order, Message Expiry Interval (live, queued, retained), 3.1.1 <-> 5.0 in both directions, and the
 * DISCONNECTs for a retained or QoS 2 PUBLISH the broker said it does not support. Driven by RawClient at
 * version 5, MQTT.js v5, mosquitto_pub / mosquitto_sub -V mqttv5, Python paho, and a byte-level reader for
 * what mqtt-packet hides (the order of properties).
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { IPublishPacket } from "mqtt";
import { type ConfigOverrides, startBroker } from "./helpers/broker.ts";
import { connectMqttJs } from "./helpers/mqttjs.ts";
import { at, MosquittoSub, mosquittoTest, runMosquittoTool } from "./helpers/mosquitto.ts";
import { hex, PahoSub, pahoTest } from "./helpers/paho.ts";
import { RawClient } from "./helpers/raw.ts";
import {
  assertAlive,
  assertServerDisconnect,
  bystander,
  ByteClient,
  connect5,
  parsePublish5,
  prop,
  type PublishProperties,
  rawPublish5,
  subscriber5,
  userProperties,
} from "./helpers/v5.ts";
import { delay, within } from "./helpers/wait.ts";

// --- PUBACK / PUBREC reason codes (3.4.2.1, 3.5.2.1) ---------------------------------------------------------

Deno.test("[MQTT-3.4.2-1] PUBACK 0x10 (no matching subscribers) when nothing is subscribed", async () => {
  await using broker = await startBroker();
  await using pub = await connect5(broker.port, "pub");
  await pub.publish("nobody/listens", "x", { qos: 1, messageId: 11 });
  const puback = await pub.expect("puback");
  assert.equal(puback.messageId, 11);
  assert.equal(puback.reasonCode, 0x10);
  await pub.assertIdle();
});

Deno.test("[MQTT-3.5.2-1] PUBREC 0x10 with no subscribers; the flow goes on: PUBREL gets PUBCOMP 0x00", async () => {
  await using broker = await startBroker();
  await using pub = await connect5(broker.port, "pub");
  await pub.publish("nobody/listens", "x", { qos: 2, messageId: 12 });
  const pubrec = await pub.expect("pubrec");
  assert.equal(pubrec.messageId, 12);
  assert.equal(pubrec.reasonCode, 0x10);
  // 0x10 is below 0x80: a success code, so the sender goes on with PUBREL [MQTT-4.3.3-4].
  await pub.send({ cmd: "pubrel", messageId: 12 });
  const pubcomp = await pub.expect("pubcomp");
  assert.equal(pubcomp.messageId, 12);
  assert.equal(pubcomp.reasonCode, 0);
  await pub.assertIdle();
});

Deno.test("[MQTT-3.4.2-1] PUBACK and PUBREC 0x00 when a subscription matches", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber5(broker.port, "sub", [["match/+", 0]]);
  await using pub = await connect5(broker.port, "pub");
  await pub.publish("match/one", "1", { qos: 1, messageId: 1 });
  const puback = await pub.expect("puback");
  assert.deepEqual([puback.messageId, puback.reasonCode], [1, 0]);
  await pub.publish("match/two", "2", { qos: 2, messageId: 2 });
  const pubrec = await pub.expect("pubrec");
  assert.deepEqual([pubrec.messageId, pubrec.reasonCode], [2, 0]);
  await pub.send({ cmd: "pubrel", messageId: 2 });
  assert.equal((await pub.expect("pubcomp")).reasonCode, 0);
  await sub.expectPublish("match/one", "1", 0);
  await sub.expectPublish("match/two", "2", 0);
});

Deno.test("PUBACK 0x10 vs 0x00 follows the subscription: after UNSUBSCRIBE the same topic gets 0x10 again", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber5(broker.port, "sub", [["flip", 1]]);
  await using pub = await connect5(broker.port, "pub");
  await pub.publish("flip", "a", { qos: 1, messageId: 1 });
  assert.equal((await pub.expect("puback")).reasonCode, 0);
  await sub.send({ cmd: "unsubscribe", messageId: 2, unsubscriptions: ["flip"] });
  await sub.expect("publish");
  await sub.expect("unsuback");
  await pub.publish("flip", "b", { qos: 1, messageId: 2 });
  assert.equal((await pub.expect("puback")).reasonCode, 0x10);
});

Deno.test("PUBACK / PUBREC 0x87 (not authorized) with a Reason String for a client PUBLISH under $SYS; nothing delivered", async () => {
  await using broker = await startBroker();
  await using watcher = await subscriber5(broker.port, "watcher", [["$SYS/vyoma-test/#", 1]]);
  await using pub = await connect5(broker.port, "pub");
  await pub.publish("$SYS/vyoma-test/fake", "forged", { qos: 1, messageId: 21 });
  const puback = await pub.expect("puback");
  assert.deepEqual([puback.messageId, puback.reasonCode], [21, 0x87]);
  assert.equal(typeof puback.properties?.reasonString, "string", "failure acks carry a Reason String");
  await pub.publish("$SYS/vyoma-test/fake", "forged", { qos: 2, messageId: 22 });
  const pubrec = await pub.expect("pubrec");
  assert.deepEqual([pubrec.messageId, pubrec.reasonCode], [22, 0x87]);
  assert.equal(typeof pubrec.properties?.reasonString, "string");
  await pub.assertIdle();
  await watcher.assertIdle();
});

Deno.test("Request Problem Information 0: PUBACK 0x87, PUBCOMP 0x92, PUBREC 0x99 come without a Reason String (3.1.2.11.7)", async () => {
  await using broker = await startBroker();
  await using pub = await connect5(broker.port, "pub", { properties: { requestProblemInformation: false } });
  await pub.publish("$SYS/vyoma-test/fake", "forged", { qos: 1, messageId: 3 });
  const puback = await pub.expect("puback");
  assert.equal(puback.reasonCode, 0x87);
  assert.equal(puback.properties?.reasonString, undefined);
  assert.equal(puback.properties?.userProperties, undefined);
  await pub.send({ cmd: "pubrel", messageId: 99 });
  const pubcomp = await pub.expect("pubcomp");
  assert.equal(pubcomp.reasonCode, 0x92);
  assert.equal(pubcomp.properties?.reasonString, undefined);
  await pub.publish("pfi", new Uint8Array([0xff]), {
    qos: 2,
    messageId: 4,
    properties: { payloadFormatIndicator: true },
  });
  const pubrec = await pub.expect("pubrec");
  assert.equal(pubrec.reasonCode, 0x99);
  assert.equal(pubrec.properties?.reasonString, undefined);
});

Deno.test("[MQTT-3.3.2-4] Payload Format Indicator 1 with a payload that is not UTF-8: PUBACK / PUBREC 0x99, not delivered", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber5(broker.port, "sub", [["pfi", 2]]);
  await using pub = await connect5(broker.port, "pub");
  const invalid = new Uint8Array([0x61, 0xff, 0xfe, 0xc3]);
  const utf8Claim = { payloadFormatIndicator: true };
  await pub.publish("pfi", invalid, { qos: 1, messageId: 31, properties: utf8Claim });
  const puback = await pub.expect("puback");
  assert.deepEqual([puback.messageId, puback.reasonCode], [31, 0x99]);
  await pub.publish("pfi", invalid, { qos: 2, messageId: 32, properties: utf8Claim });
  const pubrec = await pub.expect("pubrec");
  assert.deepEqual([pubrec.messageId, pubrec.reasonCode], [32, 0x99]);
  // QoS 0: no ack to carry the code, the message is dropped.
  await pub.publish("pfi", invalid, { qos: 0, properties: utf8Claim });
  // The same bytes without the claim, and valid UTF-8 with it, are delivered (the latter with the indicator).
  await pub.publish("pfi", invalid, { qos: 1, messageId: 33 });
  assert.deepEqual([(await pub.expect("puback")).reasonCode], [0]);
  await pub.publish("pfi", "żółw ✓", { qos: 1, messageId: 34, properties: utf8Claim });
  assert.deepEqual([(await pub.expect("puback")).reasonCode], [0]);
  // Refused, so not retained either.
  await pub.publish("pfi/kept", invalid, { qos: 1, messageId: 35, retain: true, properties: utf8Claim });
  assert.equal((await pub.expect("puback")).reasonCode, 0x99);
  await pub.assertIdle();
  await using late = await subscriber5(broker.port, "late", [["pfi/#", 1]]);
  await late.assertIdle();

  const binary = await sub.expect("publish");
  assert.deepEqual([...binary.payload as Buffer], [...invalid], "the unclaimed binary payload arrives first");
  assert.notEqual(binary.properties?.payloadFormatIndicator, true);
  await sub.send({ cmd: "puback", messageId: binary.messageId });
  const text = await sub.expectPublish("pfi", "żółw ✓", 1);
  assert.equal(text.properties?.payloadFormatIndicator, true, "[MQTT-3.3.2-4] forwarded unaltered");
  await sub.send({ cmd: "puback", messageId: text.messageId });
  await sub.assertIdle();
});

Deno.test("[MQTT-3.7.2-1] PUBREL for an unknown packet id gets PUBCOMP 0x92 (packet identifier not found); connection stays", async () => {
  await using broker = await startBroker();
  await using client = await connect5(broker.port, "c");
  await client.send({ cmd: "pubrel", messageId: 777 });
  const pubcomp = await client.expect("pubcomp");
  assert.deepEqual([pubcomp.messageId, pubcomp.reasonCode], [777, 0x92]);
  assert.equal(typeof pubcomp.properties?.reasonString, "string");
  await client.assertIdle();
  // A real flow on the same connection still completes with 0x00 (0x10: nobody is subscribed).
  await client.publish("t", "x", { qos: 2, messageId: 777 });
  assert.equal((await client.expect("pubrec")).reasonCode, 0x10);
  await client.send({ cmd: "pubrel", messageId: 777 });
  assert.equal((await client.expect("pubcomp")).reasonCode, 0);
});

Deno.test("[MQTT-4.3.3-4] a subscriber's PUBREC 0x80 ends the QoS 2 flow: no PUBREL, and its inflight slot is freed (4.9)", async () => {
  await using broker = await startBroker();
  // Receive Maximum 1: the second message can only go once the first no longer counts as inflight.
  await using sub = await subscriber5(broker.port, "sub", [["q2", 2]], {
    properties: { receiveMaximum: 1 },
  });
  await using pub = await connect5(broker.port, "pub");
  for (const [messageId, payload] of [[1, "refused"], [2, "accepted"]] as const) {
    await pub.publish("q2", payload, { qos: 2, messageId });
    assert.equal((await pub.expect("pubrec")).reasonCode, 0);
    await pub.send({ cmd: "pubrel", messageId });
    assert.equal((await pub.expect("pubcomp")).messageId, messageId);
  }

  const refused = await sub.expectPublish("q2", "refused", 2);
  await sub.send({ cmd: "pubrec", messageId: refused.messageId, reasonCode: 0x80 });
  // Next comes the second message, not a PUBREL for the first.
  const accepted = await sub.expectPublish("q2", "accepted", 2);
  assert.equal(accepted.dup, false);
  await sub.send({ cmd: "pubrec", messageId: accepted.messageId });
  assert.equal((await sub.expect("pubrel")).messageId, accepted.messageId);
  await sub.send({ cmd: "pubcomp", messageId: accepted.messageId });
  await sub.assertIdle();
});

Deno.test("[MQTT-4.3.3-4] after a subscriber's error PUBREC, the message is not re-sent when it reconnects", async () => {
  await using broker = await startBroker();
  const session = { clean: false, properties: { sessionExpiryInterval: 60 } };
  {
    await using sub = await subscriber5(broker.port, "keeper", [["q2", 2]], session);
    await using pub = await connect5(broker.port, "pub");
    await pub.publish("q2", "refused", { qos: 2, messageId: 1 });
    await pub.expect("pubrec");
    await pub.send({ cmd: "pubrel", messageId: 1 });
    await pub.expect("pubcomp");
    const refused = await sub.expectPublish("q2", "refused", 2);
    await sub.send({ cmd: "pubrec", messageId: refused.messageId, reasonCode: 0x83 });
    await sub.assertIdle();
  }
  await broker.offline("keeper");
  await using back = await connect5(broker.port, "keeper", session);
  assert.equal(back.sessionPresent, true);
  // Neither the PUBLISH nor a PUBREL for it: the flow ended with the error PUBREC.
  await back.assertIdle();
});

// --- Request / response (4.10) ------------------------------------------------------------------------------

Deno.test("[MQTT-3.3.2-15] [MQTT-3.3.2-16] Response Topic and Correlation Data reach the subscriber untouched", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber5(broker.port, "sub", [["req/+", 1]]);
  await using pub = await connect5(broker.port, "pub");
  const correlationData = Buffer.from([0x00, 0xff, 0x10, 0x80, 0x00, 0x7f]);
  const properties = { responseTopic: "reply/for/pub/ü", correlationData };
  await pub.publish("req/a", "question", { qos: 1, messageId: 5, properties });
  await pub.expect("puback");
  await pub.publish("req/b", "question 0", { qos: 0, properties });
  for (const [topic, payload, qos] of [["req/a", "question", 1], ["req/b", "question 0", 0]] as const) {
    const got = await sub.expectPublish(topic, payload, qos);
    assert.equal(got.properties?.responseTopic, "reply/for/pub/ü");
    assert.deepEqual([...got.properties?.correlationData ?? []], [...correlationData]);
    if (qos === 1) await sub.send({ cmd: "puback", messageId: got.messageId });
  }
});

Deno.test("request/response between two MQTT.js v5 clients: the reply goes to the Response Topic with the Correlation Data", async () => {
  await using broker = await startBroker();
  await using responder = await connectMqttJs(broker.port, { protocolVersion: 5, clientId: "responder" });
  const requests: IPublishPacket[] = [];
  responder.mqtt.on("message", (_topic, payload, packet) => {
    requests.push(packet);
    const { responseTopic, correlationData } = packet.properties ?? {};
    if (responseTopic === undefined) return;
    responder.mqtt.publish(responseTopic, `answer to ${payload}`, {
      qos: 1,
      properties: { correlationData },
    });
  });
  await within(responder.mqtt.subscribeAsync("service/ask", { qos: 1 }), "responder SUBACK");

  await using requester = await connectMqttJs(broker.port, { protocolVersion: 5, clientId: "requester" });
  const replies: IPublishPacket[] = [];
  requester.mqtt.on("message", (_topic, _payload, packet) => replies.push(packet));
  await within(requester.mqtt.subscribeAsync("service/reply/requester", { qos: 1 }), "requester SUBACK");
  const correlationData = Buffer.from([0xde, 0xad, 0x00, 0xbe, 0xef]);
  await within(
    requester.mqtt.publishAsync("service/ask", "42?", {
      qos: 1,
      properties: { responseTopic: "service/reply/requester", correlationData },
    }),
    "the request's PUBACK",
  );
  const [reply] = await requester.received(1);
  assert.deepEqual([reply.topic, reply.payload], ["service/reply/requester", "answer to 42?"]);
  assert.deepEqual([...replies[0].properties?.correlationData ?? []], [...correlationData]);
  assert.equal(requests[0].properties?.responseTopic, "service/reply/requester");
});

// --- Properties forwarded untouched and in order -------------------------------------------------------------

Deno.test("[MQTT-3.3.2-17] [MQTT-3.3.2-18] [MQTT-3.3.2-20] properties forwarded: User Properties in wire order, repeated keys kept", async () => {
  await using broker = await startBroker();
  await using sub = await ByteClient.subscriber(broker.port, "bytes", "order/#", 1);
  await using pub = await connect5(broker.port, "pub");
  const sent = [
    prop.u32(0x02, 100), // Message Expiry Interval: the broker may rewrite it (remaining seconds)
    prop.pair("k", "1"),
    prop.byte(0x01, 1), // Payload Format Indicator
    prop.pair("j", "2"),
    prop.string(0x03, "application/json; charset=utf-8"), // Content Type
    prop.pair("k", "3"),
    prop.string(0x08, "order/reply"), // Response Topic
    prop.pair("k", "1"), // the very same pair again: allowed, and kept
    prop.binary(0x09, [0, 1, 0xff]), // Correlation Data
    prop.pair("ключ", "значение ✓"),
    prop.pair("", ""),
  ];
  await pub.sendBytes(rawPublish5("order/x", '{"a":1}', sent, { qos: 1, packetId: 7 }));
  const puback = await pub.expect("puback");
  assert.deepEqual([puback.messageId, puback.reasonCode], [7, 0]);

  const got = parsePublish5(await sub.next());
  assert.equal(got.topic, "order/x");
  assert.equal(new TextDecoder().decode(got.payload), '{"a":1}');
  assert.deepEqual(userProperties(got.properties), [
    ["k", "1"],
    ["j", "2"],
    ["k", "3"],
    ["k", "1"],
    ["ключ", "значение ✓"],
    ["", ""],
  ]);
  // Everything else the publisher set arrives byte for byte; the broker adds only per-delivery properties
  // (Message Expiry Interval, Topic Alias, Subscription Identifier).
  const perDelivery = new Set([0x02, 0x0b, 0x23]);
  const hex = (bytes: number[]) => bytes.map((b) => b.toString(16).padStart(2, "0")).join("");
  const forwarded = got.properties.filter((p) => p.id !== 0x26 && !perDelivery.has(p.id)).map((p) =>
    hex(p.bytes)
  );
  const expected = sent.filter((p) => p[0] !== 0x26 && !perDelivery.has(p[0])).map(hex);
  assert.deepEqual(forwarded.toSorted(), expected.toSorted());
  const expiry = got.properties.filter((p) => p.id === 0x02);
  assert.equal(expiry.length, 1, "the Message Expiry Interval is forwarded once");
  const [, b1, b2, b3, b4] = expiry[0].bytes;
  const remaining = ((b1 << 24) >>> 0) + (b2 << 16) + (b3 << 8) + b4;
  assert.ok(remaining > 0 && remaining <= 100, `remaining expiry ${remaining} within (0, 100]`);
});

pahoTest(
  "[MQTT-3.3.2-18] mosquitto_pub -V mqttv5 -D user-property k/j/k: paho receives them in that order, with the other properties",
  async () => {
    await using broker = await startBroker();
    await using paho = await PahoSub.subscribed(broker.port, "paho", "mix/#", 1);
    const pub = await runMosquittoTool("mosquitto_pub", [
      ...at(broker),
      ...["-V", "mqttv5", "-i", "mosq-pub", "-q", "1", "-t", "mix/a", "-m", "hello"],
      ...["-D", "publish", "user-property", "k", "1"],
      ...["-D", "publish", "user-property", "j", "2"],
      ...["-D", "publish", "user-property", "k", "3"],
      ...["-D", "publish", "content-type", "text/plain"],
      ...["-D", "publish", "payload-format-indicator", "1"],
      ...["-D", "publish", "response-topic", "mix/reply"],
      ...["-D", "publish", "correlation-data", "corr-7"],
    ]);
    assert.equal(pub.code, 0, pub.stderr);
    const [message] = await paho.messages(1);
    assert.deepEqual([message.topic, message.payload, message.qos], ["mix/a", "hello", 1]);
    assert.deepEqual(message.properties, {
      PayloadFormatIndicator: 1,
      ContentType: "text/plain",
      ResponseTopic: "mix/reply",
      CorrelationData: hex("corr-7"),
      UserProperty: [["k", "1"], ["j", "2"], ["k", "3"]],
    });
  },
  { mosquitto: true },
);

pahoTest(
  "[MQTT-3.3.2-17] MQTT.js v5 User Properties with an array value reach paho as repeated keys, in order",
  async () => {
    await using broker = await startBroker();
    await using paho = await PahoSub.subscribed(broker.port, "paho", "js/#", 0);
    await using pub = await connectMqttJs(broker.port, { protocolVersion: 5, clientId: "js-pub" });
    await within(
      pub.mqtt.publishAsync("js/x", "props", {
        qos: 1,
        properties: {
          contentType: "application/x-test",
          userProperties: { first: "1", multi: ["a", "b", "c"], last: "z" },
        },
      }),
      "PUBACK",
    );
    const [message] = await paho.messages(1);
    assert.equal(message.properties.ContentType, "application/x-test");
    assert.deepEqual(message.properties.UserProperty, [
      ["first", "1"],
      ["multi", "a"],
      ["multi", "b"],
      ["multi", "c"],
      ["last", "z"],
    ]);
  },
);

// --- Message Expiry Interval (3.3.2.3.3) --------------------------------------------------------------------

Deno.test("[MQTT-3.3.2-6] a live delivery carries the Message Expiry Interval, at most what was published", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber5(broker.port, "sub", [["exp", 1]]);
  await using pub = await connect5(broker.port, "pub");
  await pub.publish("exp", "with", { qos: 1, messageId: 1, properties: { messageExpiryInterval: 30 } });
  await pub.publish("exp", "without", { qos: 1, messageId: 2 });
  const withExpiry = await sub.expectPublish("exp", "with", 1);
  const interval = withExpiry.properties?.messageExpiryInterval;
  assert.ok(interval !== undefined && interval > 0 && interval <= 30, `expiry ${interval} within (0, 30]`);
  await sub.send({ cmd: "puback", messageId: withExpiry.messageId });
  const without = await sub.expectPublish("exp", "without", 1);
  assert.equal(without.properties?.messageExpiryInterval, undefined, "no expiry was set, none is sent");
});

Deno.test("[MQTT-3.3.2-5] [MQTT-3.3.2-6] queued for an offline session: the expired message is dropped, the other arrives with less time", async () => {
  await using broker = await startBroker();
  const session = { clean: false, properties: { sessionExpiryInterval: 60 } };
  {
    await using sub = await subscriber5(broker.port, "away", [["q/#", 1]], session);
    await sub.disconnect();
  }
  await broker.offline("away");
  await using pub = await connect5(broker.port, "pub");
  const sent: [string, number | undefined][] = [["short", 1], ["long", 4], ["forever", undefined]];
  for (const [i, [payload, messageExpiryInterval]] of sent.entries()) {
    const properties = messageExpiryInterval === undefined ? undefined : { messageExpiryInterval };
    await pub.publish("q/t", payload, { qos: 1, messageId: i + 1, properties });
    assert.equal((await pub.expect("puback")).reasonCode, 0);
  }
  // Long enough for the 1 s message to expire, and for the 4 s one to have waited more than a second.
  await delay(1200);

  await using back = await connect5(broker.port, "away", session);
  assert.equal(back.sessionPresent, true);
  const long = await back.expectPublish("q/t", "long", 1);
  const remaining = long.properties?.messageExpiryInterval;
  assert.ok(
    remaining !== undefined && remaining >= 1 && remaining <= 3,
    `[MQTT-3.3.2-6] 4 s minus the >1.2 s it waited, got ${remaining}`,
  );
  await back.send({ cmd: "puback", messageId: long.messageId });
  const forever = await back.expectPublish("q/t", "forever", 1);
  assert.equal(forever.properties?.messageExpiryInterval, undefined);
  await back.send({ cmd: "puback", messageId: forever.messageId });
  await back.assertIdle();
});

Deno.test("[MQTT-3.3.2-5] a retained message is not sent to new subscribers once its expiry interval has passed", async () => {
  await using broker = await startBroker();
  await using pub = await connect5(broker.port, "pub");
  await pub.publish("r/short", "short-lived", {
    qos: 1,
    messageId: 1,
    retain: true,
    properties: { messageExpiryInterval: 1 },
  });
  await pub.expect("puback");
  await pub.publish("r/long", "long-lived", {
    qos: 1,
    messageId: 2,
    retain: true,
    properties: { messageExpiryInterval: 60 },
  });
  await pub.expect("puback");
  await delay(1200);

  await using sub = await subscriber5(broker.port, "late", [["r/#", 1]]);
  const got = await sub.expectPublish("r/long", "long-lived", 1);
  assert.equal(got.retain, true);
  const remaining = got.properties?.messageExpiryInterval;
  assert.ok(
    remaining !== undefined && remaining < 60 && remaining > 0,
    `remaining ${remaining} within (0, 60)`,
  );
  await sub.send({ cmd: "puback", messageId: got.messageId });
  await sub.assertIdle();
});

Deno.test("a retained message still within its expiry interval is sent with the interval it has left and its other properties", async () => {
  await using broker = await startBroker();
  await using pub = await connect5(broker.port, "pub");
  const correlationData = Buffer.from([9, 0, 9]);
  await pub.publish("r/x", "kept", {
    qos: 0,
    retain: true,
    properties: {
      messageExpiryInterval: 20,
      contentType: "text/kept",
      responseTopic: "r/reply",
      correlationData,
      userProperties: { a: "1", b: ["2", "3"] },
    },
  });
  await pub.assertIdle();
  await using sub = await subscriber5(broker.port, "sub", [["r/x", 0]]);
  const got = await sub.expectPublish("r/x", "kept", 0);
  assert.equal(got.retain, true);
  const { messageExpiryInterval: remaining, ...rest } = got.properties ?? {};
  assert.ok(
    remaining !== undefined && remaining > 0 && remaining <= 20,
    `remaining ${remaining} within (0, 20]`,
  );
  // The other properties are kept with the retained message [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17].
  // (mqtt-packet decodes User Properties into a null-prototype object.)
  assert.deepEqual({ ...rest, userProperties: { ...rest.userProperties } }, {
    contentType: "text/kept",
    responseTopic: "r/reply",
    correlationData,
    userProperties: { a: "1", b: ["2", "3"] },
  });
});

// --- 3.1.1 <-> 5.0 --------------------------------------------------------------------------------------------

mosquittoTest(
  "3.1.1 -> 5.0: mosquitto_pub -V mqttv311 reaches a v5 subscriber, with no properties",
  async () => {
    await using broker = await startBroker();
    await using sub = await subscriber5(broker.port, "v5sub", [["cross/#", 1]]);
    const pub = await runMosquittoTool("mosquitto_pub", [
      ...at(broker),
      ...["-V", "mqttv311", "-i", "v311-pub", "-q", "1", "-t", "cross/old", "-m", "from 3.1.1"],
    ]);
    assert.equal(pub.code, 0, pub.stderr);
    const got = await sub.expectPublish("cross/old", "from 3.1.1", 1);
    assert.deepEqual(got.properties ?? {}, {}, "a 3.1.1 message has no properties to forward");
  },
);

Deno.test("3.1.1 -> 5.0: a RawClient at 3.1.1 publishing QoS 2 reaches a v5 subscriber", async () => {
  await using broker = await startBroker();
  await using sub = await subscriber5(broker.port, "v5sub", [["cross/#", 2]]);
  await using pub = await RawClient.connected(broker.port, { clientId: "v311" });
  await pub.publishAcked("cross/two", "qos two", { qos: 2 });
  const got = await sub.expectPublish("cross/two", "qos two", 2);
  assert.deepEqual(got.properties ?? {}, {});
});

mosquittoTest(
  "5.0 -> 3.1.1: mosquitto_pub -V mqttv5 with properties reaches mosquitto_sub -V mqttv311 (properties dropped)",
  async () => {
    await using broker = await startBroker();
    await using sub = await MosquittoSub.subscribed(broker, "old-sub", "cross/#", ["-V", "mqttv311", "-v"]);
    const pub = await runMosquittoTool("mosquitto_pub", [
      ...at(broker),
      ...["-V", "mqttv5", "-i", "v5-pub", "-q", "1", "-t", "cross/new", "-m", "from 5.0"],
      ...["-D", "publish", "user-property", "k", "v"],
      ...["-D", "publish", "content-type", "text/plain"],
      ...["-D", "publish", "message-expiry-interval", "60"],
      ...["-D", "publish", "response-topic", "cross/reply"],
      ...["-D", "publish", "correlation-data", "abc"],
    ]);
    assert.equal(pub.code, 0, pub.stderr);
    assert.deepEqual(await sub.lines(1), ["cross/new from 5.0"]);
  },
);

Deno.test("5.0 -> 3.1.1: a RawClient at 4 parses a plain 3.1.1 PUBLISH, live and retained", async () => {
  await using broker = await startBroker();
  await using old = await RawClient.subscriber(broker.port, { clientId: "v311" }, [["cross/#", 1]]);
  await using pub = await connect5(broker.port, "v5pub");
  const properties: PublishProperties = {
    payloadFormatIndicator: true,
    messageExpiryInterval: 60,
    contentType: "text/plain",
    responseTopic: "cross/reply",
    correlationData: Buffer.from([1, 2, 3]),
    userProperties: { k: ["v1", "v2"] },
  };
  await pub.publish("cross/live", "exact payload", { qos: 1, messageId: 1, properties });
  assert.equal((await pub.expect("puback")).reasonCode, 0);
  // mqtt-packet at 3.1.1 reads everything after the packet id as payload: stray properties would show.
  const live = await old.expectPublish("cross/live", "exact payload", 1);
  await old.send({ cmd: "puback", messageId: live.messageId });
  await pub.publish("cross/kept", "retained payload", { qos: 1, messageId: 2, retain: true, properties });
  await pub.expect("puback");
  const forwarded = await old.expectPublish("cross/kept", "retained payload", 1);
  await old.send({ cmd: "puback", messageId: forwarded.messageId });

  await using late = await RawClient.subscriber(broker.port, { clientId: "late311" }, [["cross/kept", 1]]);
  const retained = await late.expectPublish("cross/kept", "retained payload", 1);
  assert.equal(retained.retain, true);
  await late.send({ cmd: "puback", messageId: retained.messageId });
  await late.assertIdle();
});

// --- Features the broker turned off -----------------------------------------------------------------------------

Deno.test("retain_available false: CONNACK Retain Available 0, and a v5 PUBLISH with RETAIN gets DISCONNECT 0x9A (3.2.2.3.5)", async () => {
  await using broker = await startBroker({ mqtt: { retain_available: false } });
  await using other = await bystander(broker.port);
  await using client = await connect5(broker.port, "retainer");
  assert.equal(client.connack.properties?.retainAvailable, false);
  // Not retained: fine.
  await client.publish("alive", "plain", { qos: 1, messageId: 1 });
  assert.equal((await client.expect("puback")).reasonCode, 0);
  const plain = await other.expectPublish("alive", "plain", 1);
  await other.send({ cmd: "puback", messageId: plain.messageId });
  await client.publish("alive", "kept?", { qos: 1, messageId: 2, retain: true });
  await assertServerDisconnect(client, 0x9a);
  await assertAlive(broker, other);
  // Nothing was retained.
  await using late = await subscriber5(broker.port, "late", [["alive", 1]]);
  await late.assertIdle();
});

Deno.test("retain_available false: a 3.1.1 PUBLISH with RETAIN closes the connection without a packet", async () => {
  await using broker = await startBroker({ mqtt: { retain_available: false } });
  await using other = await bystander(broker.port);
  await using old = await RawClient.connected(broker.port, { clientId: "old" });
  await old.publish("alive", "kept?", { retain: true });
  await old.assertClosedSilently();
  await assertAlive(broker, other);
});

Deno.test("max_qos 1: CONNACK Maximum QoS 1, and a v5 QoS 2 PUBLISH gets DISCONNECT 0x9B (3.2.2.3.4)", async () => {
  const overrides: ConfigOverrides = { mqtt: { max_qos: 1 } };
  await using broker = await startBroker(overrides);
  await using other = await bystander(broker.port);
  await using client = await connect5(broker.port, "greedy");
  assert.equal(client.connack.properties?.maximumQoS, 1);
  await client.publish("alive", "one", { qos: 1, messageId: 1 });
  assert.equal((await client.expect("puback")).reasonCode, 0);
  const one = await other.expectPublish("alive", "one", 1);
  await other.send({ cmd: "puback", messageId: one.messageId });
  await client.publish("alive", "two", { qos: 2, messageId: 2 });
  await assertServerDisconnect(client, 0x9b);
  await assertAlive(broker, other);
  await other.assertIdle();
});

Deno.test("max_qos 2 (default): CONNACK leaves out Maximum QoS and Retain Available", async () => {
  await using broker = await startBroker();
  await using client = await connect5(broker.port, "c");
  assert.equal(client.connack.properties?.maximumQoS, undefined);
  assert.equal(client.connack.properties?.retainAvailable, undefined);
});
