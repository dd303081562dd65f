import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import { Buffer } from "node:buffer";
import { decodePacket, type Packet, type ProtocolVersion } from "../../src/protocol/codec.ts";
import { decodeConnect, encodeConnack } from "../../src/protocol/connect.ts";
import { encodeAuth, encodeDisconnect } from "../../src/protocol/control.ts";
import { encodeAck, encodePublish } from "../../src/protocol/hot.ts";
import { withPacketId } from "../helpers/bytes.ts";
import { encodeProperties, type Properties } from "../../src/protocol/properties.ts";
import { encodeSuback, encodeUnsuback } from "../../src/protocol/subscribe.ts";

const utf8 = (text: string) => new TextEncoder().encode(text);
const str = (text: string) => [0, utf8(text).length, ...utf8(text)];

// ---- mqtt-packet as the reference ----

/** Our property names, in identifier order; mqtt-packet writes them in the order its object lists them. */
const KEY_ORDER: (keyof Properties)[] = [
  "payloadFormatIndicator",
  "messageExpiryInterval",
  "contentType",
  "responseTopic",
  "correlationData",
  "subscriptionIdentifiers",
  "sessionExpiryInterval",
  "assignedClientIdentifier",
  "serverKeepAlive",
  "authenticationMethod",
  "authenticationData",
  "requestProblemInformation",
  "willDelayInterval",
  "requestResponseInformation",
  "responseInformation",
  "serverReference",
  "reasonString",
  "receiveMaximum",
  "topicAliasMaximum",
  "topicAlias",
  "maximumQoS",
  "retainAvailable",
  "userProperties",
  "maximumPacketSize",
  "wildcardSubscriptionAvailable",
  "subscriptionIdentifierAvailable",
  "sharedSubscriptionAvailable",
];
/** Byte properties mqtt-packet represents as booleans. */
const BOOLEANS = new Set<string>([
  "payloadFormatIndicator",
  "requestProblemInformation",
  "requestResponseInformation",
  "retainAvailable",
  "wildcardSubscriptionAvailable",
  "subscriptionIdentifierAvailable",
  "sharedSubscriptionAvailable",
]);

/**
 * Our Properties in mqtt-packet's object form (its names, booleans, grouped user properties). Grouping loses
 * the order of interleaved user property keys, so order is checked on raw bytes elsewhere.
 */
function toMp(properties: Properties | undefined): Record<string, unknown> | undefined {
  if (!properties) return undefined;
  const out: Record<string, unknown> = {};
  for (const key of KEY_ORDER) {
    const value = properties[key];
    if (value === undefined) continue;
    if (key === "subscriptionIdentifiers") {
      const ids = value as number[];
      out.subscriptionIdentifier = ids.length === 1 ? ids[0] : ids;
    } else if (key === "subscriptionIdentifierAvailable") out.subscriptionIdentifiersAvailable = value === 1;
    else if (BOOLEANS.has(key)) out[key] = value === 1;
    else if (key === "userProperties") {
      const grouped: Record<string, string | string[]> = {};
      for (const [k, v] of value as [string, string][]) {
        const seen = grouped[k];
        grouped[k] = seen === undefined ? v : Array.isArray(seen) ? [...seen, v] : [seen, v];
      }
      out.userProperties = grouped;
    } else if (value instanceof Uint8Array) out[key] = Buffer.from(value);
    else out[key] = value;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** Deep copy with byte arrays as number arrays and plain prototypes, for deepEqual across libraries. */
function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return [...value];
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = plain(v);
    return out;
  }
  return value;
}

function mpParse(bytes: Uint8Array, version: ProtocolVersion = 5): Record<string, unknown> {
  let result: Record<string, unknown> | Error = new Error("incomplete packet");
  const parser = mqttPacket.parser({ protocolVersion: version });
  parser.on("packet", (p: mqttPacket.Packet) => result = { ...p });
  parser.on("error", (e: Error) => result = e);
  parser.parse(Buffer.from(bytes));
  if (result instanceof Error) throw result;
  return result;
}

function mpGenerate(packet: Record<string, unknown>): Uint8Array {
  return new Uint8Array(mqttPacket.generate(packet as unknown as mqttPacket.Packet, { protocolVersion: 5 }));
}

function decoded(frame: Uint8Array, version: ProtocolVersion = 5): Packet {
  const result = decodePacket(frame, version);
  if ("kind" in result && (result.kind === "malformed" || result.kind === "protocol")) {
    assert.fail(`${result.kind}: ${result.message}`);
  }
  return result as Packet;
}

