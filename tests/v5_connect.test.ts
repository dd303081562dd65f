/**
 * MQTT 5.0 connections (sections 3.1, 3.2, 3.14, 3.15, 4.12 and 4.13): CONNECT and CONNACK properties
 * (Session Expiry Interval, Receive Maximum, Maximum Packet Size, Topic Alias Maximum, Request Response and
 * Problem Information, User Properties, Assigned Client Identifier, Server Keep Alive, the *Available flags
 * and Maximum QoS), enhanced authentication with AUTH, and the reason codes of the broker's DISCONNECT.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import mqtt, { type MqttClient } from "mqtt";
import type { IAuthPacket, IConnackPacket, IDisconnectPacket } from "mqtt-packet";
import type { AuthClient, AuthConversation, AuthStep, EnhancedAuthenticator } from "../src/auth/enhanced.ts";
import { startBroker, type TestBroker } from "./helpers/broker.ts";
import { frame, utf8, utf8Bytes } from "./helpers/bytes.ts";
import { connectMqttJs } from "./helpers/mqttjs.ts";
import { PahoScript, pahoTest } from "./helpers/paho.ts";
import { connectPacket, RawClient } from "./helpers/raw.ts";
import {
  assertAlive,
  assertServerDisconnect,
  bystander,
  connect5,
  prop,
  rawConnect5,
  rawPublish5,
} from "./helpers/v5.ts";
import { delay, until, within } from "./helpers/wait.ts";

// --- Local helpers ------------------------------------------------------------------------------------------

/**
 * `clientId` connects with Session Expiry Interval `sessionExpiryInterval`, then sends DISCONNECT 0x00 with
 * `properties`; returns once the broker has closed the connection.
 */
async function connectThenDisconnect(
  broker: TestBroker,
  clientId: string,
  sessionExpiryInterval: number,
  properties?: IDisconnectPacket["properties"],
): Promise<void> {
  await using client = await connect5(broker.port, clientId, { properties: { sessionExpiryInterval } });
  await client.send({ cmd: "disconnect", reasonCode: 0, properties });
  await client.closedByBroker();
}

/** Asserts the broker refuses the CONNECT with CONNACK `code` and closes the connection [MQTT-3.2.2-7]. */
async function assertRefused(client: RawClient, connack: IConnackPacket, code: number): Promise<void> {
  assert.equal(connack.reasonCode, code, `CONNACK ${JSON.stringify(connack)}`);
  assert.equal(connack.sessionPresent, false, "[MQTT-3.2.2-6] Session Present 0 on a refusal");
  await client.assertClosedSilently();
}

// --- CONNACK properties -------------------------------------------------------------------------------------

Deno.test("(3.2.2.3) CONNACK announces Receive Maximum, Maximum Packet Size and Topic Alias Maximum from the config", async () => {
  await using broker = await startBroker({
    limits: { max_inflight_messages: 7, max_packet_size: 5000 },
    mqtt: { topic_alias_maximum: 4 },
  });
  await using client = await connect5(broker.port, "announced");
  const props = client.connack.properties ?? {};
  assert.equal(props.receiveMaximum, 7);
  assert.equal(props.maximumPacketSize, 5000);
  assert.equal(props.topicAliasMaximum, 4);
  // Everything is available and QoS 2 is supported: those properties are left out (their defaults).
  for (
    const absent of [
      "retainAvailable",
      "wildcardSubscriptionAvailable",
      "subscriptionIdentifiersAvailable",
      "sharedSubscriptionAvailable",
      "maximumQoS",
      "serverKeepAlive",
      "responseInformation",
      "authenticationMethod",
    ] as const
  ) {
    assert.equal(props[absent], undefined, `${absent} is not sent by default`);
  }
});

Deno.test("(3.2.2.3.8) the defaults: Topic Alias Maximum 10, Receive Maximum 32, Maximum Packet Size 1 MiB", async () => {
  await using broker = await startBroker();
  await using client = await connect5(broker.port, "defaults");
  const props = client.connack.properties ?? {};
  assert.deepEqual(
    [props.topicAliasMaximum, props.receiveMaximum, props.maximumPacketSize],
    [10, 32, 1_048_576],
  );
});

Deno.test("(3.2.2.3.8) topic_alias_maximum 0: CONNACK carries no Topic Alias Maximum", async () => {
  await using broker = await startBroker({ mqtt: { topic_alias_maximum: 0 } });
  await using client = await connect5(broker.port, "no-alias");
  assert.equal(client.connack.properties?.topicAliasMaximum, undefined);
});

