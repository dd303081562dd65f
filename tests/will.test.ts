/**
 * Will messages (MQTT 3.1.1 sections 3.1.2.5 to 3.1.2.7 and 3.14): published when a connection ends in any
 * way other than DISCONNECT, with the will's QoS and retain flag; discarded on DISCONNECT.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { IConnectPacket } from "mqtt-packet";
import { startBroker, type TestBroker } from "./helpers/broker.ts";
import { connectMqttJs } from "./helpers/mqttjs.ts";
import { MosquittoSub, mosquittoTest } from "./helpers/mosquitto.ts";
import { RawClient } from "./helpers/raw.ts";

type QoS = 0 | 1 | 2;
type Will = NonNullable<IConnectPacket["will"]>;

function will(topic: string, payload: string, qos: QoS = 0, retain = false): Will {
  return { topic, payload: Buffer.from(payload), qos, retain };
}

/** A raw client subscribed to `filter`, to see wills arrive. */
function watcher(
  broker: TestBroker,
  filter = "will/#",
  qos: QoS = 2,
  clientId = "watcher",
): Promise<RawClient> {
  return RawClient.subscriber(broker.port, { clientId }, [[filter, qos]]);
}

/**
 * Asserts that no will arrived on `topic`: the watcher publishes a marker there itself, and the marker must
 * be the next packet. Call it once the broker has finished with the will owner's connection.
 */
async function assertNoWill(watcher: RawClient, topic: string): Promise<void> {
  await watcher.publish(topic, "marker");
  await watcher.expectPublish(topic, "marker");
}

Deno.test("[MQTT-3.1.2-8] the will is published when the socket closes without DISCONNECT", async () => {
  await using broker = await startBroker();
  await using watch = await watcher(broker);
  const owner = await RawClient.connected(broker.port, {
    clientId: "owner",
    will: will("will/owner", "gone"),
  });
  await owner.close();
  const got = await watch.expectPublish("will/owner", "gone");
  assert.equal(got.qos, 0);
  assert.equal(got.retain, false);
  await broker.disconnected("owner");
  assert.ok(broker.loggedDisconnect("owner", "connection lost"));
});

Deno.test("[MQTT-3.14.4-3] the will is discarded, not published, on DISCONNECT", async () => {
  await using broker = await startBroker();
  await using watch = await watcher(broker);
  await using owner = await RawClient.connected(broker.port, {
    clientId: "polite",
    will: will("will/polite", "x", 1),
  });
  await owner.disconnect();
  await assertNoWill(watch, "will/polite");
  // Closing the socket after DISCONNECT does not bring the will back.
  await owner.close();
  await assertNoWill(watch, "will/polite");
});

Deno.test("[MQTT-3.1.2-8] the will is published once on each kind of protocol error", async () => {
  await using broker = await startBroker();
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
    await watch.expectPublish(`will/${name}`, name);
  }
  assert.equal(broker.server.metrics.protocolErrors, violations.length);
  // Each will came once: the next message is a marker, not a second copy.
  await assertNoWill(watch, "will/garbage");
});

Deno.test("[MQTT-3.1.2-8] the will is published on keep-alive timeout", async () => {
  await using broker = await startBroker();
  await using watch = await watcher(broker);
  await using owner = await RawClient.connected(broker.port, {
    clientId: "sleeper",
    keepalive: 1,
    will: will("will/sleeper", "timed out", 1),
  });
  const got = await watch.expectPublish("will/sleeper", "timed out", undefined, 3000);
  assert.equal(got.qos, 1);
  await owner.closedByBroker();
  assert.ok(broker.loggedDisconnect("sleeper", "keep-alive timeout"));
});

Deno.test("[MQTT-3.1.4-2] the will of a connection closed by a takeover is published", async () => {
  await using broker = await startBroker();
  await using watch = await watcher(broker);
  await using old = await RawClient.connected(broker.port, {
    clientId: "twin",
    will: will("will/twin", "old one"),
  });
  await using taker = await RawClient.connected(broker.port, {
    clientId: "twin",
    will: will("will/twin", "new one"),
  });
  await watch.expectPublish("will/twin", "old one");
  await old.closedByBroker();
  // The new connection's will is its own: discarded by its DISCONNECT.
  await taker.disconnect();
  await assertNoWill(watch, "will/twin");
});

Deno.test("[MQTT-3.1.2-14] the will is delivered at its QoS, capped by each subscription's QoS", async () => {
  await using broker = await startBroker();
  await using atTwo = await watcher(broker, "will/qos/#", 2, "at-two");
  await using atZero = await watcher(broker, "will/qos/#", 0, "at-zero");
  for (const qos of [0, 1, 2] as const) {
    const owner = await RawClient.connected(broker.port, {
      clientId: `q${qos}`,
      will: will(`will/qos/${qos}`, `qos ${qos}`, qos),
    });
    await owner.close();
    const high = await atTwo.expectPublish(`will/qos/${qos}`, `qos ${qos}`);
    assert.equal(high.qos, qos);
    if (qos > 0) assert.ok(high.messageId, "a QoS 1/2 delivery has a packet id");
    const low = await atZero.expectPublish(`will/qos/${qos}`, `qos ${qos}`);
    assert.equal(low.qos, 0);
  }
});

