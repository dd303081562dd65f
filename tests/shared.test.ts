/**
 * Shared subscriptions, `$share/{group}/{filter}` (MQTT 5.0 section 4.8.2): each message goes to one member
 * of each group (round robin, or the member with the fewest unacknowledged messages), 3.1.1 clients can be
 * members, no retained messages on subscribe, invalid share names, No Local refused, unacknowledged QoS 1
 * messages of a member that drops go to another member, the shared_subscriptions switch, and UNSUBSCRIBE.
 */

import assert from "node:assert/strict";
import type * as MP from "mqtt-packet";
import { startBroker, type TestBroker } from "./helpers/broker.ts";
import { connectMqttJs, type TestClient } from "./helpers/mqttjs.ts";
import { type Packet, type Publish, RawClient, summary } from "./helpers/raw.ts";
import { until, WAIT_MS } from "./helpers/wait.ts";

// --- Local helpers ------------------------------------------------------------------------------------------

/** A v5 client connected as `clientId` (clean start, session ends at disconnect), CONNACK 0 asserted. */
async function connect5(
  broker: TestBroker,
  clientId: string,
  fields: Partial<MP.IConnectPacket> = {},
): Promise<RawClient> {
  const client = await RawClient.open(broker.port, 5);
  try {
    const connack = await client.connect({ protocolVersion: 5, clientId, ...fields });
    assert.equal(connack.reasonCode, 0, `CONNACK reason code for ${clientId}`);
  } catch (error) {
    await client.close();
    throw error;
  }
  return client;
}

let lastPacketId = 0;

/** Sends a v5 SUBSCRIBE and returns its SUBACK's reason codes. */
async function subscribe5(client: RawClient, subscriptions: MP.ISubscription[]): Promise<number[]> {
  const messageId = lastPacketId = lastPacketId % 0xffff + 1;
  await client.send({ cmd: "subscribe", messageId, subscriptions });
  const suback = await client.expect("suback");
  assert.equal(suback.messageId, messageId, "SUBACK carries the SUBSCRIBE's packet id");
  return suback.granted as number[];
}

/** A v5 client subscribed to `filter` at `qos`, granted. */
async function member5(
  broker: TestBroker,
  clientId: string,
  filter: string,
  qos: MP.QoS,
): Promise<RawClient> {
  const client = await connect5(broker, clientId);
  try {
    assert.deepEqual(await subscribe5(client, [{ topic: filter, qos }]), [qos], `${clientId} granted`);
  } catch (error) {
    await client.close();
    throw error;
  }
  return client;
}

/** Sends a v5 UNSUBSCRIBE and returns its UNSUBACK's reason codes. */
async function unsubscribe5(client: RawClient, topics: string[]): Promise<number[]> {
  const messageId = lastPacketId = lastPacketId % 0xffff + 1;
  await client.send({ cmd: "unsubscribe", messageId, unsubscriptions: topics });
  const unsuback = await client.expect("unsuback");
  assert.equal(unsuback.messageId, messageId);
  return (unsuback as unknown as { granted: number[] }).granted;
}

/** The next packet must be a PUBLISH of `payload` on `topic`; returns it (not acknowledged). */
async function expectPublish(client: RawClient, topic: string, payload: string): Promise<Publish> {
  const packet = await client.next();
  const seen = JSON.stringify(summary(packet));
  assert.equal(packet.cmd, "publish", `expected PUBLISH, got ${seen}`);
  const publish = packet as Publish;
  assert.deepEqual([publish.topic, publish.payload.toString()], [topic, payload], `got ${seen}`);
  return publish;
}

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

/** The broker must send one DISCONNECT with `reasonCode` and close the connection. */
async function assertDisconnected(client: RawClient, reasonCode: number): Promise<void> {
  const packets: Packet[] = await client.closedByBroker();
  assert.deepEqual(packets.map((p) => p.cmd), ["disconnect"], "a DISCONNECT, then the socket closes");
  assert.equal((packets[0] as MP.IDisconnectPacket).reasonCode, reasonCode, "DISCONNECT reason code");
}