Deno.test("(3.2.2.3) features turned off are announced: the *Available flags 0 and Maximum QoS", async () => {
  await using broker = await startBroker({
    mqtt: {
      retain_available: false,
      wildcard_subscriptions: false,
      subscription_identifiers: false,
      shared_subscriptions: false,
      max_qos: 1,
    },
  });
  await using client = await connect5(broker.port, "restricted");
  const props = client.connack.properties ?? {};
  assert.equal(props.retainAvailable, false);
  assert.equal(props.wildcardSubscriptionAvailable, false);
  assert.equal(props.subscriptionIdentifiersAvailable, false);
  assert.equal(props.sharedSubscriptionAvailable, false);
  assert.equal(props.maximumQoS, 1);
  // MQTT.js reads the same CONNACK.
  await using js = await connectMqttJs(broker.port, { protocolVersion: 5, clientId: "restricted-js" });
  const jsProps = js.mqtt.serverProperties ?? {};
  assert.deepEqual(
    [jsProps.retainAvailable, jsProps.wildcardSubscriptionAvailable, jsProps.maximumQoS],
    [false, false, 1],
  );
});

Deno.test("(3.2.2.3.4) max_qos 0 is announced as Maximum QoS 0", async () => {
  await using broker = await startBroker({ mqtt: { max_qos: 0 } });
  await using client = await connect5(broker.port, "qos0");
  assert.equal(client.connack.properties?.maximumQoS, 0);
});

// --- Session Expiry Interval --------------------------------------------------------------------------------

Deno.test("[MQTT-3.2.2-2] a session with Session Expiry Interval 60 is kept and resumed with Session Present 1", async () => {
  await using broker = await startBroker();
  await using pub = await connect5(broker.port, "pub");
  {
    await using sub = await connect5(broker.port, "keeper", {
      properties: { sessionExpiryInterval: 60 },
    });
    assert.equal(sub.connack.sessionPresent, false);
    assert.deepEqual(await sub.subscribe([["keep/#", 1]]), [1]);
    await sub.send({ cmd: "disconnect", reasonCode: 0 });
    await sub.closedByBroker();
  }
  await broker.offline("keeper");
  await pub.publishAcked("keep/x", "while away", { qos: 1 });
  await using back = await connect5(broker.port, "keeper", {
    clean: false,
    properties: { sessionExpiryInterval: 60 },
  });
  assert.equal(back.connack.sessionPresent, true);
  await back.expectPublish("keep/x", "while away", 1);
});

Deno.test("(3.1.2.11.2) no Session Expiry Interval: the session ends with the connection, even with Clean Start 0", async () => {
  await using broker = await startBroker();
  {
    await using sub = await connect5(broker.port, "brief", { clean: false });
    assert.deepEqual(await sub.subscribe([["brief/#", 1]]), [1]);
    await sub.close();
  }
  await broker.sessionEnded("brief");
  await using back = await connect5(broker.port, "brief", { clean: false });
  assert.equal(back.connack.sessionPresent, false);
});

Deno.test("(3.1.2.11.2) a session expires after its Session Expiry Interval; a longer one is still there", async () => {
  await using broker = await startBroker();
  await using pub = await connect5(broker.port, "pub");
  for (const [clientId, sessionExpiryInterval] of [["short", 1], ["long", 60]] as const) {
    await using sub = await connect5(broker.port, clientId, { properties: { sessionExpiryInterval } });
    assert.deepEqual(await sub.subscribe([[`exp/${clientId}`, 1]]), [1]);
    await sub.close();
    await broker.offline(clientId);
  }
  await pub.publishAcked("exp/short", "queued for short", { qos: 1 });
  await broker.sessionEnded("short", 4000);
  assert.ok(broker.hasSession("long"), "the 60 s session is kept");
  await using short = await connect5(broker.port, "short", { clean: false });
  assert.equal(short.connack.sessionPresent, false);
  await short.assertIdle();
  await using long = await connect5(broker.port, "long", { clean: false });
  assert.equal(long.connack.sessionPresent, true);
});

Deno.test("(3.14.2.2.2) DISCONNECT with Session Expiry Interval 0 ends a 60 s session", async () => {
  await using broker = await startBroker();
  await connectThenDisconnect(broker, "changer", 60, { sessionExpiryInterval: 0 });
  await broker.sessionEnded("changer");
  await using back = await connect5(broker.port, "changer", { clean: false });
  assert.equal(back.connack.sessionPresent, false);
});

Deno.test("(3.14.2.2.2) DISCONNECT can lengthen the Session Expiry Interval from 1 s to 60 s", async () => {
  await using broker = await startBroker();
  await connectThenDisconnect(broker, "lengthened", 1, { sessionExpiryInterval: 60 });
  await broker.offline("lengthened");
  // Goes offline after "lengthened", with the 1 s that "lengthened" started with.
  await connectThenDisconnect(broker, "control", 1);
  await broker.sessionEnded("control", 4000);
  assert.ok(broker.hasSession("lengthened"), "the lengthened session outlives the control");
  await using back = await connect5(broker.port, "lengthened", { clean: false });
  assert.equal(back.connack.sessionPresent, true);
});

