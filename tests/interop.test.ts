/**
 * Real clients together: Debian's mosquitto_pub / mosquitto_sub and MQTT.js, talking to each other through
 * the broker, as users run them.
 */

import assert from "node:assert/strict";
import { startBroker } from "./helpers/broker.ts";
import { connectMqttJs } from "./helpers/mqttjs.ts";
import { at, MosquittoSub, mosquittoTest, runMosquittoTool } from "./helpers/mosquitto.ts";

// --- mosquitto to mosquitto -------------------------------------------------------------------------------

mosquittoTest(
  "README done-when: `mosquitto_sub -t '#' -v` receives what `mosquitto_pub -q 2 -t a/b -m hi` sends",
  async () => {
    await using broker = await startBroker();
    await using sub = new MosquittoSub([...at(broker), "-t", "#", "-v"]);
    await broker.subscribed(null, "#");
    const pub = await runMosquittoTool("mosquitto_pub", [...at(broker), "-q", "2", "-t", "a/b", "-m", "hi"]);
    assert.equal(pub.code, 0, pub.stderr);
    assert.deepEqual(await sub.lines(1), ["a/b hi"]);
  },
);

for (const version of ["mqttv31", "mqttv311"]) {
  mosquittoTest(`mosquitto_pub -V ${version} -q 1 is accepted and its message delivered`, async () => {
    await using broker = await startBroker();
    await using sub = await connectMqttJs(broker.port, { clientId: "listener" });
    await sub.mqtt.subscribeAsync("v/#", { qos: 1 });
    const pub = await runMosquittoTool("mosquitto_pub", [
      ...at(broker),
      "-V",
      version,
      "-i",
      `pub-${version}`,
      "-q",
      "1",
      "-t",
      `v/${version}`,
      "-m",
      `hello ${version}`,
    ]);
    assert.equal(pub.code, 0, pub.stderr);
    const [message] = await sub.received(1);
    assert.deepEqual([message.topic, message.payload, message.qos], [`v/${version}`, `hello ${version}`, 1]);
    const protocol = version === "mqttv31" ? "MQTT 3.1" : "MQTT 3.1.1";
    assert.ok(
      broker.logs.some((l) =>
        l.includes(`client "pub-${version}" connected from`) && l.includes(`(${protocol},`)
      ),
      `expected a ${protocol} connect line`,
    );
  });
}

mosquittoTest(
  "mosquitto_pub -V mqttv31 without -i gets an MQTT 3.1 client id the broker accepts",
  async () => {
    await using broker = await startBroker();
    await using sub = await connectMqttJs(broker.port);
    await sub.mqtt.subscribeAsync("v31", { qos: 0 });
    const pub = await runMosquittoTool("mosquitto_pub", [
      ...at(broker),
      "-V",
      "mqttv31",
      "-t",
      "v31",
      "-m",
      "x",
    ]);
    assert.equal(pub.code, 0, pub.stderr);
    assert.equal((await sub.received(1))[0].payload, "x");
  },
);

mosquittoTest("mosquitto_sub -V mqttv31 receives a QoS 2 message from mosquitto_pub -V mqttv31", async () => {
  await using broker = await startBroker();
  await using sub = await MosquittoSub.subscribed(broker, "sub31", "old/#", [
    "-V",
    "mqttv31",
    "-q",
    "2",
    "-F",
    "%q %t %p",
  ]);
  const pub = await runMosquittoTool("mosquitto_pub", [
    ...at(broker),
    "-V",
    "mqttv31",
    "-q",
    "2",
    "-t",
    "old/x",
    "-m",
    "v3",
  ]);
  assert.equal(pub.code, 0, pub.stderr);
  assert.deepEqual(await sub.lines(1), ["2 old/x v3"]);
});