Deno.test("[MQTT-3.1.2-17] a will with retain 1 is retained and sent to later subscribers with RETAIN 1", async () => {
  await using broker = await startBroker();
  await using live = await watcher(broker);
  const owner = await RawClient.connected(broker.port, {
    clientId: "keeper",
    will: will("will/keeper", "remember me", 1, true),
  });
  await owner.close();
  // Live forwarding clears RETAIN [MQTT-3.3.1-9].
  const forwarded = await live.expectPublish("will/keeper", "remember me");
  assert.equal(forwarded.retain, false);
  await using later = await RawClient.subscriber(broker.port, { clientId: "later" }, [["will/keeper", 2]]);
  const stored = await later.expectPublish("will/keeper", "remember me");
  assert.equal(stored.retain, true);
  assert.equal(stored.qos, 1);
});

Deno.test("[MQTT-3.1.2-16] a will with retain 0 is not retained", async () => {
  await using broker = await startBroker();
  await using live = await watcher(broker);
  const owner = await RawClient.connected(broker.port, {
    clientId: "passing",
    will: will("will/passing", "once", 1),
  });
  await owner.close();
  await live.expectPublish("will/passing", "once");
  await using later = await RawClient.subscriber(broker.port, { clientId: "later" }, [["will/passing", 1]]);
  // Retained messages follow the SUBACK at once; PINGRESP next means there was none.
  await later.assertIdle();
  assert.equal(broker.server.broker.retained.size, 0);
});

Deno.test("[MQTT-3.1.2-8] MQTT.js: a destroyed connection publishes the will, end() with DISCONNECT does not", async () => {
  await using broker = await startBroker();
  await using watch = await watcher(broker);
  const lastWill = {
    topic: "will/mqttjs",
    payload: Buffer.from("mqttjs lost"),
    qos: 1 as const,
    retain: false,
  };
  const polite = await connectMqttJs(broker.port, { clientId: "mqttjs-polite", will: lastWill });
  await polite.end();
  await broker.disconnected("mqttjs-polite");
  await assertNoWill(watch, "will/mqttjs");
  const abrupt = await connectMqttJs(broker.port, { clientId: "mqttjs-abrupt", will: lastWill });
  await abrupt.end(true);
  const got = await watch.expectPublish("will/mqttjs", "mqttjs lost");
  assert.equal(got.qos, 1);
});

mosquittoTest(
  "[MQTT-3.1.2-8] mosquitto_sub --will-topic: killed, its will is published; a clean exit publishes none",
  async () => {
    await using broker = await startBroker();
    await using watch = await watcher(broker);
    const args = (id: string) => [
      ...["-p", String(broker.port), "-i", id, "-t", `mosq/${id}`, "-C", "1"],
      ...["--will-topic", "will/mosq", "--will-payload", `${id} died`, "--will-qos", "1"],
    ];

    // -C 1: exits after one message, sending DISCONNECT.
    await using clean = new MosquittoSub(args("clean"));
    await broker.subscribed("clean", "mosq/clean");
    await watch.publish("mosq/clean", "bye");
    const cleanExit = await clean.finished();
    assert.equal(cleanExit.code, 0, cleanExit.stderr);
    await broker.disconnected("clean");
    await assertNoWill(watch, "will/mosq");

    await using killed = new MosquittoSub(args("killed"));
    await broker.subscribed("killed", "mosq/killed");
    killed.kill("SIGKILL");
    await killed.status;
    const got = await watch.expectPublish("will/mosq", "killed died");
    assert.equal(got.qos, 1);
  },
);

Deno.test("a will under $SYS is not routed or retained: only the broker publishes there", async () => {
  await using broker = await startBroker();
  await using watch = await watcher(broker, "$SYS/#", 1, "sys-watcher");
  await watch.subscribe([["will/marker", 0]], { messageId: 2 });
  const owner = await RawClient.connected(broker.port, {
    clientId: "spoofer",
    will: will("$SYS/broker/version", "spoofed", 1, true),
  });
  await owner.close();
  await broker.disconnected("spoofer");
  // Like a client PUBLISH to $SYS: dropped, so the marker is the next message.
  await assertNoWill(watch, "will/marker");
  assert.equal(broker.server.broker.retained.size, 0, "the spoofed will was retained");
});

Deno.test("[MQTT-3.1.2-5] a will to a persistent subscriber that is offline is queued like any QoS 1 message", async () => {
  await using broker = await startBroker();
  {
    await using sub = await RawClient.subscriber(broker.port, { clientId: "away", clean: false }, [[
      "will/#",
      1,
    ]]);
    await sub.disconnect();
  }
  const owner = await RawClient.connected(broker.port, {
    clientId: "owner",
    will: will("will/owner", "while away", 1),
  });
  await owner.close();
  await broker.disconnected("owner");
  await using back = await RawClient.connected(broker.port, { clientId: "away", clean: false });
  assert.equal(back.sessionPresent, true);
  const got = await back.expectPublish("will/owner", "while away");
  assert.equal(got.qos, 1);
});

Deno.test("[MQTT-3.2.2-5] a refused CONNECT's will is never published", async () => {
  await using broker = await startBroker({ limits: { max_sessions: 1 } });
  await using watch = await watcher(broker);
  await using refused = await RawClient.open(broker.port);
  const connack = await refused.connect({ clientId: "refused", will: will("will/refused", "never") });
  assert.equal(connack.returnCode, 3);
  await refused.closedByBroker();
  await assertNoWill(watch, "will/refused");
});

Deno.test("the will is not published when the broker shuts down", async () => {
  const broker = await startBroker();
  try {
    await using owner = await RawClient.connected(broker.port, {
      clientId: "survivor",
      will: will("will/survivor", "should not be retained", 0, true),
    });
    await broker.stop();
    await owner.closedByBroker();
    // Had the will been published, its retain flag would have stored it.
    assert.equal(broker.server.broker.retained.size, 0);
    assert.ok(broker.loggedDisconnect("survivor", "broker shutting down"));
  } finally {
    await broker.stop();
  }
});
