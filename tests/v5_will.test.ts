/**
 * MQTT 5.0 will messages (sections 3.1.2.5, 3.1.3.2 and 3.1.3.3): the Will Delay Interval (published after
 * it, cancelled by a reconnection in time, brought forward by the end of the session), the will properties
 * forwarded to 5.0 subscribers in order, and 3.1.1 subscribers getting a 5.0 will without them.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { IConnackPacket, IConnectPacket, IPublishPacket } from "mqtt-packet";
import { startBroker, type TestBroker } from "./helpers/broker.ts";
import { frame, u16, utf8, varInt } from "./helpers/bytes.ts";
import { connectMqttJs } from "./helpers/mqttjs.ts";
import { RawClient } from "./helpers/raw.ts";
import { until, within } from "./helpers/wait.ts";

// --- Local helpers ------------------------------------------------------------------------------------------

type QoS = 0 | 1 | 2;
type Will = NonNullable<IConnectPacket["will"]>;
type WillProperties = NonNullable<Will["properties"]>;

/** A raw MQTT 5.0 client and the CONNACK it got. */
type Connected5 = RawClient & { readonly connack: IConnackPacket };

/** A raw 5.0 client whose CONNECT (`fields` over a Clean Start 1 CONNECT) was accepted. */
async function connect5(port: number, fields: Partial<IConnectPacket> = {}): Promise<Connected5> {
  const client = await RawClient.open(port, 5);
  try {
    const connack = await client.connect({ protocolVersion: 5, ...fields });
    assert.equal(connack.reasonCode, 0, `CONNACK ${JSON.stringify(connack)}`);
    return Object.assign(client, { connack });
  } catch (error) {
    await client.close();
    throw error;
  }
}

function will(topic: string, payload: string, properties?: WillProperties, qos: QoS = 0): Will {
  return { topic, payload: Buffer.from(payload), qos, retain: false, properties };
}

/** A raw client (5.0 unless `version` says) subscribed to `filter` to see wills arrive. */
async function watcher(broker: TestBroker, filter = "will/#", version: 4 | 5 = 5): Promise<RawClient> {
  const client = version === 5
    ? await connect5(broker.port, { clientId: "watcher" })
    : await RawClient.connected(broker.port, { clientId: "watcher" });
  try {
    assert.deepEqual(await client.subscribe([[filter, 0]]), [0]);
    return client;
  } catch (error) {
    await client.close();
    throw error;
  }
}

/** `clientId` connects with a persistent session (`sessionExpiryInterval`) and `w` as its will. */
function owner(broker: TestBroker, clientId: string, sessionExpiryInterval: number, w: Will) {
  return connect5(broker.port, {
    clientId,
    clean: true,
    properties: sessionExpiryInterval > 0 ? { sessionExpiryInterval } : undefined,
    will: w,
  });
}

/** Closes `client`'s socket without DISCONNECT and waits until the broker has detached its session. */
async function drop(broker: TestBroker, client: RawClient, clientId: string): Promise<void> {
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

/** A 32-bit integer property, for hand-made packets. */
function propU32(id: number, value: number): number[] {
  return [id, (value >>> 24) & 0xff, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff];
}

/** A User Property (0x26) for hand-made packets. */
function userProperty(name: string, value: string): number[] {
  return [0x26, ...utf8(name), ...utf8(value)];
}

/**
 * A 5.0 CONNECT written byte by byte (Clean Start 1, keep-alive 0, no properties) with a QoS 0 will whose
 * properties are exactly `willProperties`: mqtt-packet groups User Properties by name, so it cannot send
 * them interleaved.
 */
function connectWithWillBytes(clientId: string, topic: string, payload: string, willProperties: number[]) {
  return frame(0x10, [
    ...utf8("MQTT"),
    5,
    0x02 | 0x04,
    ...u16(0),
    0,
    ...utf8(clientId),
    ...varInt(willProperties.length),
    ...willProperties,
    ...utf8(topic),
    ...utf8(payload),
  ]);
}

/** The Python with paho-mqtt (Debian's python3-paho-mqtt); a pyenv python3 earlier on PATH may lack it. */
const PYTHON = (() => {
  try {
    return Deno.statSync("/usr/bin/python3").isFile ? "/usr/bin/python3" : "python3";
  } catch {
    return "python3";
  }
})();

/**
 * A Python paho (MQTT 5.0) subscriber to argv[2]: prints READY once subscribed, then one JSON line per
 * message with its properties (User Properties as a list of pairs, in the order received), and exits after
 * argv[3] messages.
 */
const PAHO_SUBSCRIBER = `
import json, sys
import paho.mqtt.client as mqtt
port, topic, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
client = mqtt.Client(client_id="paho-sub", protocol=mqtt.MQTTv5)
seen = []
def on_connect(client, userdata, flags, rc, props):
    if rc.value != 0:
        print("REFUSED", rc.value, flush=True)
        sys.exit(1)
    client.subscribe(topic, qos=1)
def on_subscribe(client, userdata, mid, rcs, props):
    print("READY", flush=True)
def on_message(client, userdata, msg):
    p = msg.properties
    corr = getattr(p, "CorrelationData", None)
    print(json.dumps({
        "topic": msg.topic,
        "payload": msg.payload.decode(),
        "user": [list(pair) for pair in getattr(p, "UserProperty", [])],
        "contentType": getattr(p, "ContentType", None),
        "responseTopic": getattr(p, "ResponseTopic", None),
        "correlationData": corr.hex() if corr is not None else None,
        "payloadFormat": getattr(p, "PayloadFormatIndicator", None),
        "expiry": getattr(p, "MessageExpiryInterval", None),
    }), flush=True)
    seen.append(msg)
    if len(seen) >= count:
        client.disconnect()
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.connect("127.0.0.1", port, keepalive=30)
client.loop_forever()
`;

/** A Python child process whose stdout is read line by line as it prints; disposing kills it if still running. */
class PahoProcess implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #stdout: Promise<void>;
  readonly #stderr: Promise<string>;
  #text = "";

  constructor(script: string, args: string[]) {
    const child = new Deno.Command(PYTHON, {
      args: ["-c", script, ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    this.#stdout = (async () => {
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) this.#text += chunk;
    })();
    this.#stderr = new Response(child.stderr).text();
  }

  /** Waits until `count` whole lines have been printed and returns them. */
  async lines(count: number): Promise<string[]> {
    await until(
      () => this.#text.split("\n").length > count,
      `${count} line(s) from paho (so far: ${this.#text})`,
    );
    return this.#text.split("\n").slice(0, count);
  }

  /** Waits for the process to exit by itself; asserts exit code 0. */
  async finished(): Promise<void> {
    const { code } = await within(this.#child.status, "paho to exit");
    assert.equal(code, 0, `paho failed: ${await this.#stderr}`);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // already exited
    }
    await this.#child.status;
    await this.#stdout;
    await this.#stderr;
  }
}

