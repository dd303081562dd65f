/**
 * Will messages (MQTT 3.1.1 sections 3.1.2.5 to 3.1.2.7 and 3.14): published when a connection ends in any
 * way other than DISCONNECT, with the will's QoS and retain flag; discarded on DISCONNECT.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { IConnectPacket } from "mqtt-packet";
import { startBroker, type TestBroker } from "./helpers/broker.ts";
import { connectMqttJs } from "./helpers/mqttjs.ts";
import { spawnMosquittoTool } from "./helpers/mosquitto.ts";
import { RawClient } from "./helpers/raw.ts";
import { until } from "./helpers/wait.ts";

type QoS = 0 | 1 | 2;
type Will = NonNullable<IConnectPacket["will"]>;

function will(topic: string, payload: string, qos: QoS = 0, retain = false): Will {
  return { topic, payload: Buffer.from(payload), qos, retain };
}

/** A raw client subscribed to `filter`, to see wills arrive. */
async function watcher(
  broker: TestBroker,
  filter = "will/#",
  qos: QoS = 2,
  clientId = "watcher",
): Promise<RawClient> {
  const client = await RawClient.connected(broker.port, { clientId });
  await client.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: filter, qos }] });
  await client.expect("suback");
  return client;
}

/** Asserts the next packet is a PUBLISH of `payload` on `topic`, and returns it. */
async function expectMessage(client: RawClient, topic: string, payload: string, ms?: number) {
  const got = await client.expect("publish", ms);
  assert.deepEqual([got.topic, got.payload.toString()], [topic, payload]);
  return got;
}

/**
 * Asserts that no will arrived on `topic`: the watcher publishes a marker there itself, and the marker must
 * be the next packet. Call it once the broker has finished with the will owner's connection.
 */
async function assertNoWill(watcher: RawClient, topic: string): Promise<void> {
  await watcher.send({ cmd: "publish", topic, payload: "marker", qos: 0, retain: false, dup: false });
  await expectMessage(watcher, topic, "marker");
}

/** Waits until the broker has handled the end of `clientId`'s connection (its log line is written last). */
function disconnectLogged(broker: TestBroker, clientId: string): Promise<void> {
  return until(
    () => broker.logs.some((l) => l.includes(`client "${clientId}" disconnected:`)),
    `client "${clientId}" to be disconnected`,
  );
}

Deno.test("[MQTT-3.1.2-8] the will is published when the socket closes without DISCONNECT", async () => {
  await using broker = startBroker();
  await using watch = await watcher(broker);
  const owner = await RawClient.connected(broker.port, {
    clientId: "owner",
    will: will("will/owner", "gone"),
  });
  await owner.close();
  const got = await expectMessage(watch, "will/owner", "gone");
  assert.equal(got.qos, 0);
  assert.equal(got.retain, false);
  await disconnectLogged(broker, "owner");
  assert.ok(broker.logs.some((l) => l.includes(`client "owner" disconnected: connection lost`)));
});

Deno.test("[MQTT-3.14.4-3] the will is discarded, not published, on DISCONNECT", async () => {
  await using broker = startBroker();
  await using watch = await watcher(broker);
  await using owner = await RawClient.connected(broker.port, {
    clientId: "polite",
    will: will("will/polite", "x", 1),
  });
  await owner.send({ cmd: "disconnect" });
  await owner.closedByBroker();
  await assertNoWill(watch, "will/polite");
  // Closing the socket after DISCONNECT does not bring the will back.
  await owner.close();
  await assertNoWill(watch, "will/polite");
});

Deno.test("[MQTT-3.1.2-8] the will is published once on each kind of protocol error", async () => {
  await using broker = startBroker();
  await using watch = await watcher(broker);
  const violations: [string, Uint8Array][] = [
    // PUBLISH to a topic name with a wildcard.
    ["wildcard", Uint8Array.of(0x30, 5, 0, 3, 0x61, 0x2f, 0x2b)],
    // A second CONNECT.
    ["reconnect", Uint8Array.of(0x10, 13, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 0, 0, 1, 0x78)],
    // A packet type clients never send (CONNACK).
    ["connack", Uint8Array.of(0x20, 2, 0, 0)],
    // A remaining length longer than four bytes.
    ["garbage", Uint8Array.of(0x30, 0xff, 0xff, 0xff, 0xff, 0x01)],
  ];
  for (const [name, bytes] of violations) {
    await using owner = await RawClient.connected(broker.port, {
      clientId: name,
      will: will(`will/${name}`, name),
    });
    await owner.sendBytes(bytes);
    await owner.closedByBroker();
    await expectMessage(watch, `will/${name}`, name);
  }
  assert.equal(broker.server.metrics.protocolErrors, violations.length);
  // Each will came once: the next message is a marker, not a second copy.
  await assertNoWill(watch, "will/garbage");
});

