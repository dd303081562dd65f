/**
 * What the MQTT 5.0 tests share: a RawClient at version 5 connected (and subscribed), the broker's DISCONNECT
 * before it closes a connection, a bystander that shows the broker still serves its other clients, packets
 * written by hand with exactly the properties given (which mqtt-packet would reorder, group or refuse to
 * encode), and a byte-level reader of the broker's PUBLISH properties for the order rules that mqtt-packet's
 * decoding hides.
 */

import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import type * as MP from "mqtt-packet";
import { frame, u16, u32, utf8, utf8Bytes, varInt } from "./bytes.ts";
import { assertPublish, type Packet, type QoS, RawClient, type Subscription, summary } from "./raw.ts";
import { within } from "./wait.ts";

export type PublishProperties = NonNullable<MP.IPublishPacket["properties"]>;

// --- Clients ----------------------------------------------------------------------------------------------------

/**
 * A RawClient at MQTT 5 connected as `clientId` (`fields` over a Clean Start 1 CONNECT with no properties),
 * CONNACK reason code 0 asserted; the CONNACK (its properties, Session Present) is in `client.connack`.
 */
export function connect5(
  port: number,
  clientId: string,
  fields: Partial<MP.IConnectPacket> = {},
): Promise<RawClient> {
  return RawClient.connected(port, { protocolVersion: 5, clientId, ...fields });
}

/** `connect5`, then SUBSCRIBE to `filters`, asserting each is granted the QoS it asked for. */
export function subscriber5(
  port: number,
  clientId: string,
  filters: Subscription[],
  fields: Partial<MP.IConnectPacket> = {},
): Promise<RawClient> {
  return RawClient.subscriber(port, { protocolVersion: 5, clientId, ...fields }, filters);
}

/** `summary` plus the reason code and properties of MQTT 5.0 packets, for assertion messages. */
function describe5(packet: Packet): Record<string, unknown> {
  const { reasonCode, properties } = packet as { reasonCode?: number; properties?: unknown };
  return { ...summary(packet), reasonCode, properties };
}

/**
 * Asserts that the broker sends one packet more, a DISCONNECT with `reasonCode` and a Reason String, and
 * then closes the connection (within `ms`); returns the DISCONNECT.
 */
export async function assertServerDisconnect(
  client: RawClient,
  reasonCode: number,
  ms?: number,
): Promise<MP.IDisconnectPacket> {
  const packets = await client.closedByBroker(ms);
  const seen = JSON.stringify(packets.map(describe5));
  const disconnect = packets[0];
  assert.ok(
    packets.length === 1 && disconnect?.cmd === "disconnect",
    `expected a DISCONNECT and then the close, got ${seen}`,
  );
  assert.equal(
    disconnect.reasonCode,
    reasonCode,
    `DISCONNECT reason code 0x${disconnect.reasonCode?.toString(16)}, expected 0x${reasonCode.toString(16)}`,
  );
  const reasonString = disconnect.properties?.reasonString;
  assert.ok(typeof reasonString === "string" && reasonString.length > 0, `a Reason String on ${seen}`);
  assert.ok(client.isClosed);
  return disconnect;
}

/**
 * A v5 client subscribed to "alive" at QoS 1, connected before a test breaks a rule on another connection so
 * that `assertAlive` can show afterwards that the broker still serves the clients it had. Tests may publish
 * to "alive" from the offending connection to show what got through.
 */
export function bystander(port: number, clientId = "bystander"): Promise<RawClient> {
  return subscriber5(port, clientId, [["alive", 1]]);
}

/**
 * The broker still serves its clients: the bystander publishes at QoS 1 to itself and gets PUBACK 0x00 and
 * its message back, a newcomer can connect and its QoS 1 message reaches the bystander, and nothing else
 * comes.
 */
export async function assertAlive(broker: { port: number }, client: RawClient): Promise<void> {
  const messageId = await client.publish("alive", "still here", { qos: 1 });
  // The PUBACK and the PUBLISH may come in either order.
  const packets = [await client.next(), await client.next()];
  const puback = packets.find((p) => p.cmd === "puback");
  const publish = packets.find((p) => p.cmd === "publish");
  assert.ok(puback && publish, `expected PUBACK and PUBLISH, got ${JSON.stringify(packets.map(describe5))}`);
  assert.equal(puback.messageId, messageId);
  assert.equal(puback.reasonCode, 0);
  assertPublish(publish, "alive", "still here", 1);
  await client.send({ cmd: "puback", messageId: publish.messageId });

  await using newcomer = await connect5(broker.port, "newcomer");
  await newcomer.publishAcked("alive", "newcomer here", { qos: 1 });
  const got = await client.expectPublish("alive", "newcomer here", 1);
  await client.send({ cmd: "puback", messageId: got.messageId });
  await client.assertIdle();
}

// --- Packets written by hand --------------------------------------------------------------------------------------

