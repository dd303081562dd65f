/**
 * MQTT 5.0 with three independent client stacks through the broker: Debian's mosquitto_pub / mosquitto_sub
 * (`-V mqttv5`, properties set with -D and printed with -F), MQTT.js (`protocolVersion: 5`) and Python's
 * paho-mqtt (MQTTv5, run as a child process): publish properties forwarded untouched, Subscription
 * Identifiers, 3.1.1 receivers getting none of the properties, and a shared subscription.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { IPublishPacket } from "mqtt-packet";
import { startBroker, type TestBroker } from "./helpers/broker.ts";
import { connectMqttJs } from "./helpers/mqttjs.ts";
import { at, MosquittoSub, mosquittoTest, runMosquittoTool } from "./helpers/mosquitto.ts";
import { hex, PahoScript, pahoTest } from "./helpers/paho.ts";
import { until } from "./helpers/wait.ts";

// --- Local helpers ----------------------------------------------------------------------------------------

/** mosquitto_pub's -D arguments for every PUBLISH property it can set. */
const PUBLISH_PROPERTIES = [
  ["-D", "publish", "user-property", "colour", "blue"],
  ["-D", "publish", "user-property", "size", "9"],
  ["-D", "publish", "content-type", "text/plain"],
  ["-D", "publish", "message-expiry-interval", "60"],
  ["-D", "publish", "response-topic", "reply/here"],
  ["-D", "publish", "correlation-data", "corr-42"],
  ["-D", "publish", "payload-format-indicator", "1"],
].flat();

/** mosquitto_sub's -F format printing the topic, every PUBLISH property, QoS and payload, split by |. */
const PROPERTIES_FORMAT = "%t|%C|%E|%R|%D|%F|%P|%S|%q|%p";

/**
 * mosquitto_sub -V mqttv5 as "sub5", subscribed to `filter` at `qos` (the broker has the subscription on
 * return), printing each message with PROPERTIES_FORMAT.
 */
function propertiesSub(broker: TestBroker, filter: string, qos: number): Promise<MosquittoSub> {
  return MosquittoSub.subscribed(broker, "sub5", filter, [
    "-V",
    "mqttv5",
    "-q",
    String(qos),
    "-F",
    PROPERTIES_FORMAT,
  ]);
}

/** mosquitto_pub -V mqttv5 sends `message` on `topic` (at `qos`, if given) with PUBLISH_PROPERTIES; must succeed. */
async function publishWithProperties(broker: TestBroker, topic: string, message: string, qos?: number) {
  const pub = await runMosquittoTool("mosquitto_pub", [
    ...at(broker),
    ...["-V", "mqttv5", ...(qos === undefined ? [] : ["-q", String(qos)]), "-t", topic, "-m", message],
    ...PUBLISH_PROPERTIES,
  ]);
  assert.equal(pub.code, 0, pub.stderr);
}

/** Splits a line printed with PROPERTIES_FORMAT into named fields. */
function parseLine(line: string) {
  const [topic, contentType, expiry, responseTopic, correlation, format, user, ids, qos, payload] = line
    .split(
      "|",
    );
  return { topic, contentType, expiry, responseTopic, correlation, format, user, ids, qos, payload };
}

// --- mosquitto 5.0 to mosquitto 5.0 ------------------------------------------------------------------------

mosquittoTest(
  "[MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17] mosquitto_pub -V mqttv5 -D publish ...: mosquitto_sub -V mqttv5 prints every property",
  async () => {
    await using broker = await startBroker();
    await using sub = await propertiesSub(broker, "p/#", 1);
    await publishWithProperties(broker, "p/x", "hello five", 1);
    const [line] = await sub.lines(1);
    const got = parseLine(line);
    const expiry = Number(got.expiry);
    assert.ok(expiry > 0 && expiry <= 60, `message expiry interval is what remains of 60 s: ${got.expiry}`);
    assert.deepEqual({ ...got, expiry: "" }, {
      topic: "p/x",
      contentType: "text/plain",
      expiry: "",
      responseTopic: "reply/here",
      correlation: "corr-42",
      format: "1",
      // User Properties in order [MQTT-3.3.2-18].
      user: "colour:blue size:9",
      ids: "",
      qos: "1",
      payload: "hello five",
    });
  },
);

mosquittoTest(
  "mosquitto_pub -V mqttv5 with properties: a 3.1.1 mosquitto_sub gets the message and none of the properties",
  async () => {
    await using broker = await startBroker();
    await using sub = await MosquittoSub.subscribed(broker, "sub311", "p/#", [
      "-V",
      "mqttv311",
      "-F",
      "%t|%C|%P|%p",
    ]);
    await publishWithProperties(broker, "p/old", "plain");
    assert.deepEqual(await sub.lines(1), ["p/old|||plain"]);
  },
);

// --- mosquitto and MQTT.js ----------------------------------------------------------------------------------