Deno.test("[MQTT-3.1.2-8] the will is published on keep-alive timeout", async () => {
  await using broker = startBroker();
  await using watch = await watcher(broker);
  await using owner = await RawClient.connected(broker.port, {
    clientId: "sleeper",
    keepalive: 1,
    will: will("will/sleeper", "timed out", 1),
  });
  const got = await expectMessage(watch, "will/sleeper", "timed out", 3000);
  assert.equal(got.qos, 1);
  await owner.closedByBroker();
  assert.ok(broker.logs.some((l) => l.includes(`client "sleeper" disconnected: keep-alive timeout`)));
});

Deno.test("[MQTT-3.1.4-2] the will of a connection closed by a takeover is published", async () => {
  await using broker = startBroker();
  await using watch = await watcher(broker);
  await using old = await RawClient.connected(broker.port, {
    clientId: "twin",
    will: will("will/twin", "old one"),
  });
  await using taker = await RawClient.connected(broker.port, {
    clientId: "twin",
    will: will("will/twin", "new one"),
  });
  await expectMessage(watch, "will/twin", "old one");
  await old.closedByBroker();
  // The new connection's will is its own: discarded by its DISCONNECT.
  await taker.send({ cmd: "disconnect" });
  await taker.closedByBroker();
  await assertNoWill(watch, "will/twin");
});

Deno.test("[MQTT-3.1.2-14] the will is delivered at its QoS, capped by each subscription's QoS", async () => {
  await using broker = startBroker();
  await using atTwo = await watcher(broker, "will/qos/#", 2, "at-two");
  await using atZero = await watcher(broker, "will/qos/#", 0, "at-zero");
  for (const qos of [0, 1, 2] as const) {
    const owner = await RawClient.connected(broker.port, {
      clientId: `q${qos}`,
      will: will(`will/qos/${qos}`, `qos ${qos}`, qos),
    });
    await owner.close();
    const high = await expectMessage(atTwo, `will/qos/${qos}`, `qos ${qos}`);
    assert.equal(high.qos, qos);
    if (qos > 0) assert.ok(high.messageId, "a QoS 1/2 delivery has a packet id");
    const low = await expectMessage(atZero, `will/qos/${qos}`, `qos ${qos}`);
    assert.equal(low.qos, 0);
  }
});

Deno.test("[MQTT-3.1.2-17] a will with retain 1 is retained and sent to later subscribers with RETAIN 1", async () => {
  await using broker = startBroker();
  await using live = await watcher(broker);
  const owner = await RawClient.connected(broker.port, {
    clientId: "keeper",
    will: will("will/keeper", "remember me", 1, true),
  });
  await owner.close();
  // Live forwarding clears RETAIN [MQTT-3.3.1-9].
  const forwarded = await expectMessage(live, "will/keeper", "remember me");
  assert.equal(forwarded.retain, false);
  await using later = await RawClient.connected(broker.port, { clientId: "later" });
  await later.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "will/keeper", qos: 2 }] });
  await later.expect("suback");
  const stored = await expectMessage(later, "will/keeper", "remember me");
  assert.equal(stored.retain, true);
  assert.equal(stored.qos, 1);
});

Deno.test("[MQTT-3.1.2-16] a will with retain 0 is not retained", async () => {
  await using broker = startBroker();
  await using live = await watcher(broker);
  const owner = await RawClient.connected(broker.port, {
    clientId: "passing",
    will: will("will/passing", "once", 1),
  });
  await owner.close();
  await expectMessage(live, "will/passing", "once");
  await using later = await RawClient.connected(broker.port, { clientId: "later" });
  await later.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "will/passing", qos: 1 }] });
  await later.expect("suback");
  // Retained messages follow the SUBACK at once; PINGRESP next means there was none.
  await later.send({ cmd: "pingreq" });
  await later.expect("pingresp");
  assert.equal(broker.server.broker.retained.size, 0);
});

Deno.test("[MQTT-3.1.2-8] MQTT.js: a destroyed connection publishes the will, end() with DISCONNECT does not", async () => {
  await using broker = startBroker();
  await using watch = await watcher(broker);
  const lastWill = {
    topic: "will/mqttjs",
    payload: Buffer.from("mqttjs lost"),
    qos: 1 as const,
    retain: false,
  };
  const polite = await connectMqttJs(broker.port, { clientId: "mqttjs-polite", will: lastWill });
  await polite.end();
  await disconnectLogged(broker, "mqttjs-polite");
  await assertNoWill(watch, "will/mqttjs");
  const abrupt = await connectMqttJs(broker.port, { clientId: "mqttjs-abrupt", will: lastWill });
  await abrupt.end(true);
  const got = await expectMessage(watch, "will/mqttjs", "mqttjs lost");
  assert.equal(got.qos, 1);
});