Deno.test("(3.14.2.2.2) Session Expiry Interval 0 in CONNECT, non-zero in DISCONNECT: DISCONNECT 0x82", async () => {
  await using broker = await startBroker();
  await using watch = await connect5(broker.port, "watch");
  assert.deepEqual(await watch.subscribe([["will/#", 0]]), [0]);
  await using client = await connect5(broker.port, "sneaky", {
    will: { topic: "will/sneaky", payload: Buffer.from("invalid DISCONNECT"), qos: 0, retain: false },
  });
  await client.send({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 30 } });
  await assertServerDisconnect(client, 0x82);
  // Not a valid DISCONNECT, so not a normal disconnection: the will goes out [MQTT-3.1.2-8].
  await watch.expectPublish("will/sneaky", "invalid DISCONNECT");
  await broker.sessionEnded("sneaky");
  await using back = await connect5(broker.port, "sneaky", { clean: false });
  assert.equal(back.connack.sessionPresent, false);
});

Deno.test("(3.2.2.3.2) mqtt.session_expiry caps the client's Session Expiry Interval and CONNACK says so", async () => {
  await using broker = await startBroker({ mqtt: { session_expiry: 5 } });
  for (const asked of [3600, 0xffffffff]) {
    await using client = await connect5(broker.port, `cap-${asked}`, {
      properties: { sessionExpiryInterval: asked },
    });
    assert.equal(client.connack.properties?.sessionExpiryInterval, 5, `asked for ${asked}`);
  }
  // Below the cap the client's value stands: CONNACK leaves it out (or repeats it).
  await using under = await connect5(broker.port, "under", {
    properties: { sessionExpiryInterval: 2 },
  });
  assert.ok([undefined, 2].includes(under.connack.properties?.sessionExpiryInterval));
});

Deno.test("(3.2.2.3.2) mqtt.session_expiry 0 sets no cap: 0xFFFFFFFF (never expires) is accepted as it is", async () => {
  await using broker = await startBroker({ mqtt: { session_expiry: 0 } });
  await using client = await connect5(broker.port, "forever", {
    properties: { sessionExpiryInterval: 0xffffffff },
  });
  assert.ok([undefined, 0xffffffff].includes(client.connack.properties?.sessionExpiryInterval));
});

// --- Request Response / Problem Information, User Properties, Assigned Client Identifier --------------------

Deno.test("[MQTT-3.1.2-28] Response Information is sent only when configured and requested", async () => {
  {
    await using broker = await startBroker({ mqtt: { response_information: "replies/" } });
    await using asks = await connect5(broker.port, "asks", {
      properties: { requestResponseInformation: true },
    });
    assert.equal(asks.connack.properties?.responseInformation, "replies/");
    await using silent = await connect5(broker.port, "silent");
    assert.equal(silent.connack.properties?.responseInformation, undefined, "not requested");
    await using declines = await connect5(broker.port, "declines", {
      properties: { requestResponseInformation: false },
    });
    assert.equal(declines.connack.properties?.responseInformation, undefined, "requested 0");
  }
  {
    await using broker = await startBroker();
    await using asks = await connect5(broker.port, "asks", {
      properties: { requestResponseInformation: true },
    });
    assert.equal(asks.connack.properties?.responseInformation, undefined, "none configured");
  }
});

Deno.test("[MQTT-3.1.2-29] Request Problem Information 0: PUBACK 0x87 for a $SYS publish carries no Reason String", async () => {
  await using broker = await startBroker();
  await using quiet = await connect5(broker.port, "quiet", {
    properties: { requestProblemInformation: false },
  });
  await quiet.publish("$SYS/forged", "x", { qos: 1, messageId: 3 });
  const puback = await quiet.expect("puback");
  assert.deepEqual([puback.messageId, puback.reasonCode], [3, 0x87]);
  assert.equal(puback.properties, undefined, `no Reason String or User Property: ${JSON.stringify(puback)}`);
  await quiet.assertIdle();

  // The default (1): the same failure explains itself.
  await using chatty = await connect5(broker.port, "chatty");
  await chatty.publish("$SYS/forged", "x", { qos: 1, messageId: 4 });
  const explained = await chatty.expect("puback");
  assert.deepEqual([explained.messageId, explained.reasonCode], [4, 0x87]);
  assert.ok((explained.properties?.reasonString ?? "").length > 0, "a Reason String");
});

Deno.test("(3.1.2.11.8) User Properties in CONNECT are accepted (raw and MQTT.js)", async () => {
  await using broker = await startBroker();
  await using raw = await connect5(broker.port, "props-raw", {
    properties: { userProperties: { region: "eu", tag: ["a", "b"] } },
  });
  await raw.assertIdle();
  await using js = await connectMqttJs(broker.port, {
    protocolVersion: 5,
    clientId: "props-js",
    properties: { userProperties: { app: "vyoma-test" } },
  });
  await js.mqtt.subscribeAsync("up/#", { qos: 1 });
  await js.mqtt.publishAsync("up/x", "hello", { qos: 1 });
  const [got] = await js.received(1);
  assert.deepEqual([got.topic, got.payload], ["up/x", "hello"]);
});