mosquittoTest("mosquitto_pub -V mqttv5 properties reach MQTT.js (protocolVersion 5) intact", async () => {
  await using broker = await startBroker();
  await using sub = await connectMqttJs(broker.port, { protocolVersion: 5, clientId: "js5" });
  const packets: IPublishPacket[] = [];
  sub.mqtt.on("message", (_topic, _payload, packet) => packets.push(packet));
  await sub.mqtt.subscribeAsync("p/#", { qos: 1, properties: { subscriptionIdentifier: 77 } });
  await publishWithProperties(broker, "p/js", "to js", 1);
  await until(() => packets.length === 1, "MQTT.js to receive the message");
  const { properties, payload, topic } = packets[0];
  assert.deepEqual([topic, payload.toString()], ["p/js", "to js"]);
  assert.ok(properties);
  const expiry = properties.messageExpiryInterval ?? 0;
  assert.ok(expiry > 0 && expiry <= 60, `remaining message expiry: ${expiry}`);
  assert.deepEqual({
    contentType: properties.contentType,
    responseTopic: properties.responseTopic,
    correlationData: properties.correlationData?.toString(),
    payloadFormatIndicator: properties.payloadFormatIndicator,
    userProperties: { ...properties.userProperties },
    subscriptionIdentifier: properties.subscriptionIdentifier,
  }, {
    contentType: "text/plain",
    responseTopic: "reply/here",
    correlationData: "corr-42",
    payloadFormatIndicator: true,
    userProperties: { colour: "blue", size: "9" },
    subscriptionIdentifier: 77,
  });
});

mosquittoTest("MQTT.js (protocolVersion 5) publish properties reach mosquitto_sub -V mqttv5", async () => {
  await using broker = await startBroker();
  await using sub = await propertiesSub(broker, "js/#", 2);
  await using pub = await connectMqttJs(broker.port, { protocolVersion: 5, clientId: "jspub" });
  await pub.mqtt.publishAsync("js/out", "from js", {
    qos: 2,
    properties: {
      contentType: "application/octet-stream",
      responseTopic: "js/reply",
      correlationData: Buffer.from("cd"),
      userProperties: { k: "v" },
      messageExpiryInterval: 30,
    },
  });
  const got = parseLine((await sub.lines(1))[0]);
  assert.ok(Number(got.expiry) > 0 && Number(got.expiry) <= 30, `remaining expiry: ${got.expiry}`);
  assert.deepEqual(
    [got.topic, got.contentType, got.responseTopic, got.correlation, got.user, got.qos, got.payload],
    ["js/out", "application/octet-stream", "js/reply", "cd", "k:v", "2", "from js"],
  );
});

// --- paho-mqtt (Python) -------------------------------------------------------------------------------------

pahoTest(
  "[MQTT-3.3.4-3] paho MQTTv5: mosquitto_pub's properties arrive with both Subscription Identifiers",
  async () => {
    await using broker = await startBroker();
    await using paho = new PahoScript(
      broker.port,
      `
got = threading.Event()
def on_connect(c, u, flags, rc, props):
    p = Properties(PacketTypes.SUBSCRIBE); p.SubscriptionIdentifier = 42
    c.subscribe([("i/#", SubscribeOptions(qos=1))], properties=p)
    q = Properties(PacketTypes.SUBSCRIBE); q.SubscriptionIdentifier = 7
    c.subscribe([("i/x", SubscribeOptions(qos=0))], properties=q)
def on_subscribe(c, u, mid, reason_codes, props):
    out({"suback": codes(reason_codes)})
def on_message(c, u, m):
    out({"topic": m.topic, "payload": m.payload.decode(), "qos": m.qos, "props": m.properties.json()})
    got.set()
c = client("paho-sub")
c.on_connect = on_connect; c.on_subscribe = on_subscribe; c.on_message = on_message
c.connect("127.0.0.1", PORT, clean_start=True)
c.loop_start()
got.wait(10)
c.disconnect(); c.loop_stop()
`,
    );
    assert.deepEqual(await paho.lines(2), [{ suback: [1] }, { suback: [0] }]);
    await publishWithProperties(broker, "i/x", "to paho", 1);
    const [, , message] = await paho.finished();
    const props = message.props as Record<string, unknown>;
    const expiry = props.MessageExpiryInterval as number;
    assert.ok(expiry > 0 && expiry <= 60, `remaining expiry: ${expiry}`);
    // The order of the identifiers is not significant [MQTT-3.3.4-4].
    const ids = [props.SubscriptionIdentifier].flat().sort((a, b) => Number(a) - Number(b));
    assert.deepEqual({
      ...message,
      props: { ...props, MessageExpiryInterval: 0, SubscriptionIdentifier: ids },
    }, {
      topic: "i/x",
      payload: "to paho",
      qos: 1, // the higher of the two subscriptions, in one PUBLISH
      props: {
        PayloadFormatIndicator: 1,
        MessageExpiryInterval: 0,
        ContentType: "text/plain",
        ResponseTopic: "reply/here",
        CorrelationData: hex("corr-42"),
        SubscriptionIdentifier: [7, 42],
        UserProperty: [["colour", "blue"], ["size", "9"]],
      },
    });
  },
  { mosquitto: true },
);