Deno.test("[MQTT-3.1.2-8] mosquitto_sub --will-topic: killed, its will is published; a clean exit publishes none", async () => {
  await using broker = startBroker();
  await using watch = await watcher(broker);
  const args = (id: string) => [
    ...["-p", String(broker.port), "-i", id, "-t", `mosq/${id}`, "-C", "1"],
    ...["--will-topic", "will/mosq", "--will-payload", `${id} died`, "--will-qos", "1"],
  ];
  const subscribed = (id: string) =>
    until(
      () => broker.server.broker.sessions.get(id)?.subscriptions.has(`mosq/${id}`) === true,
      `${id} to subscribe`,
    );

  // -C 1: exits after one message, sending DISCONNECT.
  const clean = spawnMosquittoTool("mosquitto_sub", args("clean"));
  await subscribed("clean");
  await watch.send({
    cmd: "publish",
    topic: "mosq/clean",
    payload: "bye",
    qos: 0,
    retain: false,
    dup: false,
  });
  const cleanExit = await clean.output();
  assert.equal(cleanExit.code, 0, new TextDecoder().decode(cleanExit.stderr));
  await disconnectLogged(broker, "clean");
  await assertNoWill(watch, "will/mosq");

  const killed = spawnMosquittoTool("mosquitto_sub", args("killed"));
  await subscribed("killed");
  killed.kill("SIGKILL");
  await killed.output();
  const got = await expectMessage(watch, "will/mosq", "killed died");
  assert.equal(got.qos, 1);
});

Deno.test("a will under $SYS is not routed or retained: only the broker publishes there", async () => {
  await using broker = startBroker();
  await using watch = await watcher(broker, "$SYS/#", 1, "sys-watcher");
  await watch.send({ cmd: "subscribe", messageId: 2, subscriptions: [{ topic: "will/marker", qos: 0 }] });
  await watch.expect("suback");
  const owner = await RawClient.connected(broker.port, {
    clientId: "spoofer",
    will: will("$SYS/broker/version", "spoofed", 1, true),
  });
  await owner.close();
  await disconnectLogged(broker, "spoofer");
  // Like a client PUBLISH to $SYS: dropped, so the marker is the next message.
  await assertNoWill(watch, "will/marker");
  assert.equal(broker.server.broker.retained.size, 0, "the spoofed will was retained");
});

Deno.test("[MQTT-3.1.2-5] a will to a persistent subscriber that is offline is queued like any QoS 1 message", async () => {
  await using broker = startBroker();
  {
    await using sub = await RawClient.connected(broker.port, { clientId: "away", clean: false });
    await sub.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "will/#", qos: 1 }] });
    await sub.expect("suback");
    await sub.send({ cmd: "disconnect" });
    await sub.closedByBroker();
  }
  const owner = await RawClient.connected(broker.port, {
    clientId: "owner",
    will: will("will/owner", "while away", 1),
  });
  await owner.close();
  await disconnectLogged(broker, "owner");
  await using back = await RawClient.open(broker.port);
  assert.equal((await back.connect({ clientId: "away", clean: false })).sessionPresent, true);
  const got = await expectMessage(back, "will/owner", "while away");
  assert.equal(got.qos, 1);
});

Deno.test("[MQTT-3.2.2-5] a refused CONNECT's will is never published", async () => {
  await using broker = startBroker({ limits: { max_sessions: 1 } });
  await using watch = await watcher(broker);
  await using refused = await RawClient.open(broker.port);
  const connack = await refused.connect({ clientId: "refused", will: will("will/refused", "never") });
  assert.equal(connack.returnCode, 3);
  await refused.closedByBroker();
  await assertNoWill(watch, "will/refused");
});

Deno.test("the will is not published when the broker shuts down", async () => {
  const broker = startBroker();
  try {
    await using owner = await RawClient.connected(broker.port, {
      clientId: "survivor",
      will: will("will/survivor", "should not be retained", 0, true),
    });
    await broker.stop();
    await owner.closedByBroker();
    // Had the will been published, its retain flag would have stored it.
    assert.equal(broker.server.broker.retained.size, 0);
    assert.ok(broker.logs.some((l) => l.includes(`client "survivor" disconnected: broker shutting down`)));
  } finally {
    await broker.stop();
  }
});
