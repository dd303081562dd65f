/**
 * The codec: one entry point for turning frames into typed packets and packets into bytes.
 *
 * The hot packets (PUBLISH, the QoS acknowledgements, PINGREQ, DISCONNECT) are read and written by hand in
 * `hot.ts`; every other packet goes through npm:mqtt-packet, plus the checks it leaves out and the spec
 * requires of a server (exact lengths of fixed-size packets, non-zero packet ids, well-formed UTF-8 without
 * U+0000, flag combinations and trailing bytes in CONNECT).
 */

import mqttPacket from "mqtt-packet";
import type * as MP from "mqtt-packet";
import { Buffer } from "node:buffer";
import { type DecodeError, malformed } from "./decode_error.ts";
import { fixedHeaderLength } from "./frame.ts";
import { decodeHot, decodeString, type HotPacket } from "./hot.ts";

export type { DecodeError } from "./decode_error.ts";
export type QoS = MP.QoS;
export type ConnectPacket = MP.IConnectPacket;
export type SubscribePacket = MP.ISubscribePacket;
export type UnsubscribePacket = MP.IUnsubscribePacket;
/** Every packet a client can send, as decoded: the hot ones by hand, the rest by mqtt-packet. */
export type Packet =
  | HotPacket
  | Exclude<
    MP.Packet,
    | MP.IPublishPacket
    | MP.IPubackPacket
    | MP.IPubrecPacket
    | MP.IPubrelPacket
    | MP.IPubcompPacket
    | MP.IPingreqPacket
    | MP.IDisconnectPacket
  >;

/** MQTT protocol levels: 3 is MQTT 3.1 ("MQIsdp"), 4 is 3.1.1, 5 is 5.0. */
export type ProtocolVersion = 3 | 4 | 5;

/** Remaining length of the packet types whose length is fixed in MQTT 3.1 and 3.1.1, by type; -1 if not. */
const FIXED_LENGTH_V3 = [-1, -1, -1, -1, 2, 2, 2, 2, -1, -1, -1, 2, 0, 0, 0, -1];

/**
 * Decodes one whole frame (from FrameReader) sent at protocol level `version` (4 until CONNECT says
 * otherwise). mqtt-packet's parser, an EventEmitter and a BufferList, is made only for the rare packets that
 * need it, so an idle connection does not carry one.
 */
export function decodePacket(frame: Uint8Array, version: ProtocolVersion): Packet | DecodeError {
  const type = frame[0] >> 4;
  if (version !== 5) {
    const fixed = FIXED_LENGTH_V3[type];
    if (fixed >= 0 && frame.length - fixedHeaderLength(frame) !== fixed) {
      return malformed(`${TYPE_NAMES[type]} must have a remaining length of ${fixed}`);
    }
    const hot = decodeHot(frame);
    if (hot) return hot;
  }
  const buffer = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  const packet = parseWithMqttPacket(buffer, version);
  if (packet instanceof Error) return malformed(packet.message);
  return checkPacket(packet, buffer) ?? packet as Packet;
}

/** One whole frame through a fresh mqtt-packet parser; its events fire synchronously inside `parse`. */
function parseWithMqttPacket(frame: Buffer, version: ProtocolVersion): MP.Packet | Error {
  let result: MP.Packet | Error = new Error("incomplete packet");
  const parser = mqttPacket.parser({ protocolVersion: version });
  parser.on("packet", (packet: MP.Packet) => result = packet);
  parser.on("error", (error: Error) => result = error);
  parser.parse(frame);
  return result;
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

/** Checks mqtt-packet leaves to the receiver; returns the violation, or null. */
function checkPacket(packet: MP.Packet, frame: Buffer): DecodeError | null {
  const problem = violation(packet, frame);
  return problem ? malformed(problem) : null;
}

function violation(packet: MP.Packet, frame: Buffer): string | null {
  switch (packet.cmd) {
    case "connect": {
      if (packet.will && (packet.will.qos as number) === 3) return "will QoS must not be 3";
      if (packet.password !== undefined && packet.username === undefined) {
        return "password flag set without the username flag";
      }
      if (connectLength(packet) !== frame.length - fixedHeaderLength(frame)) {
        return "CONNECT has bytes after its last field";
      }
      return checkStrings(frame);
    }
    case "subscribe":
      if (!packet.messageId) return "packet identifier must not be 0";
      if (packet.subscriptions.length === 0) return "SUBSCRIBE must contain at least one topic filter";
      return checkStrings(frame);
    case "unsubscribe":
      if (!packet.messageId) return "packet identifier must not be 0";
      if (packet.unsubscriptions.length === 0) {
        return "UNSUBSCRIBE must contain at least one topic filter";
      }
      return checkStrings(frame);
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
 * mqtt-packet decodes strings leniently (bad UTF-8 becomes U+FFFD, U+0000 passes), so the string fields of
 * CONNECT, SUBSCRIBE and UNSUBSCRIBE are re-read from the frame with the strict reader of `hot.ts`
 * [MQTT-1.5.3-1, MQTT-1.5.3-2]. MQTT 3.1/3.1.1 layout; the frame was already parsed, so lengths are in bounds.
 */
function checkStrings(frame: Uint8Array): string | null {
  const type = frame[0] >> 4;
  let at = fixedHeaderLength(frame);
  const u16 = (i: number) => (frame[i] << 8) | frame[i + 1];
  const readString = (): string | null => {
    const end = at + 2 + u16(at);
    const result = decodeString(frame, at + 2, end);
    at = end;
    return typeof result === "string" ? null : result.message;
  };
  switch (type) {
    case 1: { // CONNECT: name, level, flags, keep-alive, client id, [will topic, will payload], [username]
      at += 2 + u16(at);
      const flags = frame[at + 1];
      at += 4;
      const problem = readString() ?? ((flags & 0x04) ? readString() : null);
      if (problem) return problem;
      if (flags & 0x04) at += 2 + u16(at); // will payload: binary, not a string
      return (flags & 0x80) ? readString() : null;
    }
    case 8: // SUBSCRIBE: packet id, then (filter, options) pairs
    case 10: { // UNSUBSCRIBE: packet id, then filters
      at += 2;
      while (at < frame.length) {
        const problem = readString();
        if (problem) return problem;
        if (type === 8) at += 1;
      }
      return null;
    }
    default:
      return null;
  }
}

/** Encodes any packet mqtt-packet knows, for the given protocol level. */
export function encode(packet: MP.Packet, version: ProtocolVersion): Uint8Array {
  return mqttPacket.generate(packet, { protocolVersion: version });
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