/** Another client still gets through the broker after a violation. */
async function assertBrokerStillWorks(broker: TestBroker): Promise<void> {
  await using sub = await member5(broker, "bystander-sub", "still/works", 1);
  await using pub = await connect5(broker, "bystander-pub");
  await pub.publishAcked("still/works", "yes", { qos: 1 });
  await expectPublish(sub, "still/works", "yes");
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
    await using pub = await connect5(broker, "pub");
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
  await using a = await member5(broker, "a", "$share/g/work", 1);
  await using b = await member5(broker, "b", "$share/g/work", 1);
  const members = [a, b];
  await using pub = await connect5(broker, "pub");

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
  await using v5 = await member5(broker, "v5", "$share/g/mix", 1);
  await using pub = await connect5(broker, "pub");
  const got: string[][] = [[], []];
  for (let n = 0; n < 4; n++) {
    await pub.send({
      cmd: "publish",
      topic: "mix",
      payload: `m${n}`,
      qos: 1,
      messageId: n + 1,
      retain: false,
      dup: false,
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
  await using retainer = await connect5(broker, "retainer");
  await retainer.publishAcked("r/t", "stored", { qos: 1, retain: true });
  await using client = await connect5(broker, "member");
  assert.deepEqual(await subscribe5(client, [{ topic: "$share/g/r/t", qos: 1, rh: 0 }]), [1]);
  await client.assertIdle();
  // The retained message is there: a plain subscription of the same session gets it.
  assert.deepEqual(await subscribe5(client, [{ topic: "r/#", qos: 1 }]), [1]);
  const retained = await expectPublish(client, "r/t", "stored");
  assert.equal(retained.retain, true);
});

// --- Invalid share names ---------------------------------------------------------------------------------------

const invalidShares = ["$share//t", "$share/g+/t", "$share/g#/t", "$share/g", "$share/g/"];

Deno.test("[MQTT-4.8.2-1] [MQTT-4.8.2-2] invalid share names get SUBACK 0x8F at v5; the valid filter is granted", async () => {
  await using broker = await startBroker();
  await using client = await connect5(broker, "names");
  const granted = await subscribe5(client, [
    ...invalidShares.map((topic) => ({ topic, qos: 1 as const })),
    { topic: "$share/good/t", qos: 1 },
  ]);
  assert.deepEqual(granted, [...invalidShares.map(() => 0x8f), 1]);
  await client.assertIdle();
  await using pub = await connect5(broker, "pub");
  await pub.publishAcked("t", "shared", { qos: 1 });
  await expectPublish(client, "t", "shared");
});

Deno.test("[MQTT-4.8.2-1] an invalid share name closes a 3.1.1 connection, like any invalid filter", async () => {
  await using broker = await startBroker();
  for (const [n, filter] of invalidShares.entries()) {
    await using client = await RawClient.connected(broker.port, { clientId: `v311-${n}` });
    await client.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: filter, qos: 0 }] });
    await client.assertClosedSilently();
  }
  await assertBrokerStillWorks(broker);
});

Deno.test("[MQTT-3.8.3-4] No Local on a shared subscription is a protocol error: DISCONNECT 0x82", async () => {
  await using broker = await startBroker();
  await using client = await connect5(broker, "nolocal");
  await client.send({
    cmd: "subscribe",
    messageId: 1,
    subscriptions: [{ topic: "$share/g/t", qos: 1, nl: true }],
  });
  await assertDisconnected(client, 0x82);
  await assertBrokerStillWorks(broker);
});

// --- A member that drops ------------------------------------------------------------------------------------------