function error(
  frame: number[] | Uint8Array,
  version: ProtocolVersion = 5,
): { kind: string; message: string } {
  const result = decodePacket(Uint8Array.from(frame), version);
  assert.ok("kind" in result && "message" in result, `accepted: ${[...frame]}`);
  return result as { kind: string; message: string };
}

/** A packet of type byte `first` around `body`, with a one- or two-byte remaining length. */
function packet(first: number, body: number[]): Uint8Array {
  const length = body.length < 128 ? [body.length] : [(body.length & 0x7f) | 0x80, body.length >> 7];
  return Uint8Array.from([first, ...length, ...body]);
}

// ---- property sets used below ----

const CONNECT_PROPERTIES: Properties = {
  sessionExpiryInterval: 0xffffffff,
  authenticationMethod: "SCRAM",
  authenticationData: Uint8Array.of(1, 2, 3),
  requestProblemInformation: 0,
  requestResponseInformation: 1,
  receiveMaximum: 20,
  topicAliasMaximum: 16,
  userProperties: [["a", "1"], ["a", "2"], ["b", "ü"]],
  maximumPacketSize: 65536,
};
const WILL_PROPERTIES: Properties = {
  payloadFormatIndicator: 1,
  messageExpiryInterval: 100,
  contentType: "text/plain",
  responseTopic: "will/reply",
  correlationData: Uint8Array.of(0xde, 0xad),
  willDelayInterval: 30,
  userProperties: [["w", "x"]],
};
const PUBLISH_PROPERTIES: Properties = {
  payloadFormatIndicator: 1,
  messageExpiryInterval: 3600,
  contentType: "application/json",
  responseTopic: "reply/to",
  correlationData: Uint8Array.of(1, 2),
  topicAlias: 7,
  userProperties: [["k", "v1"], ["k", "v2"], ["z", "last"]],
};
const CONNACK_PROPERTIES: Properties = {
  sessionExpiryInterval: 120,
  assignedClientIdentifier: "auto-42",
  serverKeepAlive: 30,
  authenticationMethod: "SCRAM",
  authenticationData: Uint8Array.of(4),
  responseInformation: "responses/",
  serverReference: "elsewhere:1883",
  reasonString: "welcome",
  receiveMaximum: 100,
  topicAliasMaximum: 10,
  maximumQoS: 1,
  retainAvailable: 0,
  userProperties: [["server", "vyoma"]],
  maximumPacketSize: 1048576,
  wildcardSubscriptionAvailable: 0,
  subscriptionIdentifierAvailable: 0,
  sharedSubscriptionAvailable: 0,
};
const REASON: Properties = { reasonString: "because", userProperties: [["r", "1"], ["r", "2"]] };

// ---- decoding, against mqtt-packet's generator ----

Deno.test("v5 codec: CONNECT with every property and will property reads what mqtt-packet wrote", () => {
  for (const withWill of [false, true]) {
    for (const [username, password] of [[undefined, undefined], ["user", Buffer.from("pw")]] as const) {
      const frame = mpGenerate({
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: 5,
        clean: false,
        keepalive: 60,
        clientId: "client-é",
        properties: toMp(CONNECT_PROPERTIES),
        will: withWill
          ? {
            topic: "w/t",
            payload: Buffer.from([0, 255]),
            qos: 1,
            retain: true,
            properties: toMp(WILL_PROPERTIES),
          }
          : undefined,
        username,
        password,
      });
      const ours = decodeConnect(frame);
      if ("kind" in ours) assert.fail(ours.message);
      const theirs = mpParse(frame);
      assert.equal(ours.protocolVersion, 5);
      assert.equal(ours.clientId, theirs.clientId);
      assert.equal(ours.clean, false);
      assert.equal(ours.keepalive, 60);
      assert.equal(ours.username, username);
      assert.deepEqual(plain(ours.password), plain(password));
      assert.deepEqual(plain(toMp(ours.properties)), plain(theirs.properties));
      assert.deepEqual(ours.properties?.userProperties, CONNECT_PROPERTIES.userProperties);
      const theirWill = theirs.will as Record<string, unknown> | undefined;
      assert.equal(ours.will?.topic, theirWill?.topic);
      assert.deepEqual(plain(ours.will?.payload), plain(theirWill?.payload));
      assert.equal(ours.will?.qos, theirWill?.qos);
      assert.equal(ours.will?.retain, theirWill?.retain);
      assert.deepEqual(plain(toMp(ours.will?.properties)), plain(theirWill?.properties));
      if (withWill) {
        const { willDelayInterval: _, messageExpiryInterval: __, ...forwarded } = WILL_PROPERTIES;
        assert.deepEqual([...ours.will!.forward!], [...encodeProperties(forwarded)]);
      }
      // Through decodePacket too (a second CONNECT is the broker's business, not the codec's).
      assert.equal(decoded(frame).cmd, "connect");
    }
  }
});

