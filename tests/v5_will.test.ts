/**
 * MQTT 5.0 will messages (sections 3.1.2.5, 3.1.3.2 and 3.1.3.3): the Will Delay Interval (published after
 * it, cancelled by a reconnection in time, brought forward by the end of the session), the will properties
 * forwarded to 5.0 subscribers in order, and 3.1.1 subscribers getting a 5.0 will without them.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { IConnectPacket, IPublishPacket } from "mqtt-packet";
import { startBroker, type TestBroker } from "./helpers/broker.ts";
import { connectMqttJs } from "./helpers/mqttjs.ts";
import { PahoSub, pahoTest } from "./helpers/paho.ts";
import { type QoS, RawClient } from "./helpers/raw.ts";
import { connect5, prop, rawConnect5 } from "./helpers/v5.ts";
import { until } from "./helpers/wait.ts";

// --- Local helpers ------------------------------------------------------------------------------------------

type Will = NonNullable<IConnectPacket["will"]>;
type WillProperties = NonNullable<Will["properties"]>;

function will(topic: string, payload: string, properties?: WillProperties, qos: QoS = 0): Will {
  return { topic, payload: Buffer.from(payload), qos, retain: false, properties };
}

/** A raw client (5.0 unless `version` says) subscribed to `filter` to see wills arrive. */
function watcher(broker: TestBroker, filter = "will/#", version: 4 | 5 = 5): Promise<RawClient> {
  return RawClient.subscriber(broker.port, { protocolVersion: version, clientId: "watcher" }, [[filter, 0]]);
}

/** `clientId` connects with a persistent session (`sessionExpiryInterval`) and `w` as its will. */
function owner(broker: TestBroker, clientId: string, sessionExpiryInterval: number, w: Will) {
  return connect5(broker.port, clientId, {
    clean: true,
    properties: sessionExpiryInterval > 0 ? { sessionExpiryInterval } : undefined,
    will: w,
  });
}

/**
 * `clientId` connects with a session of `sessionExpiryInterval` seconds (none if 0) and a QoS 0 will of
 * `payload` on will/<clientId> delayed by `willDelayInterval`; then its socket closes without DISCONNECT.
 * Returns once the broker has detached the session.
 */
async function leaveWithDelayedWill(
  broker: TestBroker,
  clientId: string,
  payload: string,
  { sessionExpiryInterval, willDelayInterval }: { sessionExpiryInterval: number; willDelayInterval: number },
): Promise<void> {
  await using client = await owner(
    broker,
    clientId,
    sessionExpiryInterval,
    will(`will/${clientId}`, payload, { willDelayInterval }),
  );
  await client.close();
  await broker.disconnected(clientId);
}

/**
 * The watcher publishes a marker on `topic` and asserts it is the next packet: no will arrived before it.
 */
async function assertNothingBefore(watch: RawClient, topic = "will/marker"): Promise<void> {
  await watch.publish(topic, "marker");
  await watch.expectPublish(topic, "marker");
}

// --- Will Delay Interval ------------------------------------------------------------------------------------

Deno.test("[MQTT-3.1.2-8] (3.1.3.2.2) the will is published once the Will Delay Interval has passed, not at once", async () => {
  await using broker = await startBroker();
  await using watch = await watcher(broker);
  await leaveWithDelayedWill(broker, "delayed", "late", { sessionExpiryInterval: 60, willDelayInterval: 1 });
  // The connection is gone, but for one more second the will is not: a marker sent now arrives first.
  await assertNothingBefore(watch);
  const got = await watch.expectPublish("will/delayed", "late", 0, 3000);
  assert.equal(got.retain, false);
  // The session (60 s) outlives the delay: only the will went.
  assert.ok(broker.hasSession("delayed"));
});

Deno.test("[MQTT-3.1.3-9] reconnecting to the session within the Will Delay Interval cancels the will", async () => {
  await using broker = await startBroker();
  await using watch = await watcher(broker);
  await leaveWithDelayedWill(broker, "returning", "x", { sessionExpiryInterval: 60, willDelayInterval: 1 });
  // The control's will, due after the returning client's, is published: it shows the delay has passed.
  await leaveWithDelayedWill(broker, "control", "control", {
    sessionExpiryInterval: 60,
    willDelayInterval: 1,
  });
  await using back = await connect5(broker.port, "returning", {
    clean: false,
    properties: { sessionExpiryInterval: 60 },
  });
  assert.equal(back.connack.sessionPresent, true);
  await watch.expectPublish("will/control", "control", 0, 3000);
  await assertNothingBefore(watch);
  await back.assertIdle();
});

Deno.test("(3.1.2.4) reconnecting with Clean Start 1 ends the old session, so its delayed will goes out at once", async () => {
  await using broker = await startBroker();
  await using watch = await watcher(broker);
  await leaveWithDelayedWill(broker, "restarter", "old session", {
    sessionExpiryInterval: 60,
    willDelayInterval: 60,
  });
  await assertNothingBefore(watch);
  await using fresh = await connect5(broker.port, "restarter", { clean: true });
  assert.equal(fresh.connack.sessionPresent, false);
  await watch.expectPublish("will/restarter", "old session", 0);
});

