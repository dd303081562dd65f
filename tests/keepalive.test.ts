/**
 * Keep-alive (MQTT 3.1.1 section 3.1.2.10), PINGREQ (3.12) and PINGRESP (3.13). Every test uses a
 * keep-alive of 1 second, so the broker's deadline is 1.5 seconds of silence.
 */

import assert from "node:assert/strict";
import { startBroker, type TestBroker } from "./helpers/broker.ts";
import { connectMqttJs } from "./helpers/mqttjs.ts";
import { type Packet, RawClient, summary } from "./helpers/raw.ts";
import { delay } from "./helpers/wait.ts";

/** Well inside a 1 s keep-alive, so a client acting at this pace is never silent for too long. */
const PACE_MS = 250;

/** Connects a raw 3.1.1 client with the given keep-alive (seconds). */
function connect(broker: TestBroker, clientId: string, keepalive: number, clean = true): Promise<RawClient> {
  return RawClient.connected(broker.port, { clientId, keepalive, clean });
}

/** PINGRESP comes back before anything else, and the connection is still open after it. */
async function assertAlive(client: RawClient): Promise<void> {
  await client.assertIdle();
  assert.equal(client.isClosed, false);
}

/**
 * Runs `act` every PACE_MS until the broker closes `twin`, then returns how many times it ran. Waiting on
 * the twin's close is the barrier: the twin connected after the active client, so by then the active
 * client has been connected for longer than the twin's 1.5 x keep-alive deadline.
 */
async function actUntilClosed(twin: RawClient, act: () => Promise<void>): Promise<number> {
  const closing = twin.closedByBroker(3000);
  let over = false;
  closing.then(() => over = true, () => over = true);
  let rounds = 0;
  while (!over) {
    await act();
    rounds++;
    await delay(PACE_MS);
  }
  const packets = await closing;
  assert.deepEqual(packets.map(summary), [], "the silent twin got packets before it was closed");
  return rounds;
}

/** Whether the broker has logged closing `clientId` for keep-alive timeout. */
function keepAliveLogged(broker: TestBroker, clientId: string): boolean {
  return broker.loggedDisconnect(clientId, "keep-alive timeout");
}

Deno.test("[MQTT-3.12.4-1] every PINGREQ is answered with a PINGRESP", async () => {
  await using broker = await startBroker();
  await using client = await connect(broker, "pinger", 0);
  // Three PINGREQs in one write: three PINGRESPs, nothing else.
  await client.sendBytes(Uint8Array.of(0xc0, 0, 0xc0, 0, 0xc0, 0));
  for (let i = 0; i < 3; i++) await client.expect("pingresp");
  await client.publish("ping/marker", "", { qos: 1, messageId: 9 });
  assert.equal((await client.expect("puback")).messageId, 9);
});

Deno.test("[MQTT-3.12.4-1] an MQTT 3.1 client's PINGREQ is answered with a PINGRESP", async () => {
  await using broker = await startBroker();
  await using client = await RawClient.connected(broker.port, { protocolVersion: 3, clientId: "old-pinger" });
  await assertAlive(client);
});

Deno.test("[MQTT-3.1.2-24] a silent client with keep-alive 1 is closed and the close is logged", async () => {
  await using broker = await startBroker();
  await using silent = await connect(broker, "silent", 1);
  await silent.assertClosedSilently(3000);
  await broker.disconnected("silent", "keep-alive timeout");
  assert.equal(broker.server.metrics.protocolErrors, 1);
  assert.equal(
    broker.server.broker.sessions.get("silent"),
    undefined,
    "a clean session ends with its connection",
  );
});

Deno.test("[MQTT-3.1.2-24] the broker waits 1.5 x keep-alive: a PINGREQ after 1.1 s of silence is answered", async () => {
  await using broker = await startBroker();
  await using client = await connect(broker, "late-pinger", 1);
  // Later than one keep-alive period, earlier than one and a half.
  await delay(1100);
  await assertAlive(client);
  assert.equal(keepAliveLogged(broker, "late-pinger"), false);
});

