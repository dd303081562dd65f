/**
 * Retained messages (MQTT 3.1.1 section 3.3.1.3): storing, replacing and clearing them, sending them on
 * subscribe with RETAIN=1 after SUBACK, live forwarding with RETAIN=0, and limits.max_retained_messages.
 */

import assert from "node:assert/strict";
import type { QoS } from "mqtt-packet";
import { startBroker, type TestBroker } from "./helpers/broker.ts";
import { type Packet, RawClient, summary } from "./helpers/raw.ts";
import { connectMqttJs } from "./helpers/mqttjs.ts";
import { mosquittoTest, runMosquittoTool } from "./helpers/mosquitto.ts";
import { within } from "./helpers/wait.ts";

// --- Local helpers ------------------------------------------------------------------------------------------

/** Publishes retained messages from a short-lived client "retainer", each handled by the broker in turn. */
async function retain(
  broker: TestBroker,
  messages: [topic: string, payload: string, qos?: QoS][],
): Promise<void> {
  await using client = await RawClient.connected(broker.port, { clientId: "retainer" });
  for (const [topic, payload, qos = 0] of messages) {
    await client.publishAcked(topic, payload, { qos, retain: true });
  }
}

/** Publishes as compact strings "topic=payload qos=N retain=B", sorted, for order-free comparison. */
function described(packets: Packet[]): string[] {
  return packets.map((p) => {
    if (p.cmd !== "publish") return JSON.stringify(summary(p));
    return `${p.topic}=${p.payload.toString()} qos=${p.qos} retain=${p.retain}`;
  }).sort();
}

/** A new raw client that subscribes to `filters` and returns the retained messages it got (nothing else). */
async function retainedFor(
  broker: TestBroker,
  filters: [string, QoS][],
  clientId = "late",
): Promise<string[]> {
  await using client = await RawClient.subscriber(broker.port, { clientId }, filters);
  return described(await client.ping());
}

// --- Delivery on subscribe -----------------------------------------------------------------------------------

Deno.test("[MQTT-3.3.1-6, MQTT-3.3.1-8] a new subscriber gets the retained message with RETAIN=1 after SUBACK", async () => {
  await using broker = await startBroker();
  await retain(broker, [["r/t", "kept", 1]]);
  await using sub = await RawClient.connected(broker.port, { clientId: "sub" });
  await sub.send({ cmd: "subscribe", messageId: 3, subscriptions: [{ topic: "r/t", qos: 1 }] });
  assert.equal((await sub.expect("suback")).messageId, 3, "SUBACK comes first");
  const got = await sub.expect("publish");
  assert.deepEqual(described([got]), ["r/t=kept qos=1 retain=true"]);
  assert.equal(got.dup, false);
  assert.notEqual(got.messageId, 0);
});

Deno.test("[MQTT-3.3.1-8] SUBACK precedes the retained messages of every filter in the SUBSCRIBE", async () => {
  await using broker = await startBroker();
  await retain(broker, [["s/1", "one"], ["s/2", "two"]]);
  await using sub = await RawClient.subscriber(broker.port, { clientId: "sub" }, [["s/1", 0], ["s/2", 0]]);
  assert.deepEqual(described(await sub.ping()), [
    "s/1=one qos=0 retain=true",
    "s/2=two qos=0 retain=true",
  ]);
});

Deno.test("[MQTT-3.3.1-5] a newer retained message replaces the old one", async () => {
  await using broker = await startBroker();
  await retain(broker, [["r/t", "old", 1], ["r/t", "new", 1]]);
  assert.deepEqual(await retainedFor(broker, [["r/t", 1]]), ["r/t=new qos=1 retain=true"]);
});

Deno.test("[MQTT-3.3.1-12] a PUBLISH with RETAIN=0 neither replaces nor removes the retained message", async () => {
  await using broker = await startBroker();
  await retain(broker, [["r/t", "kept"]]);
  await using pub = await RawClient.connected(broker.port, { clientId: "pub" });
  await pub.publishAcked("r/t", "live only", { qos: 1 });
  await pub.publishAcked("r/t", "", { qos: 1 });
  assert.deepEqual(await retainedFor(broker, [["r/t", 0]]), ["r/t=kept qos=0 retain=true"]);
});

