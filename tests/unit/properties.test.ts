import assert from "node:assert/strict";
import {
  encodeProperties,
  hasProperties,
  NO_PROPERTIES,
  type Properties,
  type PropertyContext,
  readProperties,
} from "../../src/protocol/properties.ts";
import { varInt } from "../helpers/bytes.ts";

const utf8 = (text: string) => new TextEncoder().encode(text);

/** A property block: its length as a one-byte varint, then the bytes. */
const block = (...bytes: number[]) => Uint8Array.from([bytes.length, ...bytes]);
/** A two-byte-length string field. */
const str = (text: string) => [0, utf8(text).length, ...utf8(text)];
/** A User Property: identifier 0x26, its name, its value. */
const pair = (name: string, value: string) => [0x26, ...str(name), ...str(value)];

function read(bytes: Uint8Array, context: PropertyContext) {
  const result = readProperties(bytes, 0, context);
  if ("kind" in result) assert.fail(`${context}: ${result.message}`);
  return result;
}

function refused(bytes: Uint8Array, context: PropertyContext): { kind: string; message: string } {
  const result = readProperties(bytes, 0, context);
  assert.ok("kind" in result, `${context}: ${[...bytes]} was accepted`);
  return result;
}

/** Every property each context allows, with values that exercise every width. */
const FULL: Record<string, Properties> = {
  connect: {
    sessionExpiryInterval: 0xfffffffe,
    authenticationMethod: "SCRAM-SHA-1",
    authenticationData: Uint8Array.of(0, 1, 255),
    requestProblemInformation: 0,
    requestResponseInformation: 1,
    receiveMaximum: 65535,
    topicAliasMaximum: 10,
    userProperties: [["b", "1"], ["a", "2"], ["b", "ü"]],
    maximumPacketSize: 1 << 20,
  },
  will: {
    payloadFormatIndicator: 1,
    messageExpiryInterval: 60,
    contentType: "text/plain",
    responseTopic: "r/t",
    correlationData: Uint8Array.of(9, 8),
    willDelayInterval: 3600,
    userProperties: [["z", "last"], ["a", "first"]],
  },
  connack: {
    sessionExpiryInterval: 30,
    assignedClientIdentifier: "auto-1",
    serverKeepAlive: 20,
    authenticationMethod: "m",
    authenticationData: Uint8Array.of(1),
    responseInformation: "resp/",
    serverReference: "other:1883",
    reasonString: "why",
    receiveMaximum: 100,
    topicAliasMaximum: 5,
    maximumQoS: 1,
    retainAvailable: 0,
    userProperties: [["k", "v"]],
    maximumPacketSize: 268435460,
    wildcardSubscriptionAvailable: 0,
    subscriptionIdentifierAvailable: 0,
    sharedSubscriptionAvailable: 1,
  },
  publish: {
    payloadFormatIndicator: 0,
    messageExpiryInterval: 0,
    contentType: "application/json",
    responseTopic: "reply/x",
    correlationData: new Uint8Array(300).fill(7),
    topicAlias: 3,
    userProperties: [["x", "1"], ["x", "2"]],
  },
  ack: { reasonString: "no matching subscribers", userProperties: [["k", ""]] },
  subscribe: { subscriptionIdentifiers: [268435455], userProperties: [["s", "t"]] },
  suback: { reasonString: "r", userProperties: [["a", "b"]] },
  unsubscribe: { userProperties: [["u", "v"], ["u", "w"]] },
  unsuback: { reasonString: "r" },
  disconnect: {
    sessionExpiryInterval: 0,
    reasonString: "bye",
    serverReference: "s",
    userProperties: [["a", "b"]],
  },
  auth: {
    authenticationMethod: "m",
    authenticationData: Uint8Array.of(),
    reasonString: "r",
    userProperties: [],
  },
};

Deno.test("properties: what encodeProperties writes, readProperties reads back, for every context", () => {
  for (const [context, properties] of Object.entries(FULL)) {
    const body = encodeProperties(properties);
    const bytes = Uint8Array.from([...varInt(body.length), ...body, 0xaa]);
    const result = read(bytes, context as PropertyContext);
    const expected = { ...properties };
    if (expected.userProperties?.length === 0) delete expected.userProperties;
    assert.deepEqual(
      Object.fromEntries(
        Object.entries(result.properties).map(([k, v]) => [k, v instanceof Uint8Array ? [...v] : v]),
      ),
      Object.fromEntries(Object.entries(expected).map(([k, v]) => [k, v instanceof Uint8Array ? [...v] : v])),
      context,
    );
    assert.equal(result.end, bytes.length - 1, `${context}: the block ends before the byte after it`);
  }
});

