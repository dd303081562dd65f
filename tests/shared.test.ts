/**
 * Shared subscriptions, `$share/{group}/{filter}` (MQTT 5.0 section 4.8.2): each message goes to one member
 * of each group (round robin, or the member with the fewest unacknowledged messages), 3.1.1 clients can be
 * members, no retained messages on subscribe, invalid share names, No Local refused, unacknowledged QoS 1
 * messages of a member that drops go to another member, the shared_subscriptions switch, and UNSUBSCRIBE.
 */

import assert from "node:assert/strict";
import { startBroker, type TestBroker } from "./helpers/broker.ts";
import { connectMqttJs, type TestClient } from "./helpers/mqttjs.ts";
import { type Publish, RawClient } from "./helpers/raw.ts";
import { assertAlive, assertServerDisconnect, bystander, connect5, subscriber5 } from "./helpers/v5.ts";
import { until, WAIT_MS } from "./helpers/wait.ts";

// --- Local helpers ------------------------------------------------------------------------------------------

/**
 * Which of `members` got the one PUBLISH just routed: pings each in turn (a PINGRESP comes after anything
 * sent before it) until one has a PUBLISH; asserts it is exactly one and the others have none.
 */
async function whoGotIt(members: RawClient[]): Promise<[index: number, publish: Publish]> {
  const deadline = Date.now() + WAIT_MS;
  while (true) {
    for (const [index, member] of members.entries()) {
      const before = await member.ping();
      if (before.length === 0) continue;
      assert.deepEqual(before.map((p) => p.cmd), ["publish"], `member ${index} got one PUBLISH`);
      for (const [other, rest] of members.entries()) if (other !== index) await rest.assertIdle();
      return [index, before[0] as Publish];
    }
    if (Date.now() > deadline) throw new Error("no member of the group got the message");
  }
}

/** An MQTT.js 5.0 client subscribed to `filters` at QoS 1, each granted. */
async function mqttJsMember(broker: TestBroker, clientId: string, filters: string[]): Promise<TestClient> {
  const client = await connectMqttJs(broker.port, { protocolVersion: 5, clientId });
  try {
    const grants = await client.mqtt.subscribeAsync(filters, { qos: 1 });
    assert.deepEqual(grants.map((g) => g.qos), filters.map(() => 1), `${clientId}'s SUBACK`);
  } catch (error) {
    await client.end(true);
    throw error;
  }
  return client;
}

// --- Distribution ----------------------------------------------------------------------------------------------

Deno.test("section 4.8.2: $share: each message reaches exactly one member of each group; round robin spreads evenly", async () => {
  const N = 20;
  await using broker = await startBroker();
  const members: Record<string, TestClient> = {};
  try {
    for (
      const [id, filter] of [
        ["g1-a", "$share/g1/jobs/#"],
        ["g1-b", "$share/g1/jobs/#"],
        ["g2-a", "$share/g2/jobs/#"],
        ["g2-b", "$share/g2/jobs/#"],
        ["plain", "jobs/#"],
      ]
    ) {
      // Every client also holds a plain subscription to "end": the marker that says all N have been routed.
      members[id] = await mqttJsMember(broker, id, [filter, "end"]);
    }
    await using pub = await connect5(broker.port, "pub");
    for (let n = 0; n < N; n++) await pub.publishAcked(`jobs/${n}`, `job ${n}`, { qos: 1 });
    await pub.publishAcked("end", "end", { qos: 1 });
    for (const member of Object.values(members)) {
      await until(() => member.messages.some((m) => m.topic === "end"), "the end marker");
    }

    const jobs = (id: string) => members[id].messages.filter((m) => m.topic !== "end").map((m) => m.payload);
    const all = Array.from({ length: N }, (_, n) => `job ${n}`);
    assert.deepEqual(jobs("plain"), all, "a plain subscriber gets every message");
    for (const group of ["g1", "g2"]) {
      const [a, b] = [jobs(`${group}-a`), jobs(`${group}-b`)];
      assert.deepEqual([...a, ...b].sort(), [...all].sort(), `${group}: every message once, none twice`);
      assert.deepEqual([a.length, b.length], [N / 2, N / 2], `${group}: round robin spreads evenly`);
    }
  } finally {
    for (const member of Object.values(members)) await member.end(true);
  }
});

Deno.test("least_inflight: a message goes to the member with the fewest unacknowledged messages", async () => {
  await using broker = await startBroker({ mqtt: { shared_subscription_strategy: "least_inflight" } });
  await using a = await subscriber5(broker.port, "a", [["$share/g/work", 1]]);
  await using b = await subscriber5(broker.port, "b", [["$share/g/work", 1]]);
  const members = [a, b];
  await using pub = await connect5(broker.port, "pub");

  await pub.publishAcked("work", "m1", { qos: 1 });
  const [first, m1] = await whoGotIt(members);
  assert.equal(m1.payload.toString(), "m1");
  const second = 1 - first;
  // The first member holds m1 unacknowledged; the second has nothing in flight.
  await pub.publishAcked("work", "m2", { qos: 1 });
  const [to2, m2] = await whoGotIt(members);
  assert.equal(to2, second, "m2 goes to the member with nothing in flight");
  await members[second].send({ cmd: "puback", messageId: m2.messageId });
  // Now the second member has 0 in flight and the first still 1: round robin would pick the first.
  await pub.publishAcked("work", "m3", { qos: 1 });
  const [to3, m3] = await whoGotIt(members);
  assert.equal(to3, second, "m3 goes to the member with nothing in flight, not the next in turn");
  assert.equal(m3.payload.toString(), "m3");
});