Deno.test("[MQTT-3.3.1-7] a QoS 0 retained message is stored and replaces a QoS 2 one", async () => {
  await using broker = await startBroker();
  await retain(broker, [["r/t", "two", 2], ["r/t", "zero", 0]]);
  assert.deepEqual(await retainedFor(broker, [["r/t", 2]]), ["r/t=zero qos=0 retain=true"]);
  // MQTT.js sees the same message, flagged retained.
  await using js = await connectMqttJs(broker.port, { clientId: "mqttjs-sub" });
  await within(js.mqtt.subscribeAsync("r/t", { qos: 2 }), "MQTT.js SUBACK");
  const [got] = await js.received(1);
  assert.deepEqual(got, { topic: "r/t", payload: "zero", qos: 0, retain: true, dup: false });
});

// --- Clearing -----------------------------------------------------------------------------------------------

Deno.test("[MQTT-3.3.1-10, MQTT-3.3.1-11] an empty retained payload clears the topic for later subscribers", async () => {
  await using broker = await startBroker();
  await retain(broker, [["r/t", "soon gone", 1], ["r/keep", "stays", 1]]);
  await retain(broker, [["r/t", "", 1]]);
  assert.deepEqual(await retainedFor(broker, [["r/#", 1]]), ["r/keep=stays qos=1 retain=true"]);
});

Deno.test("[MQTT-3.3.1-10] an empty retained payload still reaches current subscribers, with RETAIN=0", async () => {
  await using broker = await startBroker();
  await retain(broker, [["r/t", "soon gone"]]);
  await using sub = await RawClient.subscriber(broker.port, { clientId: "sub" }, [["r/t", 1]]);
  assert.deepEqual(described([await sub.next()]), ["r/t=soon gone qos=0 retain=true"]);
  await retain(broker, [["r/t", "", 1]]);
  const got = await sub.expect("publish");
  assert.equal(got.topic, "r/t");
  assert.equal(got.payload.length, 0);
  assert.equal(got.retain, false);
  assert.equal(got.qos, 1);
});

// --- QoS and flags ----------------------------------------------------------------------------------------------

for (
  const [stored, granted] of [
    [2, 1],
    [1, 2],
    [2, 0],
    [1, 1],
  ] as const
) {
  const delivered = Math.min(stored, granted);
  Deno.test(
    `[MQTT-3.3.1-8, MQTT-3.8.4-6] retained QoS ${stored} to a QoS ${granted} subscription arrives at QoS ${delivered}`,
    async () => {
      await using broker = await startBroker();
      await retain(broker, [["q/t", "r", stored]]);
      assert.deepEqual(await retainedFor(broker, [["q/t", granted]]), [`q/t=r qos=${delivered} retain=true`]);
    },
  );
}

Deno.test("[MQTT-3.3.1-9] live forwarding carries RETAIN=0 even when published with RETAIN=1", async () => {
  await using broker = await startBroker();
  await using sub = await RawClient.subscriber(broker.port, { clientId: "sub" }, [["live/#", 2]]);
  for (const qos of [0, 1, 2] as const) {
    await retain(broker, [[`live/${qos}`, `q${qos}`, qos]]);
    const got = await sub.expect("publish");
    assert.deepEqual(described([got]), [`live/${qos}=q${qos} qos=${qos} retain=false`]);
    if (qos === 1) await sub.send({ cmd: "puback", messageId: got.messageId });
    if (qos === 2) await sub.send({ cmd: "pubrec", messageId: got.messageId });
    if (qos === 2) await sub.expect("pubrel");
  }
  // Yet it was retained: a new subscriber gets it with RETAIN=1.
  assert.deepEqual(await retainedFor(broker, [["live/2", 2]]), ["live/2=q2 qos=2 retain=true"]);
});

// --- Wildcards and resubscribing -------------------------------------------------------------------------------

Deno.test("[MQTT-3.3.1-6] a wildcard subscription gets every matching retained topic", async () => {
  await using broker = await startBroker();
  await retain(broker, [["w", "w"], ["w/a", "a"], ["w/a/b", "ab"], ["w/c", "c"], ["x/a", "other"]]);
  assert.deepEqual(await retainedFor(broker, [["w/#", 0]]), [
    "w/a/b=ab qos=0 retain=true",
    "w/a=a qos=0 retain=true",
    "w/c=c qos=0 retain=true",
    "w=w qos=0 retain=true",
  ]);
  assert.deepEqual(await retainedFor(broker, [["+/a", 0]]), [
    "w/a=a qos=0 retain=true",
    "x/a=other qos=0 retain=true",
  ]);
});