Deno.test("properties: encodeProperties writes identifier order, user properties in their order, then extra", () => {
  const body = encodeProperties(
    { userProperties: [["b", "1"], ["a", "2"]], reasonString: "r", payloadFormatIndicator: 1 },
    Uint8Array.of(0xee),
  );
  assert.deepEqual([...body], [0x01, 1, 0x1f, ...str("r"), ...pair("b", "1"), ...pair("a", "2"), 0xee]);
  assert.deepEqual(
    [...encodeProperties({ subscriptionIdentifiers: [1, 128, 16384] })],
    [0x0b, 1, 0x0b, 0x80, 1, 0x0b, 0x80, 0x80, 1],
  );
  assert.deepEqual([...encodeProperties({ messageExpiryInterval: 0xffffffff })], [0x02, 255, 255, 255, 255]);
  assert.equal(encodeProperties({}).length, 0);
});

Deno.test("properties: an empty block is one shared, frozen object", () => {
  const a = read(Uint8Array.of(0), "publish");
  const b = read(Uint8Array.of(0), "connect");
  assert.equal(a.properties, NO_PROPERTIES);
  assert.equal(b.properties, NO_PROPERTIES);
  assert.ok(Object.isFrozen(NO_PROPERTIES));
  assert.equal(a.forward, undefined);
  assert.equal(a.end, 1);
  assert.equal(hasProperties(NO_PROPERTIES), false);
  assert.equal(hasProperties({ userProperties: [] }), false);
  assert.equal(hasProperties({ reasonString: "" }), true);
});

Deno.test("properties: user properties keep their order and may repeat", () => {
  const bytes = block(...pair("b", "1"), ...pair("a", "2"), ...pair("b", "3"));
  assert.deepEqual(read(bytes, "ack").properties.userProperties, [["b", "1"], ["a", "2"], ["b", "3"]]);
});

Deno.test("properties: a property appearing twice is a Protocol Error", () => {
  const cases: [PropertyContext, number[]][] = [
    ["connect", [0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2]],
    ["publish", [0x23, 0, 1, 0x23, 0, 1]],
    ["publish", [0x01, 0, ...pair("k", "v"), 0x01, 0]],
    ["subscribe", [0x0b, 1, 0x0b, 2]],
    ["ack", [0x1f, ...str("a"), 0x1f, ...str("b")]],
    ["will", [0x18, 0, 0, 0, 1, 0x18, 0, 0, 0, 1]],
    ["connack", [0x2a, 1, 0x2a, 1]], // identifiers above 31 use the second mask
  ];
  for (const [context, bytes] of cases) {
    const error = refused(block(...bytes), context);
    assert.equal(error.kind, "protocol", `${context} ${bytes}`);
    assert.match(error.message, /more than once/);
  }
});

Deno.test("properties: a property the packet does not have, or an unknown identifier, is malformed", () => {
  const cases: [PropertyContext, number[]][] = [
    ["publish", [0x11, 0, 0, 0, 1]], // Session Expiry Interval in PUBLISH
    ["connect", [0x23, 0, 1]], // Topic Alias in CONNECT
    ["will", [0x11, 0, 0, 0, 1]],
    ["ack", [0x02, 0, 0, 0, 1]],
    ["unsubscribe", [0x0b, 1]],
    ["disconnect", [0x15, ...str("m")]],
    ["auth", [0x11, 0, 0, 0, 1]],
    ["connect", [0x00]],
    ["connect", [0x04, 0]],
    ["publish", [0x7f, 0]],
    ["publish", [0x80, 0x01]], // a two-byte identifier
  ];
  for (const [context, bytes] of cases) {
    const error = refused(block(...bytes), context);
    assert.equal(error.kind, "malformed", `${context} ${bytes}`);
    assert.match(error.message, /not allowed/);
  }
});