Deno.test("a 3.1.1 client can be a member of a shared group alongside a 5.0 client", async () => {
  await using broker = await startBroker();
  await using old = await RawClient.subscriber(broker.port, { clientId: "v311" }, [["$share/g/mix", 1]]);
  await using v5 = await subscriber5(broker.port, "v5", [["$share/g/mix", 1]]);
  await using pub = await connect5(broker.port, "pub");
  const got: string[][] = [[], []];
  for (let n = 0; n < 4; n++) {
    await pub.publish("mix", `m${n}`, {
      qos: 1,
      messageId: n + 1,
      properties: { userProperties: { n: String(n) } },
    });
    assert.equal((await pub.expect("puback")).messageId, n + 1);
    const [index, publish] = await whoGotIt([old, v5]);
    got[index].push(publish.payload.toString());
    await [old, v5][index].send({ cmd: "puback", messageId: publish.messageId });
  }
  assert.equal(got[0].length, 2, "the 3.1.1 member gets its turn");
  assert.equal(got[1].length, 2);
  assert.deepEqual([...got[0], ...got[1]].sort(), ["m0", "m1", "m2", "m3"]);
});

// --- Retained messages ------------------------------------------------------------------------------------------

Deno.test("section 3.3.1.3: no retained messages are sent on a shared subscribe (only on Non-shared ones)", async () => {
  await using broker = await startBroker();
  await using retainer = await connect5(broker.port, "retainer");
  await retainer.publishAcked("r/t", "stored", { qos: 1, retain: true });
  await using client = await connect5(broker.port, "member");
  assert.deepEqual(await client.subscribe([{ topic: "$share/g/r/t", qos: 1, rh: 0 }]), [1]);
  await client.assertIdle();
  // The retained message is there: a plain subscription of the same session gets it.
  assert.deepEqual(await client.subscribe([{ topic: "r/#", qos: 1 }]), [1]);
  const retained = await client.expectPublish("r/t", "stored");
  assert.equal(retained.retain, true);
});

// --- Invalid share names ---------------------------------------------------------------------------------------

const invalidShares = ["$share//t", "$share/g+/t", "$share/g#/t", "$share/g", "$share/g/"];

Deno.test("[MQTT-4.8.2-1] [MQTT-4.8.2-2] invalid share names get SUBACK 0x8F at v5; the valid filter is granted", async () => {
  await using broker = await startBroker();
  await using client = await connect5(broker.port, "names");
  const granted = await client.subscribe([
    ...invalidShares.map((topic) => ({ topic, qos: 1 as const })),
    { topic: "$share/good/t", qos: 1 },
  ]);
  assert.deepEqual(granted, [...invalidShares.map(() => 0x8f), 1]);
  await client.assertIdle();
  await using pub = await connect5(broker.port, "pub");
  await pub.publishAcked("t", "shared", { qos: 1 });
  await client.expectPublish("t", "shared");
});

Deno.test("[MQTT-4.8.2-1] an invalid share name closes a 3.1.1 connection, like any invalid filter", async () => {
  await using broker = await startBroker();
  await using other = await bystander(broker.port);
  for (const [n, filter] of invalidShares.entries()) {
    await using client = await RawClient.connected(broker.port, { clientId: `v311-${n}` });
    await client.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: filter, qos: 0 }] });
    await client.assertClosedSilently();
  }
  await assertAlive(broker, other);
});

Deno.test("[MQTT-3.8.3-4] No Local on a shared subscription is a protocol error: DISCONNECT 0x82", async () => {
  await using broker = await startBroker();
  await using other = await bystander(broker.port);
  await using client = await connect5(broker.port, "nolocal");
  await client.send({
    cmd: "subscribe",
    messageId: 1,
    subscriptions: [{ topic: "$share/g/t", qos: 1, nl: true }],
  });
  await assertServerDisconnect(client, 0x82);
  await assertAlive(broker, other);
});

// --- A member that drops ------------------------------------------------------------------------------------------

