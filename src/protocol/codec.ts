/**
 * The codec: one entry point for turning frames into typed packets.
 *
 * What every connection or every message touches is read by hand: PUBLISH, the QoS acknowledgements, PINGREQ
 * and DISCONNECT in `hot.ts`, CONNECT in `connect.ts`. SUBSCRIBE and UNSUBSCRIBE go through npm:mqtt-packet's
 * parser, plus the checks it leaves to the receiver (non-zero packet ids, at least one filter, well-formed
 * UTF-8 without U+0000). Everything the broker sends in MQTT 3.1/3.1.1 is written by hand too.
 */

// mqtt-packet's parser alone: the package's index also loads its generator, which builds a cache of 65,536
// Buffers (about 7 MB) at load time that the broker never uses.
import mqttPacketParser from "mqtt-packet/parser.js";
import type * as MP from "mqtt-packet";
import { Buffer } from "node:buffer";
import { type ConnectPacket, decodeConnect } from "./connect.ts";
import { type DecodeError, malformed } from "./decode_error.ts";
import { fixedHeaderLength } from "./frame.ts";
import { decodeHot, decodeString, type HotPacket } from "./hot.ts";

export type { DecodeError } from "./decode_error.ts";
export type QoS = MP.QoS;
export type SubscribePacket = MP.ISubscribePacket;
export type UnsubscribePacket = MP.IUnsubscribePacket;
/** Every packet a client can send, as decoded. The ones no client may send are kept for the error. */
export type Packet =
  | HotPacket
  | ConnectPacket
  | SubscribePacket
  | UnsubscribePacket
  | MP.IConnackPacket
  | MP.ISubackPacket
  | MP.IUnsubackPacket
  | MP.IPingrespPacket
  | MP.IAuthPacket;

/** MQTT protocol levels: 3 is MQTT 3.1 ("MQIsdp"), 4 is 3.1.1, 5 is 5.0. */
export type ProtocolVersion = 3 | 4 | 5;

/** Remaining length of the packet types whose length is fixed in MQTT 3.1 and 3.1.1, by type; -1 if not. */
const FIXED_LENGTH_V3 = [-1, -1, -1, -1, 2, 2, 2, 2, -1, -1, -1, 2, 0, 0, 0, -1];

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

/** Decodes one whole frame (from FrameReader) sent at protocol level `version`. */
export function decodePacket(frame: Uint8Array, version: ProtocolVersion): Packet | DecodeError {
  const type = frame[0] >> 4;
  if (version !== 5) {
    const fixed = FIXED_LENGTH_V3[type];
    if (fixed >= 0 && frame.length - fixedHeaderLength(frame) !== fixed) {
      return malformed(`${TYPE_NAMES[type]} must have a remaining length of ${fixed}`);
    }
    if (type === 1) return decodeConnect(frame);
    const hot = decodeHot(frame);
    if (hot) return hot;
  }
  const buffer = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  const packet = parseWithMqttPacket(buffer, version);
  if (packet instanceof Error) return malformed(packet.message);
  const problem = violation(packet, frame);
  return problem ? malformed(problem) : packet as Packet;
}

/** The slice of mqtt-packet's parser used here (its package types do not cover the parser module). */
interface MqttPacketParser {
  on(event: "packet", listener: (packet: MP.Packet) => void): void;
  on(event: "error", listener: (error: Error) => void): void;
  parse(frame: Buffer): void;
}

const createParser = (mqttPacketParser as { parser(options: { protocolVersion: number }): MqttPacketParser })
  .parser;

/**
 * One whole frame through a fresh parser (an EventEmitter and a BufferList, made only for these rare
 * packets, so an idle connection carries none); its events fire synchronously inside `parse`.
 */
function parseWithMqttPacket(frame: Buffer, version: ProtocolVersion): MP.Packet | Error {
  let result: MP.Packet | Error = new Error("incomplete packet");
  const parser = createParser({ protocolVersion: version });
  parser.on("packet", (packet) => result = packet);
  parser.on("error", (error) => result = error);
  parser.parse(frame);
  return result;
}

/** What mqtt-packet leaves to the receiver in SUBSCRIBE and UNSUBSCRIBE; null if nothing is wrong. */
function violation(packet: MP.Packet, frame: Uint8Array): string | null {
  switch (packet.cmd) {
    case "subscribe":
      if (!packet.messageId) return "packet identifier must not be 0";
      if (packet.subscriptions.length === 0) return "SUBSCRIBE must contain at least one topic filter";
      return checkFilters(frame, true);
    case "unsubscribe":
      if (!packet.messageId) return "packet identifier must not be 0";
      if (packet.unsubscriptions.length === 0) {
        return "UNSUBSCRIBE must contain at least one topic filter";
      }
      return checkFilters(frame, false);
    default:
      return null;
  }
}

/**
 * mqtt-packet decodes strings leniently (bad UTF-8 becomes U+FFFD, U+0000 passes), so the filters are
 * re-read from the frame with the strict reader of `hot.ts` [MQTT-1.5.3-1, MQTT-1.5.3-2]. MQTT 3.1/3.1.1
 * layout: packet id, then each filter (followed by its options byte in SUBSCRIBE). The frame was already
 * parsed, so the lengths are in bounds.
 */
function checkFilters(frame: Uint8Array, withOptions: boolean): string | null {
  let at = fixedHeaderLength(frame) + 2;
  while (at < frame.length) {
    const end = at + 2 + ((frame[at] << 8) | frame[at + 1]);
    const filter = decodeString(frame, at + 2, end);
    if (typeof filter !== "string") return filter.message;
    at = end + (withOptions ? 1 : 0);
  }
  return null;
}
