/**
 * The codec: npm:mqtt-packet behind a small typed surface.
 *
 * mqtt-packet parses; this module adds the checks it leaves out and the spec requires of a server
 * (exact lengths of fixed-size packets, non-zero packet ids, well-formed UTF-8 without U+0000, flag
 * combinations in CONNECT). Encoding uses mqtt-packet, except PUBLISH: a fan-out encodes one message for
 * many subscribers, so PUBLISH has its own encoder that writes the bytes once and patches the packet id.
 */

import mqttPacket from "mqtt-packet";
import type * as MP from "mqtt-packet";
import { Buffer } from "node:buffer";
import { fixedHeaderLength } from "./frame.ts";

export type QoS = MP.QoS;
export type Packet = MP.Packet;
export type ConnectPacket = MP.IConnectPacket;
export type PublishPacket = MP.IPublishPacket;
export type SubscribePacket = MP.ISubscribePacket;
export type UnsubscribePacket = MP.IUnsubscribePacket;

/** MQTT protocol levels: 3 is MQTT 3.1 ("MQIsdp"), 4 is 3.1.1, 5 is 5.0. */
export type ProtocolVersion = 3 | 4 | 5;

/** Why a frame could not be decoded; always closes the connection in MQTT 3.1.1. */
export interface DecodeError {
  kind: "malformed";
  message: string;
}

/** Packet types whose remaining length is fixed in MQTT 3.1 and 3.1.1. */
const FIXED_LENGTH_V3: Record<number, number> = {
  4: 2, // PUBACK
  5: 2, // PUBREC
  6: 2, // PUBREL
  7: 2, // PUBCOMP
  11: 2, // UNSUBACK
  12: 0, // PINGREQ
  13: 0, // PINGRESP
  14: 0, // DISCONNECT
};

/**
 * One decoder per connection: mqtt-packet's parser remembers the protocol level of the CONNECT it saw,
 * which changes how later packets are read.
 */
export class PacketDecoder {
  // deno-lint-ignore no-explicit-any -- mqtt-packet's Parser typings omit its `parse` return and events' payloads
  readonly #parser: any;
  /** Set synchronously by the parser's events during `parse`. */
  #result: Packet | Error | null = null;
  #version: ProtocolVersion = 4;

  constructor() {
    this.#parser = mqttPacket.parser({ protocolVersion: 4 });
    this.#parser.on("packet", (packet: Packet) => this.#result = packet);
    this.#parser.on("error", (error: Error) => this.#result = error);
  }

  /** Decodes one whole frame (from FrameReader). */
  decode(frame: Buffer): Packet | DecodeError {
    const type = frame[0] >> 4;
    if (this.#version !== 5 && type in FIXED_LENGTH_V3) {
      const length = frame.length - fixedHeaderLength(frame);
      if (length !== FIXED_LENGTH_V3[type]) {
        return malformed(`${TYPE_NAMES[type]} must have a remaining length of ${FIXED_LENGTH_V3[type]}`);
      }
    }
    this.#result = null;
    this.#parser.parse(frame);
    const packet = this.#result as Packet | Error | null;
    if (packet instanceof Error) return malformed(packet.message);
    if (!packet) return malformed("incomplete packet");
    const problem = checkPacket(packet, frame);
    if (problem) return malformed(problem);
    if (packet.cmd === "connect") this.#version = packet.protocolVersion as ProtocolVersion;
    return packet;
  }
}

const TYPE_NAMES = [
  "reserved",
  "CONNECT",
  "CONNACK",
  "PUBLISH",
  "PUBACK",
  "PUBREC",
  "PUBREL",
  "PUBCOMP",
  "SUBSCRIBE",
  "SUBACK",
  "UNSUBSCRIBE",
  "UNSUBACK",
  "PINGREQ",
  "PINGRESP",
  "DISCONNECT",
  "AUTH",
];

function malformed(message: string): DecodeError {
  return { kind: "malformed", message };
}

