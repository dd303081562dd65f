/**
 * MQTT 5.0 properties (section 2.2.2): the block of identifier + value pairs after a packet's variable
 * header. Read strictly for what clients send, written for what the broker sends.
 */

import { type DecodeError, malformed, protocolError } from "./decode_error.ts";
import { decodeString, readVarInt, VARINT_TRUNCATED, varIntLength, writeVarInt } from "./fields.ts";
import { hex } from "./reason_codes.ts";

export interface Properties {
  payloadFormatIndicator?: number; // 0x01 byte
  messageExpiryInterval?: number; // 0x02 u32
  contentType?: string; // 0x03 utf8
  responseTopic?: string; // 0x08 utf8
  correlationData?: Uint8Array; // 0x09 binary
  subscriptionIdentifiers?: number[]; // 0x0B varint (PUBLISH from server may carry several; SUBSCRIBE one)
  sessionExpiryInterval?: number; // 0x11 u32
  assignedClientIdentifier?: string; // 0x12 utf8
  serverKeepAlive?: number; // 0x13 u16
  authenticationMethod?: string; // 0x15 utf8
  authenticationData?: Uint8Array; // 0x16 binary
  requestProblemInformation?: number; // 0x17 byte
  willDelayInterval?: number; // 0x18 u32
  requestResponseInformation?: number; // 0x19 byte
  responseInformation?: string; // 0x1A utf8
  serverReference?: string; // 0x1C utf8
  reasonString?: string; // 0x1F utf8
  receiveMaximum?: number; // 0x21 u16
  topicAliasMaximum?: number; // 0x22 u16
  topicAlias?: number; // 0x23 u16
  maximumQoS?: number; // 0x24 byte
  retainAvailable?: number; // 0x25 byte
  userProperties?: [string, string][]; // 0x26 utf8 pair, repeatable, ORDER KEPT
  maximumPacketSize?: number; // 0x27 u32
  wildcardSubscriptionAvailable?: number; // 0x28 byte
  subscriptionIdentifierAvailable?: number; // 0x29 byte
  sharedSubscriptionAvailable?: number; // 0x2A byte
}

export type PropertyContext =
  | "connect"
  | "will"
  | "connack"
  | "publish"
  | "ack"
  | "subscribe"
  | "suback"
  | "unsubscribe"
  | "unsuback"
  | "disconnect"
  | "auth";

type ValueType = "byte" | "u16" | "u32" | "varint" | "string" | "binary" | "pair";
interface PropertySpec {
  key: keyof Properties;
  type: ValueType;
  name: string;
}

/** Every property of MQTT 5.0 (table 2-4), indexed by identifier. */
const SPECS: (PropertySpec | undefined)[] = [];
function spec(id: number, key: keyof Properties, type: ValueType, name: string): void {
  SPECS[id] = { key, type, name };
}
spec(0x01, "payloadFormatIndicator", "byte", "Payload Format Indicator");
spec(0x02, "messageExpiryInterval", "u32", "Message Expiry Interval");
spec(0x03, "contentType", "string", "Content Type");
spec(0x08, "responseTopic", "string", "Response Topic");
spec(0x09, "correlationData", "binary", "Correlation Data");
spec(0x0b, "subscriptionIdentifiers", "varint", "Subscription Identifier");
spec(0x11, "sessionExpiryInterval", "u32", "Session Expiry Interval");
spec(0x12, "assignedClientIdentifier", "string", "Assigned Client Identifier");
spec(0x13, "serverKeepAlive", "u16", "Server Keep Alive");
spec(0x15, "authenticationMethod", "string", "Authentication Method");
spec(0x16, "authenticationData", "binary", "Authentication Data");
spec(0x17, "requestProblemInformation", "byte", "Request Problem Information");
spec(0x18, "willDelayInterval", "u32", "Will Delay Interval");
spec(0x19, "requestResponseInformation", "byte", "Request Response Information");
spec(0x1a, "responseInformation", "string", "Response Information");
spec(0x1c, "serverReference", "string", "Server Reference");
spec(0x1f, "reasonString", "string", "Reason String");
spec(0x21, "receiveMaximum", "u16", "Receive Maximum");
spec(0x22, "topicAliasMaximum", "u16", "Topic Alias Maximum");
spec(0x23, "topicAlias", "u16", "Topic Alias");
spec(0x24, "maximumQoS", "byte", "Maximum QoS");
spec(0x25, "retainAvailable", "byte", "Retain Available");
spec(0x26, "userProperties", "pair", "User Property");
spec(0x27, "maximumPacketSize", "u32", "Maximum Packet Size");
spec(0x28, "wildcardSubscriptionAvailable", "byte", "Wildcard Subscription Available");
spec(0x29, "subscriptionIdentifierAvailable", "byte", "Subscription Identifier Available");
spec(0x2a, "sharedSubscriptionAvailable", "byte", "Shared Subscription Available");