Deno.test("[MQTT-3.1.3-7] an empty client id gets an Assigned Client Identifier auto-<uuid>, with any Clean Start", async () => {
  await using broker = await startBroker();
  const pattern = /^auto-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  await using clean = await connect5(broker.port, "", { clean: true });
  // mqtt-packet refuses to encode an empty client id with Clean Start 0.
  await using kept = await RawClient.open(broker.port, 5);
  await kept.sendBytes(rawConnect5("", { properties: [prop.u32(0x11, 60)], clean: false }));
  const keptConnack = await kept.expect("connack");
  assert.equal(keptConnack.reasonCode, 0);
  const ids = [clean.connack, keptConnack].map((c) => c.properties?.assignedClientIdentifier ?? "");
  for (const id of ids) assert.match(id, pattern);
  assert.notEqual(ids[0], ids[1], "[MQTT-3.1.3-6] each gets a unique id");
  // The connection is processed as if the client had sent that id.
  for (const id of ids) assert.ok(broker.hasSession(id), `session ${id}`);
  assert.deepEqual(await kept.subscribe([["assigned/#", 1]]), [1]);
  await clean.publishAcked("assigned/x", "to the assigned id", { qos: 1 });
  await kept.expectPublish("assigned/x", "to the assigned id", 1);
  // The session kept under the assigned id is resumed by a client that names it.
  await kept.close();
  await broker.offline(ids[1]);
  await using resumed = await connect5(broker.port, ids[1], { clean: false });
  assert.equal(resumed.connack.sessionPresent, true);
  // A client given an id does not get one assigned.
  await using named = await connect5(broker.port, "named");
  assert.equal(named.connack.properties?.assignedClientIdentifier, undefined);
});

pahoTest(
  "[MQTT-3.1.3-7] Python paho (MQTT 5.0) with an empty client id is told its assigned id",
  async () => {
    await using broker = await startBroker();
    await using paho = new PahoScript(
      broker.port,
      `
result = {}
def on_connect(c, u, flags, rc, props):
    result["rc"] = int(getattr(rc, "value", rc))
    result["assigned"] = getattr(props, "AssignedClientIdentifier", None)
    c.disconnect()
c = client("")
c.on_connect = on_connect
c.connect("127.0.0.1", PORT, keepalive=30)
c.loop_forever()
out(result)
`,
    );
    const [result] = await paho.finished();
    assert.equal(result.rc, 0);
    assert.match(String(result.assigned), /^auto-[0-9a-f-]{36}$/);
    await broker.disconnected(String(result.assigned));
  },
);

// --- Server Keep Alive ----------------------------------------------------------------------------------------

Deno.test("[MQTT-3.2.2-21] server_keep_alive 1 is announced and enforced: silent for 1.5 s -> DISCONNECT 0x8D", async () => {
  await using broker = await startBroker({ mqtt: { server_keep_alive: 1 } });
  // MQTT.js asks for 60 s but uses the broker's 1 s, so its PINGREQs keep it connected.
  await using js = await connectMqttJs(broker.port, { protocolVersion: 5, clientId: "js", keepalive: 60 });
  assert.equal(js.mqtt.serverProperties?.serverKeepAlive, 1);
  await using silent = await connect5(broker.port, "silent", { keepalive: 60 });
  assert.equal(silent.connack.properties?.serverKeepAlive, 1);
  await assertServerDisconnect(silent, 0x8d, 3000);
  await broker.disconnected("silent", "keep-alive timeout");
  // "js" connected before "silent" and has been up for longer than 1.5 s by now.
  assert.equal(js.mqtt.connected, true);
  assert.equal(broker.loggedDisconnect("js"), false);
  await js.mqtt.subscribeAsync("ka/#", { qos: 1 });
  await js.mqtt.publishAsync("ka/x", "alive", { qos: 1 });
  await js.received(1);
});

Deno.test("[MQTT-3.2.2-22] no server_keep_alive: CONNACK has no Server Keep Alive and the client's 0 stands", async () => {
  await using broker = await startBroker();
  await using idle = await connect5(broker.port, "idle", { keepalive: 0 });
  assert.equal(idle.connack.properties?.serverKeepAlive, undefined);
  // A keep-alive of 1 s from a twin is enforced; the idle client (0) outlives it.
  await using twin = await connect5(broker.port, "twin", { keepalive: 1 });
  await assertServerDisconnect(twin, 0x8d, 3000);
  await idle.assertIdle();
});

// --- Enhanced authentication ------------------------------------------------------------------------------------

const CHALLENGE = "TEST-CHALLENGE";
const ASYNC = "TEST-ASYNC";
const NONCE = "nonce-42";

/**
 * A two-step challenge/response method: the client sends "hello", the broker answers with a nonce, the
 * client proves itself with "hello:<nonce>". TEST-ASYNC takes one asynchronous step: "open" gets in.
 */
class TestAuthenticator implements EnhancedAuthenticator {
  readonly begun: { method: string; client: AuthClient; reauth: boolean }[] = [];