Deno.test("properties: truncated blocks and values, bad varints and bad strings are malformed", () => {
  const cases: [string, Uint8Array][] = [
    ["block longer than the packet", Uint8Array.of(5, 0x23, 0, 1)],
    ["no length at all", Uint8Array.of()],
    ["length varint cut off", Uint8Array.of(0x80)],
    ["length varint of five bytes", Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x01)],
    ["length not minimally encoded [MQTT-1.5.5-1]", Uint8Array.of(0x80, 0x00)],
    ["u16 cut by the block end", Uint8Array.from([2, 0x23, 0, 9])],
    ["u32 cut by the block end", block(0x02, 0, 0)],
    ["string longer than the block", block(0x03, 0, 5, 0x61)],
    ["string length cut", block(0x03, 0)],
    ["pair value missing", block(0x26, ...str("k"))],
    ["binary longer than the block", block(0x09, 0, 3, 1)],
    ["bad UTF-8", block(0x03, 0, 2, 0xc3, 0x28)],
    ["U+0000 in a user property", block(0x26, ...str("k"), 0, 1, 0)],
    ["byte value missing", block(0x01)],
  ];
  for (const [name, bytes] of cases) assert.equal(refused(bytes, "publish").kind, "malformed", name);
  assert.equal(refused(block(0x0b, 0x80), "subscribe").kind, "malformed", "subscription id cut");
  assert.equal(
    refused(block(0x0b, 0x80, 0x00), "subscribe").kind,
    "malformed",
    "subscription id not minimal",
  );
});

Deno.test("properties: value rules the spec calls Protocol Errors", () => {
  const cases: [string, PropertyContext, number[]][] = [
    ["payload format indicator 2", "publish", [0x01, 2]],
    ["will payload format indicator 2", "will", [0x01, 2]],
    ["request problem information 2", "connect", [0x17, 2]],
    ["request response information 2", "connect", [0x19, 2]],
    ["receive maximum 0", "connect", [0x21, 0, 0]],
    ["maximum packet size 0", "connect", [0x27, 0, 0, 0, 0]],
    ["subscription identifier 0", "subscribe", [0x0b, 0]],
    ["subscription identifier in a client's PUBLISH [MQTT-3.3.4-6]", "publish", [0x0b, 1]],
    ["maximum QoS 2", "connack", [0x24, 2]],
    ["retain available 2", "connack", [0x25, 2]],
  ];
  for (const [name, context, bytes] of cases) {
    assert.equal(refused(block(...bytes), context).kind, "protocol", name);
  }
  // Topic Alias 0 is for the broker to answer with 0x94, not a decode error.
  assert.equal(read(block(0x23, 0, 0), "publish").properties.topicAlias, 0);
  assert.equal(
    read(block(0x0b, 0xff, 0xff, 0xff, 0x7f), "subscribe").properties.subscriptionIdentifiers![0],
    268435455,
  );
});

Deno.test("properties: forward holds the forwarded properties' bytes in the order received", () => {
  const pfi = [0x01, 1];
  const type = [0x03, ...str("t")];
  const response = [0x08, ...str("r")];
  const correlation = [0x09, 0, 2, 7, 7];
  const user1 = pair("z", "1");
  const user2 = pair("a", "2");
  const alias = [0x23, 0, 4];
  const expiry = [0x02, 0, 0, 0, 9];

  // Contiguous: a view of the frame, no copy.
  const contiguous = block(...alias, ...user1, ...pfi, ...correlation, ...expiry);
  const a = read(contiguous, "publish");
  assert.deepEqual([...a.forward!], [...user1, ...pfi, ...correlation]);
  assert.equal(a.forward!.buffer, contiguous.buffer);
  assert.equal(a.properties.topicAlias, 4);
  assert.equal(a.properties.messageExpiryInterval, 9);

  // Split by properties that are not forwarded: copied together, order kept.
  const split = block(...user1, ...alias, ...response, ...expiry, ...type, ...user2);
  assert.deepEqual([...read(split, "publish").forward!], [...user1, ...response, ...type, ...user2]);

  // Will properties forward the same ones; Will Delay Interval is not forwarded.
  const will = block(0x18, 0, 0, 0, 5, ...type, ...user2);
  assert.deepEqual([...read(will, "will").forward!], [...type, ...user2]);

  assert.equal(read(block(...alias, ...expiry), "publish").forward, undefined);
  // Other contexts never forward.
  assert.equal(read(block(...user1), "ack").forward, undefined);
});