const USER_PROPERTY = 0x26;
const SUBSCRIPTION_IDENTIFIER = 0x0b;
/** A property the packet type has, but that a client must not send in it (SUBSCRIPTION_IDENTIFIER in PUBLISH). */
const FROM_SERVER_ONLY = 2;

/** Which identifiers each packet may carry (the property list of each packet's section); 1 = allowed. */
const ALLOWED = {} as Record<PropertyContext, Uint8Array>;
function allow(context: PropertyContext, ids: number[], serverOnly: number[] = []): void {
  const table = new Uint8Array(SPECS.length);
  for (const id of ids) table[id] = 1;
  for (const id of serverOnly) table[id] = FROM_SERVER_ONLY;
  ALLOWED[context] = table;
}
allow("connect", [0x11, 0x21, 0x27, 0x22, 0x19, 0x17, 0x26, 0x15, 0x16]);
allow("will", [0x18, 0x01, 0x02, 0x03, 0x08, 0x09, 0x26]);
allow(
  "connack",
  [0x11, 0x21, 0x24, 0x25, 0x27, 0x12, 0x22, 0x1f, 0x26, 0x28, 0x29, 0x2a, 0x13, 0x1a, 0x1c, 0x15, 0x16],
);
allow("publish", [0x01, 0x02, 0x23, 0x08, 0x09, 0x26, 0x03], [0x0b]);
allow("ack", [0x1f, 0x26]);
allow("subscribe", [0x0b, 0x26]);
allow("suback", [0x1f, 0x26]);
allow("unsubscribe", [0x26]);
allow("unsuback", [0x1f, 0x26]);
allow("disconnect", [0x11, 0x1f, 0x26, 0x1c]);
allow("auth", [0x15, 0x16, 0x1f, 0x26]);

/** What the broker forwards untouched from PUBLISH and will properties, in the order received. */
const FORWARDED = new Uint8Array(SPECS.length);
for (const id of [0x01, 0x03, 0x08, 0x09, 0x26]) FORWARDED[id] = 1;

/** Byte properties whose only values are 0 and 1; anything else is a Protocol Error. */
const BOOLEAN = new Uint8Array(SPECS.length);
for (const id of [0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2a]) BOOLEAN[id] = 1;

/** Numeric properties for which 0 is a Protocol Error (Receive Maximum, Maximum Packet Size, Subscription Identifier). */
const NOT_ZERO = new Uint8Array(SPECS.length);
for (const id of [0x21, 0x27, 0x0b]) NOT_ZERO[id] = 1;

/** The result of an empty property block, shared: callers must not modify it. */
export const NO_PROPERTIES: Properties = Object.freeze({});

export interface PropertyBlock {
  properties: Properties;
  /** Index just after the block. */
  end: number;
  /** "publish" and "will": the bytes of the properties forwarded untouched, or undefined if there are none. */
  forward?: Uint8Array;
}