  begin(method: string, client: AuthClient, reauth: boolean): AuthConversation | null {
    if (method === CHALLENGE) {
      this.begun.push({ method, client, reauth });
      let step = 0;
      return {
        step(data): AuthStep {
          const text = data === undefined ? "" : new TextDecoder().decode(data);
          step++;
          if (step === 1 && text === "hello") {
            return { result: "continue", data: new TextEncoder().encode(NONCE) };
          }
          if (step === 2 && text === `hello:${NONCE}`) {
            return { result: "success", data: new TextEncoder().encode("welcome") };
          }
          return { result: "fail", code: 0x87, reason: "wrong answer to the challenge" };
        },
      };
    }
    if (method === ASYNC) {
      this.begun.push({ method, client, reauth });
      return {
        async step(data): Promise<AuthStep> {
          await delay(20);
          return new TextDecoder().decode(data) === "open"
            ? { result: "success", data: new TextEncoder().encode("async ok") }
            : { result: "fail", code: 0x86, reason: "closed" };
        },
      };
    }
    return null;
  }
}

/** An authenticator that supports no method, asked first, to show the broker asks the next one. */
const declinesAll: EnhancedAuthenticator = { begin: () => null };

function authPacket(reasonCode: number, method: string, data?: string): IAuthPacket {
  const properties: IAuthPacket["properties"] = { authenticationMethod: method };
  if (data !== undefined) properties.authenticationData = Buffer.from(data);
  return { cmd: "auth", reasonCode, properties };
}

/** Sends the enhanced-auth CONNECT for `method` with `data` and returns the connection. */
async function authConnect(broker: TestBroker, clientId: string, method: string, data: string) {
  const client = await RawClient.open(broker.port, 5);
  await client.send(connectPacket({
    protocolVersion: 5,
    clientId,
    properties: { authenticationMethod: method, authenticationData: Buffer.from(data) },
  }));
  return client;
}

/** Runs the challenge exchange through to CONNACK, asserting each step; returns the client. */
async function challengeLogin(broker: TestBroker, clientId: string): Promise<RawClient> {
  const client = await authConnect(broker, clientId, CHALLENGE, "hello");
  try {
    const challenge = await client.expect("auth");
    assert.equal(challenge.reasonCode, 0x18, "[MQTT-4.12.0-2] AUTH 0x18 continues the exchange");
    assert.equal(challenge.properties?.authenticationMethod, CHALLENGE, "[MQTT-4.12.0-5] same method");
    assert.equal(challenge.properties?.authenticationData?.toString(), NONCE);
    await client.send(authPacket(0x18, CHALLENGE, `hello:${NONCE}`));
    const connack = await client.expect("connack");
    assert.equal(connack.reasonCode, 0);
    assert.equal(connack.properties?.authenticationMethod, CHALLENGE);
    assert.equal(connack.properties?.authenticationData?.toString(), "welcome");
    return client;
  } catch (error) {
    await client.close();
    throw error;
  }
}

Deno.test("(4.12) enhanced auth: a challenge/response over AUTH 0x18 ends in CONNACK 0 with the method and data", async () => {
  const authn = new TestAuthenticator();
  await using broker = await startBroker({}, { authenticators: [declinesAll, authn] });
  await using client = await challengeLogin(broker, "scram");
  assert.equal(authn.begun.length, 1);
  const [{ client: who, reauth }] = authn.begun;
  assert.deepEqual([who.clientId, who.protocolVersion, who.address, reauth], [
    "scram",
    5,
    "127.0.0.1",
    false,
  ]);
  assert.deepEqual(await client.subscribe([["authed/#", 0]]), [0]);
  await client.publish("authed/x", "in");
  await client.expectPublish("authed/x", "in", 0);
});

Deno.test("(4.12) enhanced auth: MQTT.js answers the broker's challenge through handleAuth", async () => {
  await using broker = await startBroker({}, { authenticators: [new TestAuthenticator()] });
  const client: MqttClient = mqtt.connect({
    host: "127.0.0.1",
    port: broker.port,
    protocolVersion: 5,
    clientId: "mqttjs-auth",
    reconnectPeriod: 0,
    properties: { authenticationMethod: CHALLENGE, authenticationData: Buffer.from("hello") },
  });
  try {
    const challenges: IAuthPacket[] = [];
    client.handleAuth = (packet, callback) => {
      challenges.push(packet);
      const nonce = packet.properties?.authenticationData?.toString();
      callback(undefined, authPacket(0x18, CHALLENGE, `hello:${nonce}`));
    };
    const connack = await within(
      new Promise<IConnackPacket>((resolve, reject) => {
        client.once("connect", resolve);
        client.once("error", reject);
      }),
      "MQTT.js to authenticate",
    );
    assert.equal(challenges.length, 1);
    assert.equal(connack.properties?.authenticationData?.toString(), "welcome");
  } finally {
    await client.endAsync(true);
  }
});

