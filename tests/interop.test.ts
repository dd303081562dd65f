/**
 * Real clients together: Debian's mosquitto_pub / mosquitto_sub and MQTT.js, talking to each other through
 * the broker, as users run them.
 */

import assert from "node:assert/strict";
import { startBroker, type TestBroker } from "./helpers/broker.ts";
import { connectMqttJs } from "./helpers/mqttjs.ts";
import { runMosquittoTool, spawnMosquittoTool, type ToolResult } from "./helpers/mosquitto.ts";
import { until, within } from "./helpers/wait.ts";

// --- Local helpers ----------------------------------------------------------------------------------------

const decoder = new TextDecoder();

/** The broker's address arguments for a mosquitto tool. */
const at = (broker: TestBroker) => ["-h", "127.0.0.1", "-p", String(broker.port)];

/** Waits until the session `clientId` holds a subscription to `filter` (mosquitto_sub shows no SUBACK). */
function subscribed(broker: TestBroker, clientId: string, filter: string): Promise<void> {
  return until(
    () => broker.server.broker.sessions.get(clientId)?.subscriptions.has(filter) === true,
    `${clientId} to subscribe to ${filter}`,
  );
}

/** mosquitto_pub with `input` on its stdin (the helper's tools get no stdin), killed if it outlives `ms`. */
async function runWithStdin(args: string[], input: string, ms = 10_000): Promise<ToolResult> {
  const child = new Deno.Command("mosquitto_pub", { args, stdin: "piped", stdout: "piped", stderr: "piped" })
    .spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), ms);
  try {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(input));
    await writer.close();
    const output = await child.output();
    return {
      code: output.code,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A long-running mosquitto_sub whose stdout is read as it prints; `lines(n)` waits for n lines. Disposing
 * kills it (SIGTERM) and waits for it to exit.
 */
class LiveSubscriber implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #reading: Promise<void>;
  #text = "";
  #wake: (() => void) | null = null;

  constructor(args: string[]) {
    this.#child = spawnMosquittoTool("mosquitto_sub", args);
    this.#reading = this.#read();
  }

  lines(count: number): Promise<string[]> {
    const done = () => this.#text.split("\n").length > count;
    return within(
      new Promise<string[]>((resolve) => {
        const check = () => {
          if (!done()) return;
          this.#wake = null;
          resolve(this.#text.split("\n").slice(0, count));
        };
        this.#wake = check;
        check();
      }),
      `${count} line(s) from mosquitto_sub (so far: ${JSON.stringify(this.#text)})`,
    );
  }

  kill(signal: Deno.Signal): void {
    try {
      this.#child.kill(signal);
    } catch {
      // already exited
    }
  }

  get status(): Promise<Deno.CommandStatus> {
    return this.#child.status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.kill("SIGTERM");
    await this.#child.status;
    await this.#reading;
  }

  async #read(): Promise<void> {
    for await (const chunk of this.#child.stdout.pipeThrough(new TextDecoderStream())) {
      this.#text += chunk;
      this.#wake?.();
    }
    await this.#child.stderr.cancel();
  }
}

// --- mosquitto to mosquitto -------------------------------------------------------------------------------

Deno.test("README done-when: `mosquitto_sub -t '#' -v` receives what `mosquitto_pub -q 2 -t a/b -m hi` sends", async () => {
  await using broker = startBroker();
  await using sub = new LiveSubscriber([...at(broker), "-t", "#", "-v"]);
  await until(
    () => [...broker.server.broker.sessions.values()].some((s) => s.subscriptions.has("#")),
    "mosquitto_sub to subscribe to #",
  );
  const pub = await runMosquittoTool("mosquitto_pub", [...at(broker), "-q", "2", "-t", "a/b", "-m", "hi"]);
  assert.equal(pub.code, 0, pub.stderr);
  assert.deepEqual(await sub.lines(1), ["a/b hi"]);
});