/** Reads a property block (varint length + properties) at `at`, for a packet sent BY A CLIENT. */
export function readProperties(
  bytes: Uint8Array,
  at: number,
  context: PropertyContext,
): PropertyBlock | DecodeError {
  const length = readVarInt(bytes, at, bytes.length);
  if (length < 0) {
    return malformed(
      length === VARINT_TRUNCATED
        ? "property length runs past the end of the packet"
        : "property length is not a valid variable byte integer [MQTT-1.5.5-1]",
    );
  }
  const start = at + varIntLength(length);
  const end = start + length;
  if (end > bytes.length) return malformed("properties run past the end of the packet");
  if (length === 0) return { properties: NO_PROPERTIES, end, forward: undefined };

  const allowed = ALLOWED[context];
  const forwarding = context === "publish" || context === "will";
  const properties: Record<string, unknown> = {};
  // Identifiers seen so far, as bits (they run up to 0x2A, past one 32-bit mask).
  let seenLow = 0;
  let seenHigh = 0;
  // Forwarded bytes: one run [forwardStart, forwardEnd) while they are contiguous, else copied parts.
  let forwardStart = -1;
  let forwardEnd = -1;
  let forwardParts: Uint8Array[] | null = null;

  let p = start;
  while (p < end) {
    const id = bytes[p];
    const property = SPECS[id];
    if (!property || !allowed[id]) {
      const name = property ? property.name : `property ${hex(id)}`;
      return malformed(`${name} is not allowed in ${CONTEXT_NAMES[context]}`);
    }
    if (allowed[id] === FROM_SERVER_ONLY) {
      return protocolError(`a client must not send a ${property.name} in PUBLISH [MQTT-3.3.4-6]`);
    }
    if (id !== USER_PROPERTY) {
      const bit = 1 << (id & 31);
      const seen = id < 32 ? seenLow : seenHigh;
      if (seen & bit) return protocolError(`${property.name} appears more than once`);
      if (id < 32) seenLow |= bit;
      else seenHigh |= bit;
    }
    const valueAt = p + 1;
    let next: number;
    let value: unknown;
    switch (property.type) {
      case "byte":
        if (valueAt + 1 > end) return truncated(property);
        value = bytes[valueAt];
        next = valueAt + 1;
        break;
      case "u16":
        if (valueAt + 2 > end) return truncated(property);
        value = (bytes[valueAt] << 8) | bytes[valueAt + 1];
        next = valueAt + 2;
        break;
      case "u32":
        if (valueAt + 4 > end) return truncated(property);
        value = bytes[valueAt] * 0x1000000 +
          ((bytes[valueAt + 1] << 16) | (bytes[valueAt + 2] << 8) | bytes[valueAt + 3]);
        next = valueAt + 4;
        break;
      case "varint": {
        const n = readVarInt(bytes, valueAt, end);
        if (n === VARINT_TRUNCATED) return truncated(property);
        if (n < 0) return malformed(`${property.name} is not a valid variable byte integer [MQTT-1.5.5-1]`);
        value = n;
        next = valueAt + varIntLength(n);
        break;
      }
      case "string":
      case "binary": {
        if (valueAt + 2 > end) return truncated(property);
        const valueEnd = valueAt + 2 + ((bytes[valueAt] << 8) | bytes[valueAt + 1]);
        if (valueEnd > end) return truncated(property);
        if (property.type === "binary") value = bytes.subarray(valueAt + 2, valueEnd);
        else {
          value = decodeString(bytes, valueAt + 2, valueEnd);
          if (typeof value !== "string") return value as DecodeError;
        }
        next = valueEnd;
        break;
      }
      case "pair": {
        if (valueAt + 2 > end) return truncated(property);
        const keyEnd = valueAt + 2 + ((bytes[valueAt] << 8) | bytes[valueAt + 1]);
        if (keyEnd + 2 > end) return truncated(property);
        const valueEnd = keyEnd + 2 + ((bytes[keyEnd] << 8) | bytes[keyEnd + 1]);
        if (valueEnd > end) return truncated(property);
        const key = decodeString(bytes, valueAt + 2, keyEnd);
        if (typeof key !== "string") return key;
        const text = decodeString(bytes, keyEnd + 2, valueEnd);
        if (typeof text !== "string") return text;
        value = [key, text];
        next = valueEnd;
        break;
      }
    }
    if (BOOLEAN[id] && value !== 0 && value !== 1) {
      return protocolError(`${property.name} must be 0 or 1, not ${value}`);
    }
    if (NOT_ZERO[id] && value === 0) return protocolError(`${property.name} must not be 0`);

    if (id === USER_PROPERTY) {
      ((properties.userProperties ??= []) as [string, string][]).push(value as [string, string]);
    } else if (id === SUBSCRIPTION_IDENTIFIER) properties.subscriptionIdentifiers = [value as number];
    else properties[property.key] = value;

    if (forwarding && FORWARDED[id]) {
      if (forwardStart < 0) {
        forwardStart = p;
        forwardEnd = next;
      } else if (forwardParts === null && forwardEnd === p) {
        forwardEnd = next;
      } else {
        (forwardParts ??= [bytes.subarray(forwardStart, forwardEnd)]).push(bytes.subarray(p, next));
      }
    }
    p = next;
  }

  let forward: Uint8Array | undefined;
  if (forwardParts) forward = concat(forwardParts);
  else if (forwardStart >= 0) forward = bytes.subarray(forwardStart, forwardEnd);
  return { properties: properties as Properties, end, forward };
}