Deno.test("(4.12) enhanced auth: a failed step gets CONNACK with the handler's code and Reason String, then close", async () => {
  await using broker = await startBroker({}, { authenticators: [new TestAuthenticator()] });
  await using other = await bystander(broker.port);
  await using client = await authConnect(broker, "wrong", CHALLENGE, "hello");
  assert.equal((await client.expect("auth")).reasonCode, 0x18);
  await client.send(authPacket(0x18, CHALLENGE, "hello:guess"));
  const connack = await client.expect("connack");
  assert.equal(connack.reasonCode, 0x87);
  assert.equal(connack.properties?.reasonString, "wrong answer to the challenge");
  await client.assertClosedSilently();
  assert.equal(broker.hasSession("wrong"), false);
  await assertAlive(broker, other);
});

Deno.test("[MQTT-4.12.0-1] enhanced auth: a method no authenticator supports gets CONNACK 0x8C and close", async () => {
  await using broker = await startBroker({}, { authenticators: [declinesAll, new TestAuthenticator()] });
  await using other = await bystander(broker.port);
  await using client = await authConnect(broker, "unknown", "NO-SUCH-METHOD", "x");
  await assertRefused(client, await client.expect("connack"), 0x8c);
  await assertAlive(broker, other);
});

Deno.test("(4.12) enhanced auth: no authenticators at all -> CONNACK 0x8C", async () => {
  await using broker = await startBroker();
  await using client = await authConnect(broker, "nobody", CHALLENGE, "hello");
  await assertRefused(client, await client.expect("connack"), 0x8c);
});

Deno.test("(4.12) enhanced auth: an asynchronous step (a Promise) completes the CONNECT", async () => {
  const authn = new TestAuthenticator();
  await using broker = await startBroker({}, { authenticators: [authn] });
  {
    await using client = await authConnect(broker, "async", ASYNC, "open");
    const connack = await client.expect("connack");
    assert.equal(connack.reasonCode, 0);
    assert.equal(connack.properties?.authenticationData?.toString(), "async ok");
    await client.assertIdle();
  }
  {
    await using refused = await authConnect(broker, "async-bad", ASYNC, "shut");
    await assertRefused(refused, await refused.expect("connack"), 0x86);
  }
  // MQTT.js, with no challenge to answer.
  await using js = await connectMqttJs(broker.port, {
    protocolVersion: 5,
    clientId: "async-js",
    properties: { authenticationMethod: ASYNC, authenticationData: Buffer.from("open") },
  });
  assert.equal(js.mqtt.serverProperties?.authenticationMethod, ASYNC);
});

/** An authenticator whose one step waits until the test opens the gate: frames sent meanwhile must wait too. */
function gate(): { authenticator: EnhancedAuthenticator; open(): void } {
  let open = () => {};
  const opened = new Promise<void>((resolve) => open = resolve);
  const authenticator: EnhancedAuthenticator = {
    begin: (method) =>
      method === "GATE"
        ? { step: async (): Promise<AuthStep> => (await opened, { result: "success" }) }
        : null,
  };
  return { authenticator, open: () => open() };
}

Deno.test("(3.2.2.2) limits.max_sessions reached: an MQTT 5 client needing a new session gets CONNACK 0x97", async () => {
  await using broker = await startBroker({ limits: { max_sessions: 1 } });
  await using first = await connect5(broker.port, "first");
  await using refused = await RawClient.open(broker.port, 5);
  await refused.send(connectPacket({ protocolVersion: 5, clientId: "second" }));
  const connack = await refused.expect("connack");
  assert.match(String(connack.properties?.reasonString), /session limit of 1 reached/);
  await assertRefused(refused, connack, 0x97);
  await first.assertIdle();
});

Deno.test("(4.12) packets sent while an authentication step runs are handled after CONNACK, in order", async () => {
  const { authenticator, open } = gate();
  await using broker = await startBroker({}, { authenticators: [authenticator] });
  await using client = await authConnect(broker, "gated", "GATE", "");
  await client.send({ cmd: "subscribe", messageId: 7, subscriptions: [{ topic: "gated/t", qos: 0 }] });
  await client.send({ cmd: "pingreq" });
  await delay(50);
  assert.deepEqual(client.pending, [], "nothing is answered before the step ends");
  open();
  assert.equal((await client.expect("connack")).reasonCode, 0);
  assert.equal((await client.expect("suback")).messageId, 7);
  await client.expect("pingresp");
  assert.ok(broker.server.broker.sessions.get("gated")?.subscriptions.has("gated/t"));
});

Deno.test("(4.12) an authenticator failing with a code below 0x80 still refuses: CONNACK 0x87", async () => {
  const sloppy: EnhancedAuthenticator = {
    begin: (method) =>
      method === "SLOPPY" ? { step: () => ({ result: "fail", code: 0, reason: "no" }) } : null,
  };
  await using broker = await startBroker({}, { authenticators: [sloppy] });
  await using client = await authConnect(broker, "sloppy", "SLOPPY", "");
  await assertRefused(client, await client.expect("connack"), 0x87);
  assert.equal(broker.server.broker.sessions.get("sloppy"), undefined);
});