/** Checks mqtt-packet leaves to the receiver; returns the violation, or null. */
function checkPacket(packet: Packet, frame: Buffer): string | null {
  switch (packet.cmd) {
    case "connect": {
      if (packet.will && (packet.will.qos as number) === 3) return "will QoS must not be 3";
      if (packet.password !== undefined && packet.username === undefined) {
        return "password flag set without the username flag";
      }
      if (connectLength(packet) !== frame.length - fixedHeaderLength(frame)) {
        return "CONNECT has bytes after its last field";
      }
      const strings = [packet.clientId, packet.username, packet.will?.topic];
      return checkStrings(strings, frame);
    }
    case "publish":
      if (packet.qos > 0 && !packet.messageId) return "packet identifier must not be 0";
      if (packet.qos === 0 && packet.dup) return "DUP must be 0 for a QoS 0 PUBLISH";
      return checkStrings([packet.topic], frame);
    case "subscribe":
      if (!packet.messageId) return "packet identifier must not be 0";
      if (packet.subscriptions.length === 0) return "SUBSCRIBE must contain at least one topic filter";
      return checkStrings(packet.subscriptions.map((s) => s.topic), frame);
    case "unsubscribe":
      if (!packet.messageId) return "packet identifier must not be 0";
      if (packet.unsubscriptions.length === 0) {
        return "UNSUBSCRIBE must contain at least one topic filter";
      }
      return checkStrings(packet.unsubscriptions, frame);
    case "puback":
    case "pubrec":
    case "pubrel":
    case "pubcomp":
      return packet.messageId ? null : "packet identifier must not be 0";
    default:
      return null;
  }
}

/**
 * The remaining length an MQTT 3.1/3.1.1 CONNECT with these fields has. mqtt-packet skips whatever follows
 * the last field, so comparing this with the real length is how trailing bytes are caught.
 */
function connectLength(packet: ConnectPacket): number {
  const field = (value: string | Uint8Array | undefined) =>
    value === undefined ? 0 : 2 + (typeof value === "string" ? Buffer.byteLength(value) : value.length);
  return field(packet.protocolId) + 4 + field(packet.clientId) +
    (packet.will ? field(packet.will.topic) + field(packet.will.payload) : 0) +
    field(packet.username) + field(packet.password);
}

/**
 * mqtt-packet decodes strings leniently, replacing bad UTF-8 with U+FFFD. A string without U+FFFD was
 * well-formed; only when one has it are the raw bytes re-read strictly [MQTT-1.5.3-1].
 */
