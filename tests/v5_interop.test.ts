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
import { MosquittoSub, mosquittoTest, runMosquittoTool } from "./helpers/mosquitto.ts";
import { until, within } from "./helpers/wait.ts";

// --- Local helpers ----------------------------------------------------------------------------------------

/** The broker's address arguments for a mosquitto tool. */
const at = (broker: TestBroker) => ["-h", "127.0.0.1", "-p", String(broker.port)];

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

/** Splits a line printed with PROPERTIES_FORMAT into named fields. */
function parseLine(line: string) {
  const [topic, contentType, expiry, responseTopic, correlation, format, user, ids, qos, payload] = line
    .split(
      "|",
    );
  return { topic, contentType, expiry, responseTopic, correlation, format, user, ids, qos, payload };
}

/** Lower-case hex of the UTF-8 bytes of `text`, as paho's Properties.json() shows Correlation Data. */
function hex(text: string): string {
  return [...new TextEncoder().encode(text)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * A python3 that can import paho-mqtt: the one on PATH, else Debian's (python3-paho-mqtt installs there,
 * while a pyenv python3 may come first on PATH). Null if neither has it.
 */
function findPython(): string | null {
  for (const candidate of ["python3", "/usr/bin/python3"]) {
    try {
      const { success } = new Deno.Command(candidate, {
        args: ["-c", "import paho.mqtt.client"],
        stdout: "null",
        stderr: "null",
      }).outputSync();
      if (success) return candidate;
    } catch {
      // not installed
    }
  }
  return null;
}

const python = findPython();
const skipPaho = python === null && Deno.env.get("VYOMA_REQUIRE_PAHO") !== "1";
if (skipPaho) {
  console.warn("python3 with paho-mqtt not found: its tests are ignored (apt-get install python3-paho-mqtt)");
}

/** mosquitto_pub or mosquitto_sub missing, and allowed to be (as tests/helpers/mosquitto.ts decides). */
const mosquittoMissing =
  !["mosquitto_pub", "mosquitto_sub"].every((tool) =>
    (Deno.env.get("PATH") ?? "").split(":").some((dir) => {
      try {
        return Deno.statSync(`${dir}/${tool}`).isFile;
      } catch {
        return false;
      }
    })
  ) && Deno.env.get("VYOMA_REQUIRE_MOSQUITTO") !== "1";

/**
 * A test that drives paho-mqtt (and the mosquitto tools, if `needsMosquitto`): ignored, not failed, where
 * they are not installed; VYOMA_REQUIRE_PAHO=1 turns a missing paho into failing tests instead.
 */
function pahoTest(name: string, fn: () => Promise<void>, needsMosquitto = false): void {
  Deno.test({ name, ignore: skipPaho || (needsMosquitto && mosquittoMissing), fn });
}

/**
 * The start of every paho script: `client(id)` makes an MQTTv5 client with paho 1.x or 2.x, `PORT` is the
 * broker's port (first argument), and `out(obj)` prints one JSON line.
 */
const PAHO_PRELUDE = `
import json, sys, threading
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.subscribeoptions import SubscribeOptions
PORT = int(sys.argv[1])
def client(cid):
    if hasattr(mqtt, "CallbackAPIVersion"):
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    return mqtt.Client(client_id=cid, protocol=mqtt.MQTTv5)
def out(obj):
    print(json.dumps(obj), flush=True)
def codes(reason_codes):
    return [int(getattr(c, "value", c)) for c in reason_codes]
`;

/**
 * A paho script run by python3 while the test goes on; its stdout read line by line as JSON. Disposing kills
 * it (if it still runs) and waits for it, so no process outlives the test.
 */
class PahoScript implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #stdout: Promise<void>;
  readonly #stderr: Promise<string>;
  #text = "";
  #wake: (() => void) | null = null;

  constructor(code: string, broker: TestBroker) {
    const child = this.#child = new Deno.Command(python ?? "python3", {
      args: ["-c", PAHO_PRELUDE + code, String(broker.port)],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#stdout = (async () => {
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        this.#text += chunk;
        this.#wake?.();
      }
    })();
    this.#stderr = new Response(this.#child.stderr).text();
  }

  /** Waits until `count` whole lines have been printed; returns them parsed as JSON. */
  lines(count: number): Promise<Record<string, unknown>[]> {
    return within(
      new Promise((resolve) => {
        const check = () => {
          const lines = this.#text.split("\n");
          if (lines.length <= count) return;
          this.#wake = null;
          resolve(lines.slice(0, count).map((line) => JSON.parse(line)));
        };
        this.#wake = check;
        check();
      }),
      `${count} line(s) from the paho script (so far: ${JSON.stringify(this.#text)})`,
    );
  }

  /** Waits for the script to exit; asserts it succeeded and returns its lines parsed as JSON. */
  async finished(): Promise<Record<string, unknown>[]> {
    const { code } = await within(this.#child.status, "the paho script to exit", 15_000);
    await this.#stdout;
    const stderr = await this.#stderr;
    assert.equal(code, 0, `the paho script failed: ${stderr}`);
    return this.#text.split("\n").filter((line) => line !== "").map((line) => JSON.parse(line));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // already exited
    }
    await this.#child.status;
    await this.#stdout;
    await this.#stderr;
  }
}