mosquittoTest(
  "[MQTT-3.1.2-4] mosquitto_sub -c -i (persistent) receives QoS 1 messages sent while it was down",
  async () => {
    await using broker = await startBroker();
    const args = [...at(broker), "-c", "-i", "persist-sub", "-q", "1", "-t", "p/t", "-v", "-W", "5"];
    // First run: create the persistent session, receive one message, disconnect.
    await using first = new MosquittoSub([...args, "-C", "1"]);
    await broker.subscribed("persist-sub", "p/t");
    const live = await runMosquittoTool("mosquitto_pub", [
      ...at(broker),
      "-q",
      "1",
      "-t",
      "p/t",
      "-m",
      "live",
    ]);
    assert.equal(live.code, 0, live.stderr);
    const firstOut = await first.finished();
    assert.equal(firstOut.stdout, "p/t live\n");
    await broker.offline("persist-sub");

    for (const n of [1, 2, 3]) {
      const pub = await runMosquittoTool("mosquitto_pub", [
        ...at(broker),
        "-q",
        "1",
        "-t",
        "p/t",
        "-m",
        `offline ${n}`,
      ]);
      assert.equal(pub.code, 0, pub.stderr);
    }
    const second = await runMosquittoTool("mosquitto_sub", [...args, "-C", "3"]);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.stdout, "p/t offline 1\np/t offline 2\np/t offline 3\n");
    assert.ok(broker.logs.some((l) => l.includes(`client "persist-sub"`) && l.includes("resumed session")));
  },
);

// --- mosquitto and MQTT.js --------------------------------------------------------------------------------

mosquittoTest(
  "[MQTT-3.3.1-8] mosquitto_pub -r: a later MQTT.js subscriber gets the retained message with RETAIN=1",
  async () => {
    await using broker = await startBroker();
    const pub = await runMosquittoTool("mosquitto_pub", [
      ...at(broker),
      "-r",
      "-q",
      "1",
      "-t",
      "r/status",
      "-m",
      "on",
    ]);
    assert.equal(pub.code, 0, pub.stderr);
    await using sub = await connectMqttJs(broker.port);
    await sub.mqtt.subscribeAsync("r/#", { qos: 1 });
    const [message] = await sub.received(1);
    assert.deepEqual(message, { topic: "r/status", payload: "on", qos: 1, retain: true, dup: false });
  },
);

mosquittoTest(
  "[MQTT-3.3.1-10] mosquitto_pub -r -n clears a retained message for later MQTT.js subscribers",
  async () => {
    await using broker = await startBroker();
    for (const [topic, message] of [["r/a", "first"], ["r/b", "kept"]]) {
      const pub = await runMosquittoTool("mosquitto_pub", [...at(broker), "-r", "-t", topic, "-m", message]);
      assert.equal(pub.code, 0, pub.stderr);
    }
    const clear = await runMosquittoTool("mosquitto_pub", [...at(broker), "-r", "-n", "-t", "r/a"]);
    assert.equal(clear.code, 0, clear.stderr);
    await using sub = await connectMqttJs(broker.port);
    await sub.mqtt.subscribeAsync("r/#", { qos: 0 });
    // Retained messages come right after SUBACK; a later live message is the barrier.
    await sub.mqtt.publishAsync("r/live", "barrier", { qos: 1 });
    const messages = await sub.received(2);
    assert.deepEqual(messages.map((m) => [m.topic, m.payload, m.retain]), [["r/b", "kept", true], [
      "r/live",
      "barrier",
      false,
    ]]);
  },
);

for (const qos of [0, 1, 2] as const) {
  mosquittoTest(`MQTT.js QoS ${qos} publish reaches mosquitto_sub -q 2 (-v output)`, async () => {
    await using broker = await startBroker();
    await using sub = await MosquittoSub.subscribed(broker, "mq-sub", "js/#", ["-q", "2", "-v"]);
    await using pub = await connectMqttJs(broker.port, { clientId: "js-pub" });
    await pub.mqtt.publishAsync(`js/qos${qos}`, `payload at qos ${qos}`, { qos });
    assert.deepEqual(await sub.lines(1), [`js/qos${qos} payload at qos ${qos}`]);
  });
}