pahoTest(
  "paho MQTTv5 publish properties round trip: to itself, and to mosquitto_sub -V mqttv5",
  async () => {
    await using broker = await startBroker();
    await using sub = await propertiesSub(broker, "rt/#", 1);
    await using paho = new PahoScript(
      broker.port,
      `
subscribed = threading.Event()
got = threading.Event()
def on_subscribe(c, u, mid, reason_codes, props):
    out({"suback": codes(reason_codes)})
    subscribed.set()
def on_message(c, u, m):
    out({"topic": m.topic, "payload": m.payload.decode(), "qos": m.qos, "props": m.properties.json()})
    got.set()
c = client("paho-rt")
c.on_subscribe = on_subscribe; c.on_message = on_message
c.connect("127.0.0.1", PORT, clean_start=True)
c.loop_start()
c.subscribe([("rt/#", SubscribeOptions(qos=1))])
subscribed.wait(10)
p = Properties(PacketTypes.PUBLISH)
p.ContentType = "application/json"
p.ResponseTopic = "rt/reply"
p.CorrelationData = b"\\x00\\xff"
p.MessageExpiryInterval = 30
p.PayloadFormatIndicator = 1
p.UserProperty = [("a", "1"), ("a", "2")]
c.publish("rt/self", '{"n": 1}', qos=1, properties=p).wait_for_publish(10)
got.wait(10)
c.disconnect(); c.loop_stop()
`,
    );
    const [suback, message] = await paho.finished();
    assert.deepEqual(suback, { suback: [1] });
    const props = message.props as Record<string, unknown>;
    const expiry = props.MessageExpiryInterval as number;
    assert.ok(expiry > 0 && expiry <= 30, `remaining expiry: ${expiry}`);
    assert.deepEqual({ ...message, props: { ...props, MessageExpiryInterval: 0 } }, {
      topic: "rt/self",
      payload: '{"n": 1}',
      qos: 1,
      props: {
        PayloadFormatIndicator: 1,
        MessageExpiryInterval: 0,
        ContentType: "application/json",
        ResponseTopic: "rt/reply",
        CorrelationData: "00ff",
        // Two user properties with the same name, both kept, in order [MQTT-3.3.2-18].
        UserProperty: [["a", "1"], ["a", "2"]],
      },
    });

    const line = parseLine((await sub.lines(1))[0]);
    assert.deepEqual(
      [line.topic, line.contentType, line.responseTopic, line.format, line.user, line.payload],
      ["rt/self", "application/json", "rt/reply", "1", "a:1 a:2", '{"n": 1}'],
    );
  },
  { mosquitto: true },
);

pahoTest("paho MQTTv5 shared subscription: two members share ten messages, five each", async () => {
  await using broker = await startBroker();
  await using paho = new PahoScript(
    broker.port,
    `
N = 10
lock = threading.Lock()
got = {"a": [], "b": []}
subscribed = {"a": threading.Event(), "b": threading.Event()}
ended = {"a": threading.Event(), "b": threading.Event()}
def member(name):
    def on_subscribe(c, u, mid, reason_codes, props):
        out({"member": name, "suback": codes(reason_codes)})
        subscribed[name].set()
    def on_message(c, u, m):
        if m.topic == "end":
            ended[name].set()
            return
        with lock:
            got[name].append(m.payload.decode())
    c = client("paho-" + name)
    c.on_subscribe = on_subscribe; c.on_message = on_message
    c.connect("127.0.0.1", PORT, clean_start=True)
    c.loop_start()
    # "end", a plain subscription of each member, is the marker that comes after every job.
    c.subscribe([("$share/workers/jobs/#", SubscribeOptions(qos=1)), ("end", SubscribeOptions(qos=1))])
    return c
members = [member("a"), member("b")]
for e in subscribed.values():
    e.wait(10)
pub = client("paho-pub")
pub.connect("127.0.0.1", PORT, clean_start=True)
pub.loop_start()
for n in range(N):
    pub.publish("jobs/%d" % n, "job %d" % n, qos=1).wait_for_publish(10)
pub.publish("end", "end", qos=1).wait_for_publish(10)
for e in ended.values():
    e.wait(10)
with lock:
    out({"a": got["a"], "b": got["b"]})
for c in members + [pub]:
    c.disconnect(); c.loop_stop()
`,
  );
  const lines = await paho.finished();
  const subacks = lines.filter((line) => "suback" in line).map((line) => line.suback);
  assert.deepEqual(subacks, [[1, 1], [1, 1]]);
  const { a, b } = lines.at(-1) as { a: string[]; b: string[] };
  const all = Array.from({ length: 10 }, (_, n) => `job ${n}`);
  assert.deepEqual([...a, ...b].sort(), [...all].sort(), "every message to exactly one member");
  assert.deepEqual([a.length, b.length], [5, 5], "round robin: five each");
});