Deno.test('[MQTT-4.7.2-1] "#" and "+/..." do not get retained "$" topics; "$app/#" does', async () => {
  await using broker = await startBroker();
  await retain(broker, [["$app/x", "dollar"], ["app/x", "plain"]]);
  assert.deepEqual(await retainedFor(broker, [["#", 0]]), ["app/x=plain qos=0 retain=true"]);
  assert.deepEqual(await retainedFor(broker, [["+/x", 0]]), ["app/x=plain qos=0 retain=true"]);
  assert.deepEqual(await retainedFor(broker, [["$app/#", 0]]), ["$app/x=dollar qos=0 retain=true"]);
});

Deno.test("[MQTT-3.8.4-3] subscribing again to the same filter re-sends the retained messages", async () => {
  await using broker = await startBroker();
  await retain(broker, [["again", "retained", 2]]);
  await using sub = await RawClient.connected(broker.port, { clientId: "sub" });
  assert.deepEqual(await sub.subscribe([["again", 0]], { messageId: 1 }), [0]);
  assert.deepEqual(described(await sub.ping()), ["again=retained qos=0 retain=true"]);
  assert.deepEqual(await sub.subscribe([["again", 1]], { messageId: 2 }), [1]);
  assert.deepEqual(described(await sub.ping()), ["again=retained qos=1 retain=true"]);
});

// --- limits.max_retained_messages ---------------------------------------------------------------------------------

Deno.test("limits.max_retained_messages refuses a new topic, counts it, and still replaces stored ones", async () => {
  await using broker = await startBroker({ limits: { max_retained_messages: 2 } });
  await retain(broker, [["lim/a", "a1", 1], ["lim/b", "b1", 1]]);
  assert.equal(broker.server.metrics.retainedRefused, 0);
  await retain(broker, [["lim/c", "c1", 1]]);
  assert.equal(broker.server.metrics.retainedRefused, 1);
  // "lim" is a new topic too, though it is a prefix of stored ones.
  await retain(broker, [["lim", "parent", 1]]);
  assert.equal(broker.server.metrics.retainedRefused, 2);
  await retain(broker, [["lim/a", "a2", 1]]);
  assert.equal(broker.server.metrics.retainedRefused, 2);
  assert.deepEqual(await retainedFor(broker, [["lim/#", 1]]), [
    "lim/a=a2 qos=1 retain=true",
    "lim/b=b1 qos=1 retain=true",
  ]);
  // Clearing a topic makes room for a new one.
  await retain(broker, [["lim/b", ""], ["lim/c", "c2"]]);
  assert.deepEqual(await retainedFor(broker, [["lim/#", 0]]), [
    "lim/a=a2 qos=0 retain=true",
    "lim/c=c2 qos=0 retain=true",
  ]);
  assert.equal(broker.server.metrics.retainedRefused, 2);
});

Deno.test("a message refused by limits.max_retained_messages is still delivered to current subscribers", async () => {
  await using broker = await startBroker({ limits: { max_retained_messages: 1 } });
  await using sub = await RawClient.subscriber(broker.port, { clientId: "sub" }, [["full/#", 0]]);
  await retain(broker, [["full/a", "stored"], ["full/b", "refused"]]);
  assert.deepEqual(described([await sub.next(), await sub.next()]), [
    "full/a=stored qos=0 retain=false",
    "full/b=refused qos=0 retain=false",
  ]);
  assert.equal(broker.server.metrics.retainedRefused, 1);
});

// --- Real clients ---------------------------------------------------------------------------------------------

mosquittoTest(
  "mosquitto_pub -r stores a message that a later mosquitto_sub receives as retained",
  async () => {
    await using broker = await startBroker();
    const port = String(broker.port);
    const pub = await runMosquittoTool("mosquitto_pub", [
      ...["-p", port, "-i", "mosq-pub", "-q", "1", "-r", "-t", "mosq/r", "-m", "retained by mosquitto"],
    ]);
    assert.equal(pub.code, 0, pub.stderr);
    const sub = await runMosquittoTool("mosquitto_sub", [
      ...[
        "-p",
        port,
        "-i",
        "mosq-sub",
        "-q",
        "1",
        "-t",
        "mosq/#",
        "-C",
        "1",
        "-W",
        "10",
        "-F",
        "%t|%r|%q|%p",
      ],
    ]);
    assert.equal(sub.code, 0, sub.stderr);
    assert.equal(sub.stdout, "mosq/r|1|1|retained by mosquitto\n");
  },
);