/** A v5 CONNECT with these flags, property block bytes and payload bytes. */
function connect5(flags: number, properties: number[], payload: number[]): Uint8Array {
  return packet(0x10, [0, 4, 0x4d, 0x51, 0x54, 0x54, 5, flags, 0, 0, ...properties, ...payload]);
}
const id = [0, 1, 0x63];

Deno.test("v5 codec: CONNECT rules of MQTT 5.0", () => {
  // A password without a user name is allowed in 5.0 (section 3.1.2.9).
  const withPassword = decodeConnect(connect5(0x42, [0], [...id, 0, 2, 0x70, 0x77]));
  if ("kind" in withPassword) assert.fail(withPassword.message);
  assert.deepEqual([...withPassword.password!], [0x70, 0x77]);
  assert.equal(withPassword.properties && Object.keys(withPassword.properties).length, 0);

  const cases: [string, Uint8Array, "malformed" | "protocol", RegExp][] = [
    [
      "authentication data without method",
      connect5(0x02, [4, 0x16, 0, 1, 9], id),
      "protocol",
      /Authentication/,
    ],
    ["duplicate property", connect5(0x02, [6, 0x21, 0, 1, 0x21, 0, 1], id), "protocol", /more than once/],
    ["receive maximum 0", connect5(0x02, [3, 0x21, 0, 0], id), "protocol", /Receive Maximum/],
    ["topic alias in CONNECT", connect5(0x02, [3, 0x23, 0, 1], id), "malformed", /not allowed/],
    [
      "session expiry in will properties",
      connect5(0x06, [0], [...id, 5, 0x11, 0, 0, 0, 1, ...str("t"), 0, 0]),
      "malformed",
      /not allowed/,
    ],
    [
      "will payload format indicator 2",
      connect5(0x06, [0], [...id, 2, 0x01, 2, ...str("t"), 0, 0]),
      "protocol",
      /Payload Format/,
    ],
    ["properties past the end", connect5(0x02, [9, 0x11], []), "malformed", /past the end/],
    ["no property length", connect5(0x02, [], []), "malformed", /./],
    ["reserved flag", connect5(0x03, [0], id), "malformed", /reserved/],
    ["will QoS 3", connect5(0x1e, [0], [...id, 0, ...str("t"), 0, 0]), "malformed", /QoS/],
    ["trailing bytes", connect5(0x02, [0], [...id, 1]), "malformed", /after its last field/],
  ];
  for (const [name, frame, kind, reason] of cases) {
    const result = decodeConnect(frame);
    assert.ok("kind" in result, `${name} was accepted`);
    assert.equal(result.kind, kind, name);
    assert.match(result.message, reason, name);
  }
});

Deno.test("v5 codec: PUBLISH with every property reads what mqtt-packet wrote; forward keeps the bytes", () => {
  for (const qos of [0, 1, 2] as const) {
    for (const topic of ["a/b", "", "sensors/ü"]) {
      const payload = Buffer.alloc(qos * 100 + 3, 0x61);
      const frame = mpGenerate({
        cmd: "publish",
        topic,
        payload,
        qos,
        retain: qos === 1,
        dup: qos === 2,
        messageId: qos > 0 ? 0x1234 : undefined,
        properties: toMp(PUBLISH_PROPERTIES),
      });
      const ours = decoded(frame);
      assert.equal(ours.cmd, "publish");
      if (ours.cmd !== "publish") return;
      const theirs = mpParse(frame);
      assert.equal(ours.topic, topic);
      assert.equal(ours.qos, qos);
      assert.equal(ours.retain, theirs.retain);
      assert.equal(ours.dup, theirs.dup);
      assert.equal(ours.messageId, theirs.messageId);
      assert.deepEqual([...ours.payload], [...payload]);
      assert.deepEqual([...ours.topicBytes], [...utf8(topic)]);
      assert.equal(ours.topicAlias, 7);
      assert.equal(ours.messageExpiryInterval, 3600);
      assert.equal(ours.payloadFormatIndicator, 1);
      const { topicAlias: _, messageExpiryInterval: __, ...forwarded } = PUBLISH_PROPERTIES;
      assert.deepEqual([...ours.forward!], [...encodeProperties(forwarded)]);
    }
  }
  // No properties: nothing set, nothing to forward.
  const bare = decoded(mpGenerate({ cmd: "publish", topic: "t", payload: Buffer.from("x"), qos: 0 }));
  assert.ok(bare.cmd === "publish" && bare.forward === undefined && bare.topicAlias === undefined);
  assert.ok(bare.cmd === "publish" && [...bare.payload].length === 1);
});