Deno.test("section 4.8.2: an unacknowledged QoS 1 message of a member that drops is sent to another member", async () => {
  await using broker = await startBroker();
  const a = await subscriber5(broker.port, "a", [["$share/g/q", 1]]);
  const b = await subscriber5(broker.port, "b", [["$share/g/q", 1]]);
  try {
    await using pub = await connect5(broker.port, "pub");
    await pub.publishAcked("q", "orphan", { qos: 1 });
    const [index, orphan] = await whoGotIt([a, b]);
    assert.equal(orphan.payload.toString(), "orphan");
    const [dropper, survivor] = index === 0 ? [a, b] : [b, a];
    const dropperId = index === 0 ? "a" : "b";
    // No PUBACK; the socket just closes (session expiry 0: the session ends with it).
    await dropper.close();
    await broker.disconnected(dropperId);

    const again = await survivor.expectPublish("q", "orphan");
    assert.equal(again.qos, 1);
    await survivor.send({ cmd: "puback", messageId: again.messageId });
    await survivor.assertIdle();

    await pub.publishAcked("q", "next", { qos: 1 });
    const next = await survivor.expectPublish("q", "next");
    await survivor.send({ cmd: "puback", messageId: next.messageId });
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("[MQTT-4.8.2-5] a QoS 2 message in flight to a member whose session ends is not sent to another member", async () => {
  await using broker = await startBroker();
  const a = await subscriber5(broker.port, "a", [["$share/g/q2", 2]]);
  const b = await subscriber5(broker.port, "b", [["$share/g/q2", 2]]);
  try {
    await using pub = await connect5(broker.port, "pub");
    await pub.publishAcked("q2", "exactly once", { qos: 2 });
    const [index, sent] = await whoGotIt([a, b]);
    assert.equal(sent.qos, 2);
    const [dropper, survivor] = index === 0 ? [a, b] : [b, a];
    // No PUBREC: the member may or may not have the message; session expiry 0 ends its session with the socket.
    await dropper.close();
    await broker.disconnected(index === 0 ? "a" : "b");
    await survivor.assertIdle();

    await pub.publishAcked("q2", "next", { qos: 2 });
    const next = await survivor.expectPublish("q2", "next");
    await survivor.send({ cmd: "pubrec", messageId: next.messageId });
    assert.equal((await survivor.expect("pubrel")).messageId, next.messageId);
    await survivor.send({ cmd: "pubcomp", messageId: next.messageId });
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("[MQTT-4.8.2-4] a QoS 2 message in flight to a member that drops is completed with that member when it returns", async () => {
  await using broker = await startBroker();
  const keep = { properties: { sessionExpiryInterval: 60 } };
  const clients = [await connect5(broker.port, "a", keep), await connect5(broker.port, "b", keep)];
  try {
    for (const client of clients) {
      assert.deepEqual(await client.subscribe([{ topic: "$share/g/q2", qos: 2 }]), [2]);
    }
    await using pub = await connect5(broker.port, "pub");
    await pub.publishAcked("q2", "exactly once", { qos: 2 });
    const [index, sent] = await whoGotIt(clients);
    const id = index === 0 ? "a" : "b";
    await clients[index].close();
    await broker.offline(id);
    await clients[1 - index].assertIdle();

    // Back with its session: the broker re-sends the PUBLISH (DUP 1, same packet id) [MQTT-4.4.0-1].
    const back = await connect5(broker.port, id, { clean: false, ...keep });
    clients[index] = back;
    assert.equal(back.sessionPresent, true);
    const again = await back.expectPublish("q2", "exactly once");
    assert.deepEqual([again.qos, again.dup, again.messageId], [2, true, sent.messageId]);
    await clients[1 - index].assertIdle();
  } finally {
    for (const client of clients) await client.close();
  }
});

// --- Feature switch and UNSUBSCRIBE ---------------------------------------------------------------------------

Deno.test("shared_subscriptions false: CONNACK says so; $share filters get SUBACK 0x9E (v5) and 0x80 (3.1.1)", async () => {
  await using broker = await startBroker({ mqtt: { shared_subscriptions: false } });
  await using client = await connect5(broker.port, "noshare");
  assert.equal(
    client.connack.properties?.sharedSubscriptionAvailable,
    false,
    "Shared Subscription Available 0",
  );
  assert.deepEqual(await client.subscribe([{ topic: "$share/g/t", qos: 1 }, { topic: "t", qos: 1 }]), [
    0x9e,
    1,
  ]);
  await client.assertIdle();

  await using old = await RawClient.connected(broker.port, { clientId: "noshare311" });
  assert.deepEqual(await old.subscribe([["$share/g/t", 1], ["t", 1]]), [0x80, 1]);
  await old.assertIdle();
});

Deno.test("[MQTT-3.10.4-1] UNSUBSCRIBE from a shared group: the member leaves it, the others get everything", async () => {
  await using broker = await startBroker();
  await using a = await subscriber5(broker.port, "a", [["$share/g/u", 1]]);
  await using b = await subscriber5(broker.port, "b", [["$share/g/u", 1]]);
  assert.deepEqual(await a.unsubscribe(["$share/g/u", "$share/other/u"]), [0x00, 0x11]);
  await using pub = await connect5(broker.port, "pub");
  for (let n = 0; n < 4; n++) {
    await pub.publishAcked("u", `m${n}`, { qos: 1 });
    const got = await b.expectPublish("u", `m${n}`);
    await b.send({ cmd: "puback", messageId: got.messageId });
  }
  await a.assertIdle();
});