// --- Will Delay Interval ------------------------------------------------------------------------------------

Deno.test("[MQTT-3.1.2-8] (3.1.3.2.2) the will is published once the Will Delay Interval has passed, not at once", async () => {
  await using broker = await startBroker();
  await using watch = await watcher(broker);
  await using client = await owner(
    broker,
    "delayed",
    60,
    will("will/delayed", "late", { willDelayInterval: 1 }),
  );
  await drop(broker, client, "delayed");
  // The connection is gone, but for one more second the will is not: a marker sent now arrives first.
  await assertNothingBefore(watch);
  const got = await watch.expectPublish("will/delayed", "late", 0, 3000);
  assert.equal(got.retain, false);
  // The session (60 s) outlives the delay: only the will went.
  assert.notEqual(broker.server.broker.sessions.get("delayed"), undefined);
});

Deno.test("[MQTT-3.1.3-9] reconnecting to the session within the Will Delay Interval cancels the will", async () => {
  await using broker = await startBroker();
  await using watch = await watcher(broker);
  await using returning = await owner(
    broker,
    "returning",
    60,
    will("will/returning", "x", { willDelayInterval: 1 }),
  );
  await drop(broker, returning, "returning");
  // The control's will, due after the returning client's, is published: it shows the delay has passed.
  await using control = await owner(
    broker,
    "control",
    60,
    will("will/control", "control", { willDelayInterval: 1 }),
  );
  await drop(broker, control, "control");
  await using back = await connect5(broker.port, {
    clientId: "returning",
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
  await using first = await owner(
    broker,
    "restarter",
    60,
    will("will/restarter", "old session", { willDelayInterval: 60 }),
  );
  await drop(broker, first, "restarter");
  await assertNothingBefore(watch);
  await using fresh = await connect5(broker.port, { clientId: "restarter", clean: true });
  assert.equal(fresh.connack.sessionPresent, false);
  await watch.expectPublish("will/restarter", "old session", 0);
});

Deno.test("[MQTT-3.1.2-8] Session Expiry Interval shorter than the Will Delay Interval: the will goes when the session ends", async () => {
  await using broker = await startBroker();
  await using watch = await watcher(broker);
  await using client = await owner(
    broker,
    "short",
    1,
    will("will/short", "session over", { willDelayInterval: 60 }),
  );
  await drop(broker, client, "short");
  await watch.expectPublish("will/short", "session over", 0, 4000);
  await until(() => broker.server.broker.sessions.get("short") === undefined, "the session to end");
});

Deno.test("[MQTT-3.1.2-8] no Session Expiry Interval: a will with a Will Delay Interval goes when the connection ends", async () => {
  await using broker = await startBroker();
  await using watch = await watcher(broker);
  await using client = await owner(
    broker,
    "no-session",
    0,
    will("will/no-session", "at once", { willDelayInterval: 60 }),
  );
  await client.close();
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

Deno.test("(3.1.3.2.8) will User Properties reach a paho subscriber in the order they were sent, interleaved names included", async () => {
  await using broker = await startBroker();
  await using paho = new PahoProcess(PAHO_SUBSCRIBER, [String(broker.port), "will/#", "1"]);
  assert.deepEqual(await paho.lines(1), ["READY"]);
  const pairs: [string, string][] = [["k", "1"], ["j", "2"], ["k", "3"], ["k", "1"], ["a", ""]];
  const properties = [
    ...[0x03, ...utf8("application/json")],
    ...pairs.flatMap(([name, value]) => userProperty(name, value)),
    ...[0x08, ...utf8("reply/here")],
    ...[0x09, ...u16(2), 0xca, 0xfe],
    ...propU32(0x02, 120),
  ];
  await using client = await RawClient.open(broker.port, 5);
  await client.sendBytes(connectWithWillBytes("ordered", "will/ordered", "{}", properties));
  assert.equal((await client.expect("connack")).reasonCode, 0);
  await client.close();
  const [, line] = await paho.lines(2);
  const got = JSON.parse(line);
  assert.deepEqual([got.topic, got.payload], ["will/ordered", "{}"]);
  assert.deepEqual(got.user, pairs);
  assert.equal(got.contentType, "application/json");
  assert.equal(got.responseTopic, "reply/here");
  assert.equal(got.correlationData, "cafe");
  assert.ok(got.expiry > 0 && got.expiry <= 120, `Message Expiry Interval ${got.expiry}`);
  await paho.finished();
});

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