Deno.test("(4.12) a client that floods while its authentication step runs is refused with CONNACK 0x82", async () => {
  const { authenticator, open } = gate();
  await using broker = await startBroker({ limits: { max_packet_size: 1024 } }, {
    authenticators: [authenticator],
  });
  await using other = await bystander(broker.port);
  await using client = await authConnect(broker, "flood", "GATE", "");
  // Each PUBLISH fits the packet limit; together they exceed what the broker holds for a pending exchange.
  for (let i = 0; i < 3; i++) await client.sendBytes(rawPublish5("flood/t", "x".repeat(500)));
  await assertRefused(client, await client.expect("connack"), 0x82);
  open();
  await assertAlive(broker, other);
  assert.equal(broker.server.broker.sessions.get("flood"), undefined);
});

Deno.test("(4.12.1) re-authentication: AUTH 0x19, the challenge again, then AUTH 0x00; the connection stays", async () => {
  const authn = new TestAuthenticator();
  await using broker = await startBroker({}, { authenticators: [authn] });
  await using client = await challengeLogin(broker, "reauth");
  await client.send(authPacket(0x19, CHALLENGE, "hello"));
  const challenge = await client.expect("auth");
  assert.equal(challenge.reasonCode, 0x18);
  assert.equal(challenge.properties?.authenticationData?.toString(), NONCE);
  await client.send(authPacket(0x18, CHALLENGE, `hello:${NONCE}`));
  const done = await client.expect("auth");
  assert.equal(done.reasonCode, 0x00);
  assert.equal(done.properties?.authenticationMethod, CHALLENGE);
  assert.deepEqual(authn.begun.map((b) => b.reauth), [false, true]);
  await client.assertIdle();
  assert.equal(client.isClosed, false);
});

Deno.test("(4.12.1) re-authentication that fails: DISCONNECT with the handler's code, then close", async () => {
  await using broker = await startBroker({}, { authenticators: [new TestAuthenticator()] });
  await using other = await bystander(broker.port);
  await using client = await challengeLogin(broker, "reauth-bad");
  await client.send(authPacket(0x19, CHALLENGE, "hello"));
  assert.equal((await client.expect("auth")).reasonCode, 0x18);
  await client.send(authPacket(0x18, CHALLENGE, "hello:wrong"));
  await assertServerDisconnect(client, 0x87);
  await assertAlive(broker, other);
});

Deno.test("[MQTT-4.12.0-7] AUTH from a client that connected without an Authentication Method: DISCONNECT 0x82", async () => {
  await using broker = await startBroker({}, { authenticators: [new TestAuthenticator()] });
  await using client = await connect5(broker.port, "plain");
  await client.send(authPacket(0x19, CHALLENGE, "hello"));
  await assertServerDisconnect(client, 0x82);
});

// --- The broker's DISCONNECT reason codes -------------------------------------------------------------------

Deno.test("[MQTT-3.1.4-3] takeover: the old 5.0 connection gets DISCONNECT 0x8E (raw and MQTT.js)", async () => {
  await using broker = await startBroker();
  await using old = await connect5(broker.port, "twin");
  await using taker = await connect5(broker.port, "twin");
  await assertServerDisconnect(old, 0x8e);
  await taker.assertIdle();

  await using js = await connectMqttJs(broker.port, { protocolVersion: 5, clientId: "js-twin" });
  const seen: IDisconnectPacket[] = [];
  js.mqtt.on("disconnect", (packet) => seen.push(packet));
  await using jsTaker = await connect5(broker.port, "js-twin");
  await until(() => seen.length === 1, "MQTT.js to get DISCONNECT");
  assert.equal(seen[0].reasonCode, 0x8e);
  await jsTaker.assertIdle();
});

Deno.test("[MQTT-3.1.2-22] keep-alive timeout: a silent 5.0 client gets DISCONNECT 0x8D", async () => {
  await using broker = await startBroker();
  await using silent = await connect5(broker.port, "sleeper", { keepalive: 1 });
  await assertServerDisconnect(silent, 0x8d, 3000);
  await broker.disconnected("sleeper", "keep-alive timeout");
});

Deno.test("(4.13) graceful stop: 5.0 clients get DISCONNECT 0x8B, 3.1.1 clients are just closed", async () => {
  await using broker = await startBroker();
  await using raw = await connect5(broker.port, "raw5");
  await using js = await connectMqttJs(broker.port, { protocolVersion: 5, clientId: "js5" });
  const seen: IDisconnectPacket[] = [];
  js.mqtt.on("disconnect", (packet) => seen.push(packet));
  await using old = await RawClient.connected(broker.port, { clientId: "raw311" });
  await broker.stop();
  await assertServerDisconnect(raw, 0x8b);
  await until(() => seen.length === 1, "MQTT.js to get DISCONNECT");
  assert.equal(seen[0].reasonCode, 0x8b);
  await old.assertClosedSilently();
});