Deno.test("v5 codec: PUBLISH errors", () => {
  // A client may not send a Subscription Identifier [MQTT-3.3.4-6].
  const withSubId = packet(0x30, [...str("t"), 2, 0x0b, 1, 0x78]);
  assert.equal(error(withSubId).kind, "protocol");
  assert.equal(error(packet(0x30, [...str("t"), 2, 0x23, 0])).kind, "malformed", "truncated topic alias");
  assert.equal(error(packet(0x30, [...str("t"), 4, 0x23, 0, 1])).kind, "malformed", "block past the end");
  assert.equal(error(packet(0x30, [...str("t"), 6, 0x23, 0, 1, 0x23, 0, 2])).kind, "protocol", "duplicate");
  assert.equal(error(packet(0x30, [...str("t"), 5, 0x11, 0, 0, 0, 1])).kind, "malformed", "not allowed");
  assert.equal(error(packet(0x32, [...str("t"), 0, 0, 0])).kind, "malformed", "packet id 0");
  assert.equal(error(packet(0x30, [...str("t")])).kind, "malformed", "no property length");
  // Topic alias 0 is left to the broker (0x94); an empty topic is allowed.
  const alias0 = decoded(packet(0x30, [0, 0, 3, 0x23, 0, 0, 0x78]));
  assert.ok(alias0.cmd === "publish" && alias0.topicAlias === 0 && alias0.topic === "");
});

Deno.test("v5 codec: an MQTT 3.1.1 PUBLISH gets none of the 5.0 fields", () => {
  const frame = mqttPacket.generate({
    cmd: "publish",
    topic: "t",
    payload: Buffer.from("x"),
    qos: 1,
    messageId: 5,
    dup: false,
    retain: false,
  });
  const ours = decoded(frame, 4);
  assert.deepEqual(Object.keys(ours), [
    "cmd",
    "topic",
    "topicBytes",
    "payload",
    "qos",
    "retain",
    "dup",
    "messageId",
    "frame",
  ]);
});

Deno.test("v5 codec: acknowledgements in all three lengths", () => {
  for (const cmd of ["puback", "pubrec", "pubrel", "pubcomp"] as const) {
    const code = cmd === "pubrel" || cmd === "pubcomp" ? 0x92 : 0x10;
    const short = decoded(mpGenerate({ cmd, messageId: 7, reasonCode: 0 }));
    assert.deepEqual(short, { cmd, messageId: 7, reasonCode: 0 });
    const first = { puback: 0x40, pubrec: 0x50, pubrel: 0x62, pubcomp: 0x70 }[cmd];
    assert.deepEqual(decoded(Uint8Array.of(first, 3, 0, 7, code)), { cmd, messageId: 7, reasonCode: code });
    const full = mpGenerate({ cmd, messageId: 7, reasonCode: code, properties: toMp(REASON) });
    assert.deepEqual(decoded(full), { cmd, messageId: 7, reasonCode: code, properties: REASON });
    // Errors: a code the packet does not have, trailing bytes, a property it does not have.
    const wrong = cmd === "pubrel" || cmd === "pubcomp" ? 0x10 : 0x92;
    assert.equal(error([first, 3, 0, 7, wrong]).kind, "malformed", `${cmd} code ${wrong}`);
    assert.equal(error([first, 5, 0, 7, 0, 0, 0xff]).kind, "malformed", `${cmd} trailing`);
    assert.equal(error([first, 6, 0, 7, 0, 2, 0x23, 0]).kind, "malformed", `${cmd} property`);
    assert.equal(error([first, 2, 0, 0]).kind, "malformed", `${cmd} id 0`);
    assert.equal(error([first, 1, 0]).kind, "malformed", `${cmd} too short`);
  }
  for (const code of [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]) {
    assert.equal(decoded(Uint8Array.of(0x40, 3, 0, 1, code)).cmd, "puback");
  }
  for (const code of [0x01, 0x11, 0x81, 0x92]) assert.equal(error([0x50, 3, 0, 1, code]).kind, "malformed");
});