Deno.test("[MQTT-3.1.2-8] Session Expiry Interval shorter than the Will Delay Interval: the will goes when the session ends", async () => {
  await using broker = await startBroker();
  await using watch = await watcher(broker);
  await leaveWithDelayedWill(broker, "short", "session over", {
    sessionExpiryInterval: 1,
    willDelayInterval: 60,
  });
  await watch.expectPublish("will/short", "session over", 0, 4000);
  await broker.sessionEnded("short");
});

Deno.test("[MQTT-3.1.2-8] no Session Expiry Interval: a will with a Will Delay Interval goes when the connection ends", async () => {
  await using broker = await startBroker();
  await using watch = await watcher(broker);
  await leaveWithDelayedWill(broker, "no-session", "at once", {
    sessionExpiryInterval: 0,
    willDelayInterval: 60,
  });
  await watch.expectPublish("will/no-session", "at once", 0);
});

// --- Will properties ------------------------------------------------------------------------------------------

const WILL_PROPERTIES: WillProperties = {
  payloadFormatIndicator: true,
  contentType: "text/plain; charset=utf-8",
  responseTopic: "reply/to/me",
  correlationData: Buffer.from([1, 2, 3, 0xff]),
  userProperties: { origin: "sensor-7", tag: ["a", "b"] },
  messageExpiryInterval: 60,
};

/** Asserts the PUBLISH carries the will properties above, the expiry counted down (0 < x <= 60). */
function assertWillProperties(packet: IPublishPacket): void {
  const props = packet.properties ?? {};
  assert.equal(props.payloadFormatIndicator, true);
  assert.equal(props.contentType, "text/plain; charset=utf-8");
  assert.equal(props.responseTopic, "reply/to/me");
  assert.deepEqual([...(props.correlationData ?? [])], [1, 2, 3, 0xff]);
  assert.deepEqual({ ...props.userProperties }, { origin: "sensor-7", tag: ["a", "b"] });
  const expiry = props.messageExpiryInterval ?? -1;
  assert.ok(expiry > 0 && expiry <= 60, `Message Expiry Interval ${expiry}`);
}

Deno.test("(3.1.3.2) will properties reach a 5.0 subscriber (raw and MQTT.js): content type, response topic, correlation data, user properties, expiry", async () => {
  await using broker = await startBroker();
  await using watch = await watcher(broker);
  await using js = await connectMqttJs(broker.port, { protocolVersion: 5, clientId: "js-watch" });
  const jsPackets: IPublishPacket[] = [];
  js.mqtt.on("message", (_topic, _payload, packet) => jsPackets.push(packet));
  await js.mqtt.subscribeAsync("will/#", { qos: 1 });

  await using client = await owner(broker, "rich", 0, will("will/rich", "gone", WILL_PROPERTIES, 1));
  await client.close();
  assertWillProperties(await watch.expectPublish("will/rich", "gone", 0));
  await until(() => jsPackets.length === 1, "MQTT.js to get the will");
  assert.equal(jsPackets[0].topic, "will/rich");
  assertWillProperties(jsPackets[0]);
});

pahoTest(
  "(3.1.3.2.8) will User Properties reach a paho subscriber in the order they were sent, interleaved names included",
  async () => {
    await using broker = await startBroker();
    await using paho = await PahoSub.subscribed(broker.port, "paho-sub", "will/#", 1, { exitAfter: 1 });
    const pairs: [string, string][] = [["k", "1"], ["j", "2"], ["k", "3"], ["k", "1"], ["a", ""]];
    // mqtt-packet groups User Properties by name, so it cannot send them interleaved: the CONNECT is hand-made.
    const properties = [
      prop.string(0x03, "application/json"),
      ...pairs.map(([name, value]) => prop.pair(name, value)),
      prop.string(0x08, "reply/here"),
      prop.binary(0x09, [0xca, 0xfe]),
      prop.u32(0x02, 120),
    ];
    await using client = await RawClient.open(broker.port, 5);
    await client.sendBytes(
      rawConnect5("ordered", { will: { topic: "will/ordered", payload: "{}", properties } }),
    );
    assert.equal((await client.expect("connack")).reasonCode, 0);
    await client.close();
    const [got] = await paho.messages(1);
    assert.deepEqual([got.topic, got.payload], ["will/ordered", "{}"]);
    assert.deepEqual(got.properties.UserProperty, pairs);
    assert.equal(got.properties.ContentType, "application/json");
    assert.equal(got.properties.ResponseTopic, "reply/here");
    assert.equal(got.properties.CorrelationData, "cafe");
    const expiry = got.properties.MessageExpiryInterval ?? -1;
    assert.ok(expiry > 0 && expiry <= 120, `Message Expiry Interval ${expiry}`);
    await paho.finished();
  },
);

Deno.test("(3.1.3.2) a 3.1.1 subscriber gets a 5.0 will without its properties", async () => {
  await using broker = await startBroker();
  // mqtt-packet at 3.1.1 would read any property bytes as part of the payload.
  await using old = await watcher(broker, "will/#", 4);
  await using js = await connectMqttJs(broker.port, { protocolVersion: 4, clientId: "js-311" });
  await js.mqtt.subscribeAsync("will/#", { qos: 1 });
  await using client = await owner(broker, "rich", 0, will("will/rich", "gone", WILL_PROPERTIES, 1));
  await client.close();
  await old.expectPublish("will/rich", "gone", 0);
  const [message] = await js.received(1);
  assert.deepEqual([message.topic, message.payload, message.qos], ["will/rich", "gone", 1]);
});