/** A property written by hand: its identifier, then its value as section 2.2.2.2 encodes that type. */
export const prop = {
  byte: (id: number, value: number): number[] => [id, value],
  u16: (id: number, value: number): number[] => [id, ...u16(value)],
  u32: (id: number, value: number): number[] => [id, ...u32(value)],
  varint: (id: number, value: number): number[] => [id, ...varInt(value)],
  string: (id: number, value: string): number[] => [id, ...utf8(value)],
  binary: (id: number, value: number[]): number[] => [id, ...u16(value.length), ...value],
  /** A User Property (0x26): a name and a value. */
  pair: (name: string, value: string): number[] => [0x26, ...utf8(name), ...utf8(value)],
};

/** A property block: its length as a variable byte integer, then `properties` exactly in the order given. */
export function propertyBlock(properties: number[][]): number[] {
  const bytes = properties.flat();
  return [...varInt(bytes.length), ...bytes];
}

/** A v5 PUBLISH written byte by byte (not retained, not a duplicate) with exactly the `properties` given. */
export function rawPublish5(
  topic: string,
  payload: string,
  properties: number[][] = [],
  { qos = 0, packetId = 1 }: { qos?: QoS; packetId?: number } = {},
): Uint8Array {
  return frame(0x30 | (qos << 1), [
    ...utf8(topic),
    ...(qos > 0 ? u16(packetId) : []),
    ...propertyBlock(properties),
    ...utf8Bytes(payload),
  ]);
}

/** A will for `rawConnect5`: QoS 0, not retained, with exactly the `properties` given. */
export interface RawWill {
  topic: string;
  payload: string;
  properties?: number[][];
}

/**
 * A v5 CONNECT written byte by byte (keep-alive 0, no username or password) with exactly the `properties`
 * given, for what mqtt-packet will not encode: a property twice or one CONNECT may not have, an empty client
 * id with Clean Start 0, will User Properties interleaved by name.
 */
export function rawConnect5(
  clientId: string,
  { properties = [], clean = true, will }: { properties?: number[][]; clean?: boolean; will?: RawWill } = {},
): Uint8Array {
  return frame(0x10, [
    ...utf8("MQTT"),
    5,
    (clean ? 0x02 : 0) | (will ? 0x04 : 0),
    ...u16(0),
    ...propertyBlock(properties),
    ...utf8(clientId),
    ...(will ? [...propertyBlock(will.properties ?? []), ...utf8(will.topic), ...utf8(will.payload)] : []),
  ]);
}

// --- The broker's packets as bytes ------------------------------------------------------------------------------
// mqtt-packet folds User Properties into an object, which loses the order of different names, so the order
// rule [MQTT-3.3.2-18] is checked on the bytes.

/** Property identifiers by value type (section 2.2.2.2). */
const PROPERTY_TYPES: Record<number, "byte" | "u16" | "u32" | "varint" | "string" | "binary" | "pair"> = {
  0x01: "byte",
  0x02: "u32",
  0x03: "string",
  0x08: "string",
  0x09: "binary",
  0x0b: "varint",
  0x11: "u32",
  0x12: "string",
  0x13: "u16",
  0x15: "string",
  0x16: "binary",
  0x17: "byte",
  0x18: "u32",
  0x19: "byte",
  0x1a: "string",
  0x1c: "string",
  0x1f: "string",
  0x21: "u16",
  0x22: "u16",
  0x23: "u16",
  0x24: "byte",
  0x25: "byte",
  0x26: "pair",
  0x27: "u32",
  0x28: "byte",
  0x29: "byte",
  0x2a: "byte",
};

/** One property as it came on the wire. */
export interface RawProperty {
  id: number;
  /** The property's bytes, identifier included. */
  bytes: number[];
}

/** A PUBLISH split into its parts, its properties kept as bytes in wire order. */
export interface RawPublish {
  topic: string;
  qos: number;
  packetId?: number;
  properties: RawProperty[];
  payload: Uint8Array;
}

/** The variable byte integer at `at` and the offset after it; undefined if `bytes` end before it does. */
function readVarInt(bytes: Uint8Array, at: number): [value: number, next: number] | undefined {
  let value = 0;
  let multiplier = 1;
  while (at < bytes.length) {
    const byte = bytes[at++];
    value += (byte & 0x7f) * multiplier;
    if ((byte & 0x80) === 0) return [value, at];
    multiplier *= 128;
  }
  return undefined;
}

function varIntAt(bytes: Uint8Array, at: number): [value: number, next: number] {
  return readVarInt(bytes, at) ?? assert.fail(`a variable byte integer cut short at offset ${at}`);
}

/** Splits the property block at `at` (its length first) into properties; returns them and the offset after it. */
export function readProperties(bytes: Uint8Array, at: number): { properties: RawProperty[]; end: number } {
  const [length, start] = varIntAt(bytes, at);
  const end = start + length;
  const u16At = (i: number) => (bytes[i] << 8) | bytes[i + 1];
  const properties: RawProperty[] = [];
  let p = start;
  while (p < end) {
    const from = p;
    const id = bytes[p++];
    const type = PROPERTY_TYPES[id];
    assert.ok(type, `unknown property identifier 0x${id.toString(16)}`);
    switch (type) {
      case "byte":
        p += 1;
        break;
      case "u16":
        p += 2;
        break;
      case "u32":
        p += 4;
        break;
      case "varint":
        p = varIntAt(bytes, p)[1];
        break;
      case "string":
      case "binary":
        p += 2 + u16At(p);
        break;
      case "pair":
        p += 2 + u16At(p);
        p += 2 + u16At(p);
        break;
    }
    properties.push({ id, bytes: [...bytes.subarray(from, p)] });
  }
  assert.equal(p, end, "the last property ends where the property block does");
  return { properties, end };
}