Deno.test("v5 codec: DISCONNECT in every form, and only a client's reason codes", () => {
  assert.deepEqual(decoded(Uint8Array.of(0xe0, 0)), { cmd: "disconnect", reasonCode: 0 });
  assert.deepEqual(decoded(Uint8Array.of(0xe0, 1, 0x04)), { cmd: "disconnect", reasonCode: 4 });
  const properties: Properties = {
    sessionExpiryInterval: 60,
    reasonString: "bye",
    userProperties: [["a", "b"]],
  };
  const full = mpGenerate({ cmd: "disconnect", reasonCode: 0x80, properties: toMp(properties) });
  assert.deepEqual(decoded(full), { cmd: "disconnect", reasonCode: 0x80, properties });
  for (const code of [0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99]) {
    assert.equal(decoded(Uint8Array.of(0xe0, 1, code)).cmd, "disconnect", `0x${code.toString(16)}`);
  }
  // Server-only codes (table 3-10) and codes that do not exist.
  for (const code of [0x01, 0x87, 0x89, 0x8b, 0x8d, 0x8e, 0x9c, 0xa2]) {
    assert.equal(error([0xe0, 1, code]).kind, "malformed", `0x${code.toString(16)}`);
  }
  assert.equal(error([0xe1, 0]).kind, "malformed", "flags");
  assert.equal(error([0xe0, 3, 0, 1, 0x17]).kind, "malformed", "property not in DISCONNECT");
  assert.equal(error([0xe0, 4, 0, 1, 0x25, 1]).kind, "malformed", "property not in DISCONNECT");
  assert.equal(error([0xe0, 3, 0, 0, 0]).kind, "malformed", "trailing");
  // MQTT 3.1.1: two bytes, reason code 0.
  assert.deepEqual(decoded(Uint8Array.of(0xe0, 0), 4), { cmd: "disconnect", reasonCode: 0 });
  assert.equal(error([0xe0, 1, 0x04], 4).kind, "malformed");
});

Deno.test("v5 codec: AUTH reads what mqtt-packet wrote; MQTT 3.1.1 has no AUTH", () => {
  const properties: Properties = {
    authenticationMethod: "SCRAM",
    authenticationData: Uint8Array.of(1, 2),
    reasonString: "more",
    userProperties: [["x", "y"]],
  };
  for (const reasonCode of [0x00, 0x18, 0x19] as const) {
    const frame = mpGenerate({ cmd: "auth", reasonCode, properties: toMp(properties) });
    assert.deepEqual(plain(decoded(frame)), plain({ cmd: "auth", reasonCode, properties }));
  }
  assert.deepEqual(decoded(Uint8Array.of(0xf0, 0)), { cmd: "auth", reasonCode: 0, properties: {} });
  assert.equal(error([0xf0, 2, 0x01, 0]).kind, "malformed", "reason code 1");
  assert.equal(error([0xf0, 1, 0x18]).kind, "malformed", "code without property length");
  assert.equal(error([0xf1, 0]).kind, "malformed", "flags");
  assert.equal(error([0xf0, 4, 0x18, 2, 0x21, 0]).kind, "malformed", "property not in AUTH");
  const v3 = error([0xf0, 0], 4);
  assert.equal(v3.kind, "malformed");
  assert.match(v3.message, /reserved packet type/);
  assert.match(error([0xf0, 0], 3).message, /reserved packet type/);
});

Deno.test("v5 codec: SUBSCRIBE with options and properties reads what mqtt-packet wrote, in both versions", () => {
  const subscriptions = [
    { topic: "a/+", qos: 0, nl: false, rap: false, rh: 0 },
    { topic: "$share/g/b/#", qos: 1, nl: true, rap: false, rh: 1 },
    { topic: "ü/c", qos: 2, nl: false, rap: true, rh: 2 },
  ] as const;
  const properties: Properties = { subscriptionIdentifiers: [300], userProperties: [["p", "q"]] };
  const frame = mpGenerate({
    cmd: "subscribe",
    messageId: 99,
    subscriptions: subscriptions.map((s) => ({ ...s })),
    properties: toMp(properties),
  });
  assert.deepEqual(decoded(frame), {
    cmd: "subscribe",
    messageId: 99,
    subscriptions: subscriptions.map((s) => ({
      topic: s.topic,
      qos: s.qos,
      noLocal: s.nl,
      retainAsPublished: s.rap,
      retainHandling: s.rh,
    })),
    properties,
  });
  const v4 = mqttPacket.generate({
    cmd: "subscribe",
    messageId: 3,
    subscriptions: [{ topic: "x", qos: 1 }, { topic: "y/#", qos: 2 }],
  });
  assert.deepEqual(decoded(v4, 4), {
    cmd: "subscribe",
    messageId: 3,
    subscriptions: [
      { topic: "x", qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 },
      { topic: "y/#", qos: 2, noLocal: false, retainAsPublished: false, retainHandling: 0 },
    ],
  });
  // No properties in 5.0: the shared empty object.
  const empty = decoded(packet(0x82, [0, 1, 0, ...str("t"), 0]));
  assert.ok(empty.cmd === "subscribe" && Object.keys(empty.properties!).length === 0);
});