for (const version of ["mqttv31", "mqttv311"]) {
  Deno.test(`mosquitto_pub -V ${version} -q 1 is accepted and its message delivered`, async () => {
    await using broker = startBroker();
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

Deno.test("mosquitto_pub -V mqttv31 without -i gets an MQTT 3.1 client id the broker accepts", async () => {
  await using broker = startBroker();
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
});

Deno.test("mosquitto_sub -V mqttv31 receives a QoS 2 message from mosquitto_pub -V mqttv31", async () => {
  await using broker = startBroker();
  await using sub = new LiveSubscriber([
    ...at(broker),
    "-V",
    "mqttv31",
    "-i",
    "sub31",
    "-q",
    "2",
    "-t",
    "old/#",
    "-F",
    "%q %t %p",
  ]);
  await subscribed(broker, "sub31", "old/#");
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

Deno.test("[MQTT-3.1.2-4] mosquitto_sub -c -i (persistent) receives QoS 1 messages sent while it was down", async () => {
  await using broker = startBroker();
  const args = [...at(broker), "-c", "-i", "persist-sub", "-q", "1", "-t", "p/t", "-v", "-W", "5"];
  // First run: create the persistent session, receive one message, disconnect.
  const first = spawnMosquittoTool("mosquitto_sub", [...args, "-C", "1"]);
  await subscribed(broker, "persist-sub", "p/t");
  const live = await runMosquittoTool("mosquitto_pub", [...at(broker), "-q", "1", "-t", "p/t", "-m", "live"]);
  assert.equal(live.code, 0, live.stderr);
  const firstOut = await first.output();
  assert.equal(decoder.decode(firstOut.stdout), "p/t live\n");
  await until(
    () => broker.server.broker.sessions.get("persist-sub")?.outlet === null,
    "the session to go offline",
  );

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
});

// --- mosquitto and MQTT.js --------------------------------------------------------------------------------

Deno.test("[MQTT-3.3.1-8] mosquitto_pub -r: a later MQTT.js subscriber gets the retained message with RETAIN=1", async () => {
  await using broker = startBroker();
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
});

Deno.test("[MQTT-3.3.1-10] mosquitto_pub -r -n clears a retained message for later MQTT.js subscribers", async () => {
  await using broker = startBroker();
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
});

for (const qos of [0, 1, 2] as const) {
  Deno.test(`MQTT.js QoS ${qos} publish reaches mosquitto_sub -q 2 (-v output)`, async () => {
    await using broker = startBroker();
    await using sub = new LiveSubscriber([...at(broker), "-i", "mq-sub", "-q", "2", "-t", "js/#", "-v"]);
    await subscribed(broker, "mq-sub", "js/#");
    await using pub = await connectMqttJs(broker.port, { clientId: "js-pub" });
    await pub.mqtt.publishAsync(`js/qos${qos}`, `payload at qos ${qos}`, { qos });
    assert.deepEqual(await sub.lines(1), [`js/qos${qos} payload at qos ${qos}`]);
  });
}

Deno.test("[MQTT-3.8.4-6] delivered QoS is min(published, granted): mosquitto_sub -q 1 sees QoS 0, 1, 1", async () => {
  await using broker = startBroker();
  await using sub = new LiveSubscriber([
    ...at(broker),
    "-i",
    "q1-sub",
    "-q",
    "1",
    "-t",
    "js/#",
    "-F",
    "%q %t",
  ]);
  await subscribed(broker, "q1-sub", "js/#");
  await using pub = await connectMqttJs(broker.port, { clientId: "js-pub" });
  // One topic, so the broker keeps publish order on the way out.
  for (const qos of [0, 1, 2] as const) await pub.mqtt.publishAsync("js/t", `q${qos}`, { qos });
  assert.deepEqual(await sub.lines(3), ["0 js/t", "1 js/t", "1 js/t"]);
});

Deno.test("[MQTT-4.6.0-6] mosquitto_pub -l sends 100 stdin lines that an MQTT.js QoS 1 subscriber gets in order", async () => {
  await using broker = startBroker();
  await using sub = await connectMqttJs(broker.port, { clientId: "js-sub" });
  await sub.mqtt.subscribeAsync("lines", { qos: 1 });
  const lines = Array.from({ length: 100 }, (_, i) => `line ${i + 1}`);
  const pub = await runWithStdin([...at(broker), "-l", "-q", "1", "-t", "lines"], lines.join("\n") + "\n");
  assert.equal(pub.code, 0, pub.stderr);
  const messages = await sub.received(100);
  assert.deepEqual(messages.map((m) => m.payload), lines);
  assert.ok(messages.every((m) => m.topic === "lines" && m.qos === 1));
});

Deno.test("[MQTT-3.1.2-8] mosquitto_sub --will-topic killed with SIGKILL: its will reaches another client", async () => {
  await using broker = startBroker();
  await using watcher = await connectMqttJs(broker.port, { clientId: "watcher" });
  await watcher.mqtt.subscribeAsync("w", { qos: 1 });
  await using doomed = new LiveSubscriber([
    ...at(broker),
    "-i",
    "doomed",
    "-t",
    "anything",
    "--will-topic",
    "w",
    "--will-payload",
    "gone",
  ]);
  await subscribed(broker, "doomed", "anything");
  assert.equal(watcher.messages.length, 0);
  doomed.kill("SIGKILL");
  assert.equal((await doomed.status).signal, "SIGKILL");
  const [will] = await watcher.received(1);
  assert.deepEqual([will.topic, will.payload, will.qos, will.retain], ["w", "gone", 0, false]);
});

Deno.test("[MQTT-3.14.4-3] mosquitto_sub --will-topic ending normally (-C 1 sends DISCONNECT): no will", async () => {
  await using broker = startBroker();
  await using watcher = await connectMqttJs(broker.port, { clientId: "watcher" });
  await watcher.mqtt.subscribeAsync("w", { qos: 1 });
  await watcher.mqtt.subscribeAsync("done", { qos: 1 });
  const child = spawnMosquittoTool("mosquitto_sub", [
    ...at(broker),
    "-i",
    "polite",
    "-t",
    "done",
    "-C",
    "1",
    "-W",
    "5",
    "--will-topic",
    "w",
    "--will-payload",
    "gone",
  ]);
  await subscribed(broker, "polite", "done");
  await watcher.mqtt.publishAsync("done", "bye", { qos: 1 });
  const output = await child.output();
  assert.equal(output.code, 0, decoder.decode(output.stderr));
  await until(
    () => broker.logs.some((l) => l.includes(`"polite" disconnected: client sent DISCONNECT`)),
    "DISCONNECT",
  );
  // Barrier: a message published after the close arrives, and no will came before it.
  await watcher.mqtt.publishAsync("w", "barrier", { qos: 1 });
  const messages = await watcher.received(2);
  assert.deepEqual(messages.map((m) => [m.topic, m.payload]), [["done", "bye"], ["w", "barrier"]]);
});