// --- mosquitto 5.0 to mosquitto 5.0 ------------------------------------------------------------------------

mosquittoTest(
  "[MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17] mosquitto_pub -V mqttv5 -D publish ...: mosquitto_sub -V mqttv5 prints every property",
  async () => {
    await using broker = await startBroker();
    await using sub = new MosquittoSub([
      ...at(broker),
      "-V",
      "mqttv5",
      "-i",
      "sub5",
      "-q",
      "1",
      "-t",
      "p/#",
      "-F",
      PROPERTIES_FORMAT,
    ]);
    await broker.subscribed("sub5", "p/#");
    const pub = await runMosquittoTool("mosquitto_pub", [
      ...at(broker),
      "-V",
      "mqttv5",
      "-q",
      "1",
      "-t",
      "p/x",
      "-m",
      "hello five",
      ...PUBLISH_PROPERTIES,
    ]);
    assert.equal(pub.code, 0, pub.stderr);
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
    await using sub = new MosquittoSub([
      ...at(broker),
      "-V",
      "mqttv311",
      "-i",
      "sub311",
      "-t",
      "p/#",
      "-F",
      "%t|%C|%P|%p",
    ]);
    await broker.subscribed("sub311", "p/#");
    const pub = await runMosquittoTool("mosquitto_pub", [
      ...at(broker),
      "-V",
      "mqttv5",
      "-t",
      "p/old",
      "-m",
      "plain",
      ...PUBLISH_PROPERTIES,
    ]);
    assert.equal(pub.code, 0, pub.stderr);
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
  const pub = await runMosquittoTool("mosquitto_pub", [
    ...at(broker),
    "-V",
    "mqttv5",
    "-q",
    "1",
    "-t",
    "p/js",
    "-m",
    "to js",
    ...PUBLISH_PROPERTIES,
  ]);
  assert.equal(pub.code, 0, pub.stderr);
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
  await using sub = new MosquittoSub([
    ...at(broker),
    "-V",
    "mqttv5",
    "-i",
    "sub5",
    "-q",
    "2",
    "-t",
    "js/#",
    "-F",
    PROPERTIES_FORMAT,
  ]);
  await broker.subscribed("sub5", "js/#");
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
      broker,
    );
    assert.deepEqual(await paho.lines(2), [{ suback: [1] }, { suback: [0] }]);
    const pub = await runMosquittoTool("mosquitto_pub", [
      ...at(broker),
      "-V",
      "mqttv5",
      "-q",
      "1",
      "-t",
      "i/x",
      "-m",
      "to paho",
      ...PUBLISH_PROPERTIES,
    ]);
    assert.equal(pub.code, 0, pub.stderr);
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
  true,
);

pahoTest(
  "paho MQTTv5 publish properties round trip: to itself, and to mosquitto_sub -V mqttv5",
  async () => {
    await using broker = await startBroker();
    await using sub = new MosquittoSub([
      ...at(broker),
      "-V",
      "mqttv5",
      "-i",
      "sub5",
      "-q",
      "1",
      "-t",
      "rt/#",
      "-F",
      PROPERTIES_FORMAT,
    ]);
    await broker.subscribed("sub5", "rt/#");
    await using paho = new PahoScript(
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
      broker,
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
  true,
);

pahoTest("paho MQTTv5 shared subscription: two members share ten messages, five each", async () => {
  await using broker = await startBroker();
  await using paho = new PahoScript(
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
    broker,
  );
  const lines = await paho.finished();
  const subacks = lines.filter((line) => "suback" in line).map((line) => line.suback);
  assert.deepEqual(subacks, [[1, 1], [1, 1]]);
  const { a, b } = lines.at(-1) as { a: string[]; b: string[] };
  const all = Array.from({ length: 10 }, (_, n) => `job ${n}`);
  assert.deepEqual([...a, ...b].sort(), [...all].sort(), "every message to exactly one member");
  assert.deepEqual([a.length, b.length], [5, 5], "round robin: five each");
});