Deno.test("v5 codec: SUBSCRIBE errors", () => {
  const sub = (options: number, version: ProtocolVersion = 5) =>
    error(packet(0x82, [0, 1, ...(version === 5 ? [0] : []), ...str("t"), options]), version);
  assert.equal(sub(0x04, 4).kind, "malformed", "3.1.1: No Local bit is reserved");
  assert.equal(sub(0x40, 4).kind, "malformed", "3.1.1: bit 6");
  assert.equal(sub(0x40).kind, "malformed", "5.0: bit 6");
  assert.equal(sub(0x80).kind, "malformed", "5.0: bit 7");
  assert.equal(sub(0x03).kind, "malformed", "QoS 3");
  assert.equal(sub(0x03, 4).kind, "malformed", "QoS 3 in 3.1.1");
  assert.equal(sub(0x30).kind, "protocol", "retain handling 3");
  assert.equal(error(packet(0x82, [0, 1, 0])).kind, "protocol", "no filters [MQTT-3.8.3-2]");
  assert.equal(error(packet(0x82, [0, 1])).kind, "malformed", "no property length");
  assert.equal(error(packet(0x80, [0, 1, 0, ...str("t"), 0])).kind, "malformed", "flags [MQTT-3.8.1-1]");
  assert.equal(error(packet(0x82, [0, 0, 0, ...str("t"), 0])).kind, "malformed", "packet id 0");
  assert.equal(error(packet(0x82, [0, 1, 2, 0x0b, 0, ...str("t"), 0])).kind, "protocol", "subscription id 0");
  assert.equal(error(packet(0x82, [0, 1, 4, 0x0b, 1, 0x0b, 2, ...str("t"), 0])).kind, "protocol", "two ids");
  assert.equal(error(packet(0x82, [0, 1, 2, 0x01, 0, ...str("t"), 0])).kind, "malformed", "not allowed");
  assert.equal(error(packet(0x82, [0, 1, 0, ...str("t")])).kind, "malformed", "options byte missing");
  assert.equal(error(packet(0x82, [0, 1, 0, 0, 3, 0x61])).kind, "malformed", "filter past the end");
  assert.match(error(packet(0x82, [0, 1, 0, 0, 2, 0xc3, 0x28, 0])).message, /UTF-8/);
  assert.match(error(packet(0x82, [0, 1, 0, 0, 1, 0x00, 0])).message, /U\+0000/);
});

Deno.test("v5 codec: UNSUBSCRIBE in both versions, and its errors", () => {
  const frame = mpGenerate({
    cmd: "unsubscribe",
    messageId: 12,
    unsubscriptions: ["a", "b/#"],
    properties: { userProperties: { u: "v" } },
  });
  assert.deepEqual(decoded(frame), {
    cmd: "unsubscribe",
    messageId: 12,
    unsubscriptions: ["a", "b/#"],
    properties: { userProperties: [["u", "v"]] },
  });
  const v4 = mqttPacket.generate({ cmd: "unsubscribe", messageId: 12, unsubscriptions: ["a"] });
  assert.deepEqual(decoded(v4, 4), { cmd: "unsubscribe", messageId: 12, unsubscriptions: ["a"] });
  assert.equal(error(packet(0xa2, [0, 1, 0])).kind, "protocol", "no filters");
  assert.equal(error(packet(0xa2, [0, 1]), 4).kind, "protocol", "no filters in 3.1.1");
  assert.equal(error(packet(0xa0, [0, 1, 0, ...str("t")])).kind, "malformed", "flags");
  assert.equal(error(packet(0xa2, [0, 0, 0, ...str("t")])).kind, "malformed", "packet id 0");
  assert.equal(error(packet(0xa2, [0, 1, 2, 0x0b, 1, ...str("t")])).kind, "malformed", "subscription id");
  assert.equal(error(packet(0xa2, [0, 1, 0, 0, 2, 0x61])).kind, "malformed", "filter past the end");
});

Deno.test("v5 codec: packets only a server sends, and reserved types", () => {
  // Each as that version would write it (3.1.1 UNSUBACK has a fixed remaining length of 2).
  const cases: [string, number[], number[]][] = [
    ["CONNACK", [0x20, 2, 0, 0], [0x20, 3, 0, 0, 0]],
    ["SUBACK", [0x90, 3, 0, 1, 0], [0x90, 4, 0, 1, 0, 0]],
    ["UNSUBACK", [0xb0, 2, 0, 1], [0xb0, 4, 0, 1, 0, 0]],
    ["PINGRESP", [0xd0, 0], [0xd0, 0]],
  ];
  for (const version of [4, 5] as const) {
    for (const [name, v4, v5] of cases) {
      const result = error(version === 4 ? v4 : v5, version);
      assert.equal(result.kind, "protocol", `${name} v${version}`);
      assert.equal(result.message, `${name} is never sent by a client`);
    }
    const reserved = error([0x00, 0], version);
    assert.equal(reserved.kind, "malformed");
    assert.match(reserved.message, /reserved packet type/);
  }
  assert.deepEqual(decoded(Uint8Array.of(0xc0, 0)), { cmd: "pingreq" });
  assert.equal(error([0xc0, 1, 0]).kind, "malformed", "PINGREQ with a body");
});