function checkStrings(strings: (string | undefined)[], frame: Buffer): string | null {
  let suspect = false;
  for (const s of strings) {
    if (s === undefined) continue;
    if (s.includes("\u0000")) return "string contains U+0000 [MQTT-1.5.3-2]";
    if (s.includes("\uFFFD")) suspect = true;
  }
  if (suspect && !rawStringsAreUtf8(frame)) return "string is not well-formed UTF-8 [MQTT-1.5.3-1]";
  return null;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Re-reads every UTF-8 string field of a CONNECT, PUBLISH, SUBSCRIBE or UNSUBSCRIBE frame strictly
 * (MQTT 3.1/3.1.1 layout; frames reaching here were already parsed, so lengths are in bounds).
 */
function rawStringsAreUtf8(frame: Buffer): boolean {
  const type = frame[0] >> 4;
  let at = fixedHeaderLength(frame);
  const u16 = (i: number) => (frame[i] << 8) | frame[i + 1];
  const readString = (): boolean => {
    const length = u16(at);
    const bytes = frame.subarray(at + 2, at + 2 + length);
    at += 2 + length;
    try {
      strictUtf8.decode(bytes);
      return true;
    } catch {
      return false;
    }
  };
  const skipBinary = () => at += 2 + u16(at);
  switch (type) {
    case 1: { // CONNECT: name, level, flags, keep-alive, client id, [will topic, will payload], [username]
      at += 2 + u16(at);
      const flags = frame[at + 1];
      at += 4;
      if (!readString()) return false;
      if (flags & 0x04) {
        if (!readString()) return false;
        skipBinary();
      }
      return (flags & 0x80) ? readString() : true;
    }
    case 3: // PUBLISH: topic first
      return readString();
    case 8: // SUBSCRIBE: packet id, then (filter, options) pairs
    case 10: { // UNSUBSCRIBE: packet id, then filters
      at += 2;
      while (at < frame.length) {
        if (!readString()) return false;
        if (type === 8) at += 1;
      }
      return true;
    }
    default:
      return true;
  }
}

/** Encodes any packet mqtt-packet knows, for the given protocol level. */
export function encode(packet: Packet, version: ProtocolVersion): Buffer {
  return mqttPacket.generate(packet, { protocolVersion: version });
}

const textEncoder = new TextEncoder();

/**
 * Encodes an MQTT 3.1/3.1.1 PUBLISH. For QoS 1 and 2 the packet id is written as 0: `withPacketId` copies
 * the bytes and patches it, so a message encoded once serves every subscriber.
 */
export function encodePublishV3(
  topic: string,
  payload: Uint8Array,
  qos: QoS,
  retain: boolean,
  dup: boolean,
): Buffer {
  const topicBytes = textEncoder.encode(topic);
  const remaining = 2 + topicBytes.length + (qos > 0 ? 2 : 0) + payload.length;
  const buffer = Buffer.allocUnsafe(1 + varIntLength(remaining) + remaining);
  buffer[0] = 0x30 | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 0x01 : 0);
  let at = writeVarInt(buffer, 1, remaining);
  buffer[at++] = topicBytes.length >> 8;
  buffer[at++] = topicBytes.length & 0xff;
  buffer.set(topicBytes, at);
  at += topicBytes.length;
  if (qos > 0) {
    buffer[at++] = 0;
    buffer[at++] = 0;
  }
  buffer.set(payload, at);
  return buffer;
}

/** A copy of an encoded QoS 1/2 PUBLISH with its packet id (and optionally DUP) set. */
export function withPacketId(encoded: Buffer, packetId: number, dup = false): Buffer {
  const copy = Buffer.from(encoded);
  if (dup) copy[0] |= 0x08;
  const header = fixedHeaderLength(copy);
  const at = header + 2 + ((copy[header] << 8) | copy[header + 1]);
  copy[at] = packetId >> 8;
  copy[at + 1] = packetId & 0xff;
  return copy;
}

function varIntLength(value: number): number {
  return value < 128 ? 1 : value < 16384 ? 2 : value < 2097152 ? 3 : 4;
}

function writeVarInt(buffer: Uint8Array, at: number, value: number): number {
  do {
    let byte = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) byte |= 0x80;
    buffer[at++] = byte;
  } while (value > 0);
  return at;
}

/** Acknowledgements that are a packet id and nothing else in MQTT 3.1.1 (hot path: no mqtt-packet call). */
const ACK_FIRST_BYTE = { puback: 0x40, pubrec: 0x50, pubrel: 0x62, pubcomp: 0x70, unsuback: 0xb0 } as const;

export function encodeAckV3(type: keyof typeof ACK_FIRST_BYTE, packetId: number): Buffer {
  const buffer = Buffer.allocUnsafe(4);
  buffer[0] = ACK_FIRST_BYTE[type];
  buffer[1] = 2;
  buffer[2] = packetId >> 8;
  buffer[3] = packetId & 0xff;
  return buffer;
}

/**
 * Protocol name and level of a CONNECT frame, read before full decoding so that an unsupported level can
 * be answered with CONNACK 0x01 [MQTT-3.1.2-2] rather than a bare close. Null if the frame is too short.
 */
export function peekProtocol(frame: Uint8Array): { name: string; level: number } | null {
  const at = fixedHeaderLength(frame);
  if (frame.length < at + 2) return null;
  const length = (frame[at] << 8) | frame[at + 1];
  if (frame.length < at + 3 + length) return null;
  const name = new TextDecoder().decode(frame.subarray(at + 2, at + 2 + length));
  return { name, level: frame[at + 2 + length] };
}