mosquittoTest(
  "[MQTT-3.8.4-6] delivered QoS is min(published, granted): mosquitto_sub -q 1 sees QoS 0, 1, 1",
  async () => {
    await using broker = await startBroker();
    await using sub = await MosquittoSub.subscribed(broker, "q1-sub", "js/#", ["-q", "1", "-F", "%q %t"]);
    await using pub = await connectMqttJs(broker.port, { clientId: "js-pub" });
    // One topic, so the broker keeps publish order on the way out.
    for (const qos of [0, 1, 2] as const) await pub.mqtt.publishAsync("js/t", `q${qos}`, { qos });
    assert.deepEqual(await sub.lines(3), ["0 js/t", "1 js/t", "1 js/t"]);
  },
);

mosquittoTest(
  "[MQTT-4.6.0-6] mosquitto_pub -l sends 100 stdin lines that an MQTT.js QoS 1 subscriber gets in order",
  async () => {
    await using broker = await startBroker();
    await using sub = await connectMqttJs(broker.port, { clientId: "js-sub" });
    await sub.mqtt.subscribeAsync("lines", { qos: 1 });
    const lines = Array.from({ length: 100 }, (_, i) => `line ${i + 1}`);
    const pub = await runMosquittoTool("mosquitto_pub", [...at(broker), "-l", "-q", "1", "-t", "lines"], {
      stdin: lines.join("\n") + "\n",
    });
    assert.equal(pub.code, 0, pub.stderr);
    const messages = await sub.received(100);
    assert.deepEqual(messages.map((m) => m.payload), lines);
    assert.ok(messages.every((m) => m.topic === "lines" && m.qos === 1));
  },
);

mosquittoTest(
  "[MQTT-3.1.2-8] mosquitto_sub --will-topic killed with SIGKILL: its will reaches another client",
  async () => {
    await using broker = await startBroker();
    await using watcher = await connectMqttJs(broker.port, { clientId: "watcher" });
    await watcher.mqtt.subscribeAsync("w", { qos: 1 });
    await using doomed = await MosquittoSub.subscribed(broker, "doomed", "anything", [
      ...["--will-topic", "w", "--will-payload", "gone"],
    ]);
    assert.equal(watcher.messages.length, 0);
    doomed.kill("SIGKILL");
    assert.equal((await doomed.status).signal, "SIGKILL");
    const [will] = await watcher.received(1);
    assert.deepEqual([will.topic, will.payload, will.qos, will.retain], ["w", "gone", 0, false]);
  },
);

mosquittoTest(
  "[MQTT-3.14.4-3] mosquitto_sub --will-topic ending normally (-C 1 sends DISCONNECT): no will",
  async () => {
    await using broker = await startBroker();
    await using watcher = await connectMqttJs(broker.port, { clientId: "watcher" });
    await watcher.mqtt.subscribeAsync("w", { qos: 1 });
    await watcher.mqtt.subscribeAsync("done", { qos: 1 });
    await using child = await MosquittoSub.subscribed(broker, "polite", "done", [
      ...["-C", "1", "-W", "5", "--will-topic", "w", "--will-payload", "gone"],
    ]);
    await watcher.mqtt.publishAsync("done", "bye", { qos: 1 });
    const output = await child.finished();
    assert.equal(output.code, 0, output.stderr);
    await broker.disconnected("polite", "client sent DISCONNECT");
    // Barrier: a message published after the close arrives, and no will came before it.
    await watcher.mqtt.publishAsync("w", "barrier", { qos: 1 });
    const messages = await watcher.received(2);
    assert.deepEqual(messages.map((m) => [m.topic, m.payload]), [["done", "bye"], ["w", "barrier"]]);
  },
);