Deno.test("[MQTT-3.1.2-24] a client sending PINGREQ within its keep-alive outlives a silent twin", async () => {
  await using broker = await startBroker();
  await using pinger = await connect(broker, "pinger", 1);
  await using twin = await connect(broker, "twin", 1);
  const pings = await actUntilClosed(twin, () => assertAlive(pinger));
  assert.ok(pings >= 2, `only ${pings} PINGREQ(s) were sent before the twin was closed`);
  await assertAlive(pinger);
  await broker.disconnected("twin", "keep-alive timeout");
  assert.equal(keepAliveLogged(broker, "pinger"), false);
});

Deno.test("[MQTT-3.1.2-24] any control packet, not only PINGREQ, counts as keep-alive activity", async () => {
  await using broker = await startBroker();
  await using publisher = await connect(broker, "publisher", 1);
  await using twin = await connect(broker, "twin", 1);
  let n = 0;
  await actUntilClosed(twin, async () => {
    const messageId = ++n;
    await publisher.publish("busy", "x", { qos: 1, messageId });
    assert.equal((await publisher.expect("puback")).messageId, messageId);
  });
  await assertAlive(publisher);
  assert.equal(keepAliveLogged(broker, "publisher"), false);
});

Deno.test("(3.1.2.10) keep-alive 0 turns the mechanism off: a silent client stays open", async () => {
  await using broker = await startBroker();
  await using idle = await connect(broker, "idle", 0);
  await using twin = await connect(broker, "twin", 1);
  // Both are silent; only the one with a keep-alive is closed.
  await twin.assertClosedSilently(3000);
  assert.equal(idle.isClosed, false);
  await assertAlive(idle);
  assert.ok(broker.logs.some((l) => l.includes(`client "idle" connected`) && l.includes("keep-alive 0s")));
  assert.equal(keepAliveLogged(broker, "idle"), false);
});

Deno.test("[MQTT-3.1.2-23] MQTT.js with keep-alive 1 sends its own PINGREQs and stays connected", async () => {
  await using broker = await startBroker();
  await using mqttjs = await connectMqttJs(broker.port, { clientId: "mqttjs", keepalive: 1 });
  let pingresps = 0;
  mqttjs.mqtt.on("packetreceive", (packet: Packet) => {
    if (packet.cmd === "pingresp") pingresps++;
  });
  await using twin = await connect(broker, "twin", 1);
  await twin.closedByBroker(3000);
  assert.ok(pingresps >= 1, "MQTT.js got no PINGRESP");
  assert.equal(mqttjs.mqtt.connected, true);
  // The connection still carries traffic.
  await mqttjs.mqtt.subscribeAsync("ka/#", { qos: 1 });
  await mqttjs.mqtt.publishAsync("ka/x", "still here", { qos: 1 });
  const [message] = await mqttjs.received(1);
  assert.equal(message.payload, "still here");
  assert.equal(keepAliveLogged(broker, "mqttjs"), false);
});

Deno.test("[MQTT-3.1.2-24] a keep-alive timeout ends the connection but not a persistent session", async () => {
  await using broker = await startBroker();
  {
    await using silent = await connect(broker, "sleepy", 1, false);
    await silent.subscribe([["sleepy/#", 1]]);
    await silent.closedByBroker(3000);
  }
  await broker.disconnected("sleepy", "keep-alive timeout");
  await using back = await RawClient.connected(broker.port, { clientId: "sleepy", clean: false });
  assert.equal(back.sessionPresent, true);
  await back.publish("sleepy/x", "kept", { qos: 1, messageId: 1 });
  // The PUBACK to our publish and the delivery to our kept subscription, in either order.
  const cmds = [(await back.next()).cmd, (await back.next()).cmd].sort();
  assert.deepEqual(cmds, ["puback", "publish"]);
});