/** Splits a whole v5 PUBLISH (fixed header included) into its parts, keeping the properties as bytes. */
export function parsePublish5(packet: Uint8Array): RawPublish {
  assert.equal(packet[0] >> 4, 3, `expected a PUBLISH, got first byte 0x${packet[0].toString(16)}`);
  const qos = (packet[0] >> 1) & 3;
  let [, at] = varIntAt(packet, 1);
  const topicLength = (packet[at] << 8) | packet[at + 1];
  const topic = new TextDecoder().decode(packet.subarray(at + 2, at + 2 + topicLength));
  at += 2 + topicLength;
  let packetId: number | undefined;
  if (qos > 0) {
    packetId = (packet[at] << 8) | packet[at + 1];
    at += 2;
  }
  const { properties, end } = readProperties(packet, at);
  return { topic, qos, packetId, properties, payload: packet.slice(end) };
}

/** The User Properties among `properties`, decoded, in wire order. */
export function userProperties(properties: RawProperty[]): [string, string][] {
  const decoder = new TextDecoder();
  return properties.filter((p) => p.id === 0x26).map(({ bytes }) => {
    const data = Uint8Array.from(bytes);
    const nameLength = (data[1] << 8) | data[2];
    const name = decoder.decode(data.subarray(3, 3 + nameLength));
    const value = decoder.decode(data.subarray(5 + nameLength));
    return [name, value];
  });
}

/**
 * A version 5 client that keeps each packet from the broker as bytes: it connects and subscribes with
 * mqtt-packet, then hands out whole packets undecoded (for `parsePublish5`).
 */
export class ByteClient implements AsyncDisposable {
  readonly #conn: Deno.TcpConn;
  readonly #packets: Uint8Array[] = [];
  #buffer = new Uint8Array(0);
  #ended = false;
  #wake: (() => void) | null = null;
  readonly #loop: Promise<void>;

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
    this.#loop = this.#read();
  }

  /** Connects as `clientId` (MQTT 5) and subscribes to `filter` at `qos`, checking CONNACK and SUBACK. */
  static async subscriber(port: number, clientId: string, filter: string, qos: QoS): Promise<ByteClient> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    const client = new ByteClient(conn);
    try {
      await client.send({ cmd: "connect", protocolId: "MQTT", protocolVersion: 5, clientId, clean: true });
      const connack = await client.next();
      assert.equal(connack[0], 0x20, "CONNACK");
      assert.equal(connack[3], 0, "CONNACK reason code");
      await client.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: filter, qos }] });
      const suback = await client.next();
      assert.equal(suback[0], 0x90, "SUBACK");
      assert.equal(suback[suback.length - 1], qos, "SUBACK reason code");
    } catch (error) {
      await client.close();
      throw error;
    }
    return client;
  }

  async send(packet: Packet): Promise<void> {
    const bytes = mqttPacket.generate(packet, { protocolVersion: 5 });
    for (let at = 0; at < bytes.length;) at += await this.#conn.write(bytes.subarray(at));
  }

  /** The next whole packet from the broker, as bytes. */
  async next(): Promise<Uint8Array> {
    await within(
      new Promise<void>((resolve) => {
        const check = () => {
          if (this.#packets.length === 0 && !this.#ended) return;
          this.#wake = null;
          resolve();
        };
        this.#wake = check;
        check();
      }),
      "a packet from the broker",
    );
    const packet = this.#packets.shift();
    if (!packet) throw new Error("the broker closed the connection instead of sending a packet");
    return packet;
  }

  async close(): Promise<void> {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
    await this.#loop;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #read(): Promise<void> {
    const chunk = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await this.#conn.read(chunk);
        if (n === null) break;
        const joined = new Uint8Array(this.#buffer.length + n);
        joined.set(this.#buffer);
        joined.set(chunk.subarray(0, n), this.#buffer.length);
        this.#buffer = joined;
        this.#split();
      }
    } catch {
      // reset by the broker, or closed by us
    }
    this.#ended = true;
    this.#wake?.();
  }

  /** Moves every complete packet at the front of the buffer to the queue. */
  #split(): void {
    for (;;) {
      const header = readVarInt(this.#buffer, 1);
      if (header === undefined) return;
      const [length, bodyStart] = header;
      if (this.#buffer.length < bodyStart + length) return;
      this.#packets.push(this.#buffer.slice(0, bodyStart + length));
      this.#buffer = this.#buffer.slice(bodyStart + length);
      this.#wake?.();
    }
  }
}