Deno.test("section 4.8.2: an unacknowledged QoS 1 message of a member that drops is sent to another member", async () => {
  await using broker = await startBroker();
  const a = await member5(broker, "a", "$share/g/q", 1);
  const b = await member5(broker, "b", "$share/g/q", 1);
  try {
    await using pub = await connect5(broker, "pub");
    await pub.publishAcked("q", "orphan", { qos: 1 });
    const [index, orphan] = await whoGotIt([a, b]);
    assert.equal(orphan.payload.toString(), "orphan");
    const [dropper, survivor] = index === 0 ? [a, b] : [b, a];
    const dropperId = index === 0 ? "a" : "b";
    // No PUBACK; the socket just closes (session expiry 0: the session ends with it).
    await dropper.close();
    await broker.disconnected(dropperId);

    const again = await expectPublish(survivor, "q", "orphan");
    assert.equal(again.qos, 1);
    await survivor.send({ cmd: "puback", messageId: again.messageId });
    await survivor.assertIdle();

    await pub.publishAcked("q", "next", { qos: 1 });
    const next = await expectPublish(survivor, "q", "next");
    await survivor.send({ cmd: "puback", messageId: next.messageId });
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("[MQTT-4.8.2-5] a QoS 2 message in flight to a member whose session ends is not sent to another member", async () => {
  await using broker = await startBroker();
  const a = await member5(broker, "a", "$share/g/q2", 2);
  const b = await member5(broker, "b", "$share/g/q2", 2);
  try {
    await using pub = await connect5(broker, "pub");
    await pub.publishAcked("q2", "exactly once", { qos: 2 });
    const [index, sent] = await whoGotIt([a, b]);
    assert.equal(sent.qos, 2);
    const [dropper, survivor] = index === 0 ? [a, b] : [b, a];
    // No PUBREC: the member may or may not have the message; session expiry 0 ends its session with the socket.
    await dropper.close();
    await broker.disconnected(index === 0 ? "a" : "b");
    await survivor.assertIdle();

    await pub.publishAcked("q2", "next", { qos: 2 });
    const next = await expectPublish(survivor, "q2", "next");
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
  const clients = [await connect5(broker, "a", keep), await connect5(broker, "b", keep)];
  try {
    for (const client of clients) {
      assert.deepEqual(await subscribe5(client, [{ topic: "$share/g/q2", qos: 2 }]), [2]);
    }
    await using pub = await connect5(broker, "pub");
    await pub.publishAcked("q2", "exactly once", { qos: 2 });
    const [index, sent] = await whoGotIt(clients);
    const id = index === 0 ? "a" : "b";
    await clients[index].close();
    await broker.offline(id);
    await clients[1 - index].assertIdle();

    // Back with its session: the broker re-sends the PUBLISH (DUP 1, same packet id) [MQTT-4.4.0-1].
    const back = await RawClient.open(broker.port, 5);
    clients[index] = back;
    const connack = await back.connect({ protocolVersion: 5, clientId: id, clean: false, ...keep });
    assert.deepEqual([connack.reasonCode, connack.sessionPresent], [0, true]);
    const again = await expectPublish(back, "q2", "exactly once");
    assert.deepEqual([again.qos, again.dup, again.messageId], [2, true, sent.messageId]);
    await clients[1 - index].assertIdle();
  } finally {
    for (const client of clients) await client.close();
  }
});

// --- Feature switch and UNSUBSCRIBE ---------------------------------------------------------------------------

Deno.test("shared_subscriptions false: CONNACK says so; $share filters get SUBACK 0x9E (v5) and 0x80 (3.1.1)", async () => {
  await using broker = await startBroker({ mqtt: { shared_subscriptions: false } });
  await using client = await RawClient.open(broker.port, 5);
  const connack = await client.connect({ protocolVersion: 5, clientId: "noshare" });
  assert.equal(connack.reasonCode, 0);
  assert.equal(connack.properties?.sharedSubscriptionAvailable, false, "Shared Subscription Available 0");
  assert.deepEqual(await subscribe5(client, [{ topic: "$share/g/t", qos: 1 }, { topic: "t", qos: 1 }]), [
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
  await using a = await member5(broker, "a", "$share/g/u", 1);
  await using b = await member5(broker, "b", "$share/g/u", 1);
  assert.deepEqual(await unsubscribe5(a, ["$share/g/u", "$share/other/u"]), [0x00, 0x11]);
  await using pub = await connect5(broker, "pub");
  for (let n = 0; n < 4; n++) {
    await pub.publishAcked("u", `m${n}`, { qos: 1 });
    const got = await expectPublish(b, "u", `m${n}`);
    await b.send({ cmd: "puback", messageId: got.messageId });
  }
  await a.assertIdle();
});