const CONTEXT_NAMES: Record<PropertyContext, string> = {
  connect: "CONNECT",
  will: "will properties",
  connack: "CONNACK",
  publish: "PUBLISH",
  ack: "PUBACK, PUBREC, PUBREL or PUBCOMP",
  subscribe: "SUBSCRIBE",
  suback: "SUBACK",
  unsubscribe: "UNSUBSCRIBE",
  unsuback: "UNSUBACK",
  disconnect: "DISCONNECT",
  auth: "AUTH",
};

function truncated(property: PropertySpec): DecodeError {
  return malformed(`${property.name} runs past the end of the properties`);
}

function concat(parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** True if `properties` would write at least one property. */
export function hasProperties(properties: Properties | undefined): boolean {
  if (!properties) return false;
  for (const key in properties) {
    const value = properties[key as keyof Properties];
    if (value !== undefined && !(Array.isArray(value) && value.length === 0)) return true;
  }
  return false;
}

const utf8 = new TextEncoder();
const EMPTY = new Uint8Array(0);

/** The property body (no length prefix) of `properties`, in identifier order, then `extra` appended as is. */
export function encodeProperties(properties: Properties, extra?: Uint8Array): Uint8Array {
  const writer = new Writer();
  for (let id = 1; id < SPECS.length; id++) {
    const property = SPECS[id];
    if (!property) continue;
    const value = properties[property.key];
    if (value === undefined) continue;
    switch (property.type) {
      case "byte":
        writer.byte(id).byte(value as number);
        break;
      case "u16":
        writer.byte(id).u16(value as number);
        break;
      case "u32":
        writer.byte(id).u32(value as number);
        break;
      case "varint":
        // Only Subscription Identifier is a varint, and it may repeat (a PUBLISH to a subscriber).
        for (const n of value as number[]) writer.byte(id).varint(n);
        break;
      case "string":
        writer.byte(id).binary(utf8.encode(value as string));
        break;
      case "binary":
        writer.byte(id).binary(value as Uint8Array);
        break;
      case "pair":
        for (const [key, text] of value as [string, string][]) {
          writer.byte(id).binary(utf8.encode(key)).binary(utf8.encode(text));
        }
        break;
    }
  }
  if (extra) writer.bytes(extra);
  return writer.done();
}

/** Length of a property block (length prefix included) whose body is `body`. */
export function propertyBlockLength(body: Uint8Array): number {
  return varIntLength(body.length) + body.length;
}

/** Writes a property block (varint length, then `body`) at `at`; returns the index after it. */
export function writePropertyBlock(out: Uint8Array, at: number, body: Uint8Array): number {
  at = writeVarInt(out, at, body.length);
  out.set(body, at);
  return at + body.length;
}

/** The body of `properties`, or an empty one when there are none. */
export function propertyBody(properties: Properties | undefined): Uint8Array {
  return hasProperties(properties) ? encodeProperties(properties!) : EMPTY;
}

/** A growable byte buffer for the property encoder (properties are small; rarely grows). */
class Writer {
  #out = new Uint8Array(64);
  #at = 0;

  #room(n: number): void {
    if (this.#at + n <= this.#out.length) return;
    const bigger = new Uint8Array(Math.max(this.#out.length * 2, this.#at + n));
    bigger.set(this.#out.subarray(0, this.#at));
    this.#out = bigger;
  }

  byte(value: number): this {
    this.#room(1);
    this.#out[this.#at++] = value;
    return this;
  }

  u16(value: number): this {
    this.#room(2);
    this.#out[this.#at++] = value >> 8;
    this.#out[this.#at++] = value & 0xff;
    return this;
  }

  u32(value: number): this {
    this.#room(4);
    this.#out[this.#at++] = (value >>> 24) & 0xff;
    this.#out[this.#at++] = (value >>> 16) & 0xff;
    this.#out[this.#at++] = (value >>> 8) & 0xff;
    this.#out[this.#at++] = value & 0xff;
    return this;
  }

  varint(value: number): this {
    this.#room(4);
    this.#at = writeVarInt(this.#out, this.#at, value);
    return this;
  }

  /** A two-byte length, then the bytes (binary data and UTF-8 strings). */
  binary(value: Uint8Array): this {
    this.u16(value.length);
    return this.bytes(value);
  }

  bytes(value: Uint8Array): this {
    this.#room(value.length);
    this.#out.set(value, this.#at);
    this.#at += value.length;
    return this;
  }

  done(): Uint8Array {
    return this.#out.slice(0, this.#at);
  }
}