// ---- encoding, against mqtt-packet's parser ----

Deno.test("v5 codec: CONNACK in 5.0 with every property parses in mqtt-packet; 3.1.1 form unchanged", () => {
  const theirs = mpParse(encodeConnack(0x00, true, 5, CONNACK_PROPERTIES));
  assert.equal(theirs.sessionPresent, true);
  assert.equal(theirs.reasonCode, 0);
  assert.deepEqual(plain(theirs.properties), plain(toMp(CONNACK_PROPERTIES)));
  assert.deepEqual([...encodeConnack(0x87, false, 5)], [0x20, 3, 0, 0x87, 0]);
  assert.deepEqual([...encodeConnack(0x87, false, 5, {})], [0x20, 3, 0, 0x87, 0]);
  assert.deepEqual([...encodeConnack(5, true)], [0x20, 2, 1, 5]);
  assert.deepEqual([...encodeConnack(5, true, 4, CONNACK_PROPERTIES)], [0x20, 2, 1, 5]);
  // The user property order survives (mqtt-packet's object form would group them).
  const ordered: Properties = { userProperties: [["b", "1"], ["a", "2"], ["b", "3"]] };
  const bytes = encodeConnack(0, false, 5, ordered);
  assert.deepEqual([...bytes.subarray(5)], [...encodeProperties(ordered)]);
});

Deno.test("v5 codec: acknowledgements parse in mqtt-packet, in the shortest form", () => {
  for (const cmd of ["puback", "pubrec", "pubrel", "pubcomp"] as const) {
    const code = cmd === "pubrel" || cmd === "pubcomp" ? 0x92 : 0x87;
    assert.equal(encodeAck(cmd, 9).length, 4);
    assert.equal(encodeAck(cmd, 9, 0, {}).length, 4);
    assert.equal(encodeAck(cmd, 9, 0, { userProperties: [] }).length, 4);
    const codeOnly = encodeAck(cmd, 9, code);
    assert.equal(codeOnly.length, 5);
    assert.deepEqual(
      {
        cmd: mpParse(codeOnly).cmd,
        messageId: mpParse(codeOnly).messageId,
        reasonCode: mpParse(codeOnly).reasonCode,
      },
      { cmd, messageId: 9, reasonCode: code },
    );
    const full = mpParse(encodeAck(cmd, 0xfffe, code, REASON));
    assert.equal(full.messageId, 0xfffe);
    assert.equal(full.reasonCode, code);
    assert.deepEqual(plain(full.properties), plain(toMp(REASON)));
    // Properties with code 0 need the code byte too.
    const zero = mpParse(encodeAck(cmd, 1, 0, { reasonString: "ok" }));
    assert.equal(zero.reasonCode, 0);
    assert.deepEqual(plain(zero.properties), { reasonString: "ok" });
    // And our own decoder reads them back, user property order included.
    const ours = decoded(encodeAck(cmd, 3, code, REASON));
    assert.deepEqual(ours, { cmd, messageId: 3, reasonCode: code, properties: REASON });
  }
});

Deno.test("v5 codec: SUBACK and UNSUBACK with properties parse in mqtt-packet", () => {
  const granted = [0, 1, 2, 0x80, 0x8f, 0x9e, 0xa1, 0xa2];
  const suback = mpParse(encodeSuback(0x0102, granted, 5, REASON));
  assert.equal(suback.messageId, 0x0102);
  assert.deepEqual(suback.granted, granted);
  assert.deepEqual(plain(suback.properties), plain(toMp(REASON)));
  assert.deepEqual([...encodeSuback(1, [0], 5)], [0x90, 4, 0, 1, 0, 0]);
  assert.deepEqual([...encodeSuback(1, [0], 4, REASON)], [0x90, 3, 0, 1, 0], "3.1.1 has no properties");
  // Many codes: a two-byte remaining length.
  const many = Array.from({ length: 300 }, (_, i) => i % 3);
  assert.deepEqual(mpParse(encodeSuback(7, many, 5)).granted, many);

  const unsuback = mpParse(encodeUnsuback(0x0304, [0x00, 0x11, 0x87], { reasonString: "r" }));
  assert.equal(unsuback.messageId, 0x0304);
  assert.deepEqual(unsuback.granted, [0x00, 0x11, 0x87]);
  assert.deepEqual(plain(unsuback.properties), { reasonString: "r" });
  assert.deepEqual([...encodeUnsuback(1, [0x11])], [0xb0, 4, 0, 1, 0, 0x11]);
});