Deno.test("[MQTT-4.13.1-1] malformed packets get DISCONNECT 0x81: truncated properties, a property PUBLISH may not have", async () => {
  await using broker = await startBroker();
  await using other = await bystander(broker.port);
  const malformed: [string, Uint8Array][] = [
    // Property Length 10, but the packet ends after one more byte.
    ["truncated", frame(0x30, [...utf8("t"), 10, 0x01])],
    // Session Expiry Interval (0x11) is a CONNECT/CONNACK/DISCONNECT property, not a PUBLISH one.
    ["wrong-property", rawPublish5("t", "x", [prop.u32(0x11, 10)])],
    // Two Property Length bytes claiming a continuation that never comes.
    ["bad-varint", frame(0x30, [...utf8("t"), 0x80])],
  ];
  for (const [clientId, bytes] of malformed) {
    await using client = await connect5(broker.port, clientId);
    await client.sendBytes(bytes);
    await assertServerDisconnect(client, 0x81);
  }
  await assertAlive(broker, other);
});

Deno.test("[MQTT-3.1.0-2] a second CONNECT is a protocol error: DISCONNECT 0x82", async () => {
  await using broker = await startBroker();
  await using other = await bystander(broker.port);
  await using client = await connect5(broker.port, "again");
  await client.send(connectPacket({ protocolVersion: 5, clientId: "again" }));
  await assertServerDisconnect(client, 0x82);
  await assertAlive(broker, other);
});

Deno.test("[MQTT-3.2.2-15] a packet larger than the announced Maximum Packet Size: DISCONNECT 0x95", async () => {
  await using broker = await startBroker({ limits: { max_packet_size: 64 } });
  await using other = await bystander(broker.port);
  await using client = await connect5(broker.port, "big");
  assert.equal(client.connack.properties?.maximumPacketSize, 64);
  // Exactly 64 bytes is fine: 2 header + 3 topic + 1 property length + 58 payload.
  await client.publishAcked("t", "x".repeat(58));
  await client.publish("t", "x".repeat(59));
  await assertServerDisconnect(client, 0x95);
  await assertAlive(broker, other);
});

Deno.test("(3.1.2.11) a property twice in CONNECT is a protocol error: CONNACK 0x82, then close", async () => {
  await using broker = await startBroker();
  await using other = await bystander(broker.port);
  const twice = [prop.u32(0x11, 10), prop.u32(0x11, 20)];
  await using client = await RawClient.open(broker.port, 5);
  await client.sendBytes(rawConnect5("twice", { properties: twice }));
  await assertRefused(client, await client.expect("connack"), 0x82);
  assert.equal(broker.hasSession("twice"), false);
  await assertAlive(broker, other);
});

Deno.test("(2.2.2.2) a property CONNECT may not carry (Topic Alias) is malformed: CONNACK 0x81, then close", async () => {
  await using broker = await startBroker();
  await using other = await bystander(broker.port);
  await using client = await RawClient.open(broker.port, 5);
  await client.sendBytes(rawConnect5("alias", { properties: [prop.u16(0x23, 1)] }));
  await assertRefused(client, await client.expect("connack"), 0x81);
  assert.equal(broker.hasSession("alias"), false);
  await assertAlive(broker, other);
});

Deno.test("(3.1.2.11.10) Authentication Data without an Authentication Method: CONNACK 0x82", async () => {
  await using broker = await startBroker({}, { authenticators: [new TestAuthenticator()] });
  await using client = await RawClient.open(broker.port, 5);
  await client.sendBytes(rawConnect5("data-only", { properties: [prop.binary(0x16, utf8Bytes("hello"))] }));
  await assertRefused(client, await client.expect("connack"), 0x82);
});

// --- The client's DISCONNECT and the will ---------------------------------------------------------------------

Deno.test("(3.14.2.1) DISCONNECT 0x04 or an error code publishes the will; only 0x00 discards it [MQTT-3.14.4-3]", async () => {
  await using broker = await startBroker();
  await using watch = await connect5(broker.port, "watch");
  assert.deepEqual(await watch.subscribe([["will/#", 1]]), [1]);
  for (const [clientId, reasonCode] of [["with-will", 0x04], ["failing", 0x80], ["normal", 0x00]] as const) {
    await using owner = await connect5(broker.port, clientId, {
      will: { topic: `will/${clientId}`, payload: Buffer.from(`${clientId} left`), qos: 1, retain: false },
    });
    await owner.send({ cmd: "disconnect", reasonCode });
    assert.deepEqual(await owner.closedByBroker(), [], "the broker answers DISCONNECT by closing");
    await broker.disconnected(clientId);
  }
  for (const clientId of ["with-will", "failing"]) {
    const will = await watch.expectPublish(`will/${clientId}`, `${clientId} left`, 1);
    await watch.send({ cmd: "puback", messageId: will.messageId });
  }
  // "normal"'s will would have come next; a marker published now comes first instead.
  await watch.publish("will/marker", "marker");
  await watch.expectPublish("will/marker", "marker");
});