Deno.test("v5 codec: DISCONNECT and AUTH parse in mqtt-packet", () => {
  assert.deepEqual([...encodeDisconnect(0)], [0xe0, 0]);
  assert.deepEqual([...encodeDisconnect(0x8e)], [0xe0, 1, 0x8e]);
  const properties: Properties = {
    reasonString: "taken over",
    serverReference: "b:1883",
    userProperties: [["k", "v"]],
  };
  const disconnect = mpParse(encodeDisconnect(0x9c, properties));
  assert.equal(disconnect.reasonCode, 0x9c);
  assert.deepEqual(plain(disconnect.properties), plain(toMp(properties)));
  for (const code of [0x8b, 0x8d, 0x8e, 0x93, 0x94, 0x95, 0x9a, 0x9b, 0xa1]) {
    assert.equal(mpParse(encodeDisconnect(code, { reasonString: "x" })).reasonCode, code);
  }

  assert.deepEqual([...encodeAuth(0)], [0xf0, 0]);
  const authProperties: Properties = {
    authenticationMethod: "SCRAM",
    authenticationData: Uint8Array.of(7, 8),
  };
  const auth = mpParse(encodeAuth(0x18, authProperties));
  assert.equal(auth.reasonCode, 0x18);
  assert.deepEqual(plain(auth.properties), plain(toMp(authProperties)));
  assert.deepEqual([...encodeAuth(0x19)], [0xf0, 2, 0x19, 0]);
  assert.deepEqual(decoded(encodeAuth(0x18, authProperties)), {
    cmd: "auth",
    reasonCode: 0x18,
    properties: authProperties,
  });
});

Deno.test("v5 codec: PUBLISH in 5.0 form parses in mqtt-packet, and withPacketId still patches the id", () => {
  const forward = encodeProperties({
    contentType: "c",
    userProperties: [["b", "1"], ["a", "2"], ["b", "3"]],
  });
  const body = encodeProperties({
    messageExpiryInterval: 9,
    subscriptionIdentifiers: [1, 300],
    topicAlias: 2,
  }, forward);
  for (const qos of [0, 1, 2] as const) {
    for (const size of [0, 10, 20000]) {
      const payload = new Uint8Array(size).fill(0x62);
      const encoded = encodePublish(utf8("t/ü"), payload, qos, true, body);
      const bytes = qos > 0 ? withPacketId(encoded, 0xabcd, true) : encoded;
      const theirs = mpParse(bytes);
      assert.equal(theirs.topic, "t/ü");
      assert.equal(theirs.qos, qos);
      assert.equal(theirs.retain, true);
      assert.equal(theirs.messageId, qos > 0 ? 0xabcd : undefined);
      assert.equal(theirs.dup, qos > 0);
      assert.deepEqual([...(theirs.payload as Uint8Array)], [...payload]);
      assert.deepEqual(plain(theirs.properties), {
        messageExpiryInterval: 9,
        contentType: "c",
        subscriptionIdentifier: [1, 300],
        topicAlias: 2,
        userProperties: { b: ["1", "3"], a: "2" },
      });
    }
  }
  // The raw bytes keep the user property order, and an empty body is a property length of 0.
  const encoded = encodePublish(utf8("t"), utf8("x"), 0, false, forward);
  assert.deepEqual([...encoded.subarray(5, 5 + 1 + forward.length)], [forward.length, ...forward]);
  const ours = decoded(encoded);
  assert.ok(ours.cmd === "publish");
  assert.deepEqual([...ours.forward!], [...forward]);
  assert.deepEqual([...encodePublish(utf8("t"), utf8("x"), 0, false, new Uint8Array(0))], [
    0x30,
    5,
    0,
    1,
    0x74,
    0,
    0x78,
  ]);
  // An empty topic (the alias stands for it).
  const aliased = mpParse(
    encodePublish(new Uint8Array(0), utf8("x"), 1, false, encodeProperties({ topicAlias: 3 })),
  );
  assert.equal(aliased.topic, "");
  assert.deepEqual(plain(aliased.properties), { topicAlias: 3 });
  // The 3.1.1 form is unchanged without properties.
  assert.deepEqual(
    [...encodePublish(utf8("t"), utf8("x"), 0, false)],
    [...mqttPacket.generate({
      cmd: "publish",
      topic: "t",
      payload: Buffer.from("x"),
      qos: 0,
      dup: false,
      retain: false,
    })],
  );
});
