/**
 * The packets on the hot path, read and written by hand for MQTT 3.1/3.1.1: PUBLISH, the four QoS
 * acknowledgements, PINGREQ and DISCONNECT. Nearly every packet a busy broker sees is one of these, and going
 * through mqtt-packet for them cost more than the rest of the broker (Node Buffer construction, a BufferList
 * and debug calls per packet; see docs/performance.md). Everything else still goes through mqtt-packet.
 * tests/unit/codec.test.ts checks both directions against mqtt-packet.
 */

import type { QoS } from "./codec.ts";
import { type DecodeError, malformed } from "./decode_error.ts";
import { fixedHeaderLength } from "./frame.ts";

/** A decoded PUBLISH. `frame` and `topicBytes` let the broker forward the bytes it received. */
export interface PublishPacket {
  cmd: "publish";
  topic: string;
  /** The topic as it arrived: a view into `frame`. */
  topicBytes: Uint8Array;
  /** A view into `frame`. */
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  dup: boolean;
  messageId?: number;
  /** The whole packet as received, header included. */
  frame: Uint8Array;
}

export type AckType = "puback" | "pubrec" | "pubrel" | "pubcomp";

export interface AckPacket {
  cmd: AckType;
  messageId: number;
}

export type HotPacket = PublishPacket | AckPacket | { cmd: "pingreq" } | { cmd: "disconnect" };

const ACK_TYPES: Record<number, AckType> = { 4: "puback", 5: "pubrec", 6: "pubrel", 7: "pubcomp" };
/** First byte of each acknowledgement; PUBREL's reserved flags are 0010 [MQTT-3.6.1-1]. */
const ACK_FIRST_BYTE = { puback: 0x40, pubrec: 0x50, pubrel: 0x62, pubcomp: 0x70, unsuback: 0xb0 } as const;

/**
 * Decodes a hot packet from a whole frame; undefined for the packet types it does not handle. The caller
 * has already checked the remaining length of the fixed-size ones.
 */
export function decodeHot(frame: Uint8Array): HotPacket | DecodeError | undefined {
  const type = frame[0] >> 4;
  switch (type) {
    case 3:
      return decodePublish(frame);
    case 4:
    case 5:
    case 6:
    case 7: {
      const cmd = ACK_TYPES[type];
      if (frame[0] !== ACK_FIRST_BYTE[cmd]) {
        return malformed(`reserved flag bits of ${cmd.toUpperCase()} are wrong`);
      }
      const messageId = (frame[2] << 8) | frame[3];
      return messageId ? { cmd, messageId } : malformed("packet identifier must not be 0");
    }
    case 12:
      return frame[0] === 0xc0 ? { cmd: "pingreq" } : malformed("reserved flag bits of PINGREQ are wrong");
    case 14:
      return frame[0] === 0xe0
        ? { cmd: "disconnect" }
        : malformed("reserved flag bits of DISCONNECT are wrong");
    default:
      return undefined;
  }
}

function decodePublish(frame: Uint8Array): PublishPacket | DecodeError {
  const flags = frame[0];
  const qos = (flags >> 1) & 3;
  if (qos === 3) return malformed("Packet must not have both QoS bits set to 1");
  const dup = (flags & 0x08) !== 0;
  if (qos === 0 && dup) return malformed("DUP must be 0 for a QoS 0 PUBLISH");
  let at = fixedHeaderLength(frame);
  if (at + 2 > frame.length) return malformed("Cannot parse topic");
  const topicEnd = at + 2 + ((frame[at] << 8) | frame[at + 1]);
  if (topicEnd > frame.length) return malformed("Cannot parse topic");
  const topic = decodeString(frame, at + 2, topicEnd);
  if (typeof topic !== "string") return topic;
  const topicBytes = frame.subarray(at + 2, topicEnd);
  at = topicEnd;
  let messageId: number | undefined;
  if (qos > 0) {
    if (at + 2 > frame.length) return malformed("Cannot parse messageId");
    messageId = (frame[at] << 8) | frame[at + 1];
    if (!messageId) return malformed("packet identifier must not be 0");
    at += 2;
  }
  return {
    cmd: "publish",
    topic,
    topicBytes,
    payload: frame.subarray(at),
    qos: qos as QoS,
    retain: (flags & 0x01) !== 0,
    dup,
    messageId,
    frame,
  };
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
/** Longer ASCII strings go through TextDecoder rather than one huge argument list. */
const MAX_CHAR_CODE_ARGS = 4096;

/**
 * An MQTT UTF-8 string field: well-formed UTF-8 [MQTT-1.5.3-1] without U+0000 [MQTT-1.5.3-2]. Topics are
 * nearly always ASCII, which is decoded without a call into the runtime's TextDecoder.
 */
export function decodeString(bytes: Uint8Array, start: number, end: number): string | DecodeError {
  let ascii = true;
  for (let i = start; i < end; i++) {
    const byte = bytes[i];
    if (byte === 0) return malformed("string contains U+0000 [MQTT-1.5.3-2]");
    if (byte >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii && end - start <= MAX_CHAR_CODE_ARGS) {
    // A typed array is a valid argument list; the cast only satisfies the number[] signature.
    return String.fromCharCode.apply(null, bytes.subarray(start, end) as unknown as number[]);
  }
  let text: string;
  try {
    text = strictUtf8.decode(bytes.subarray(start, end));
  } catch {
    return malformed("string is not well-formed UTF-8 [MQTT-1.5.3-1]");
  }
  return text.includes("\u0000") ? malformed("string contains U+0000 [MQTT-1.5.3-2]") : text;
}

/**
 * Encodes a PUBLISH from its topic bytes. For QoS 1 and 2 the packet id is written as 0: `withPacketId`
 * copies the bytes and patches it, so a message encoded once serves every subscriber.
 */
export function encodePublish(
  topicBytes: Uint8Array,
  payload: Uint8Array,
  qos: QoS,
  retain: boolean,
): Uint8Array {
  const remaining = 2 + topicBytes.length + (qos > 0 ? 2 : 0) + payload.length;
  const out = new Uint8Array(1 + varIntLength(remaining) + remaining);
  out[0] = publishFirstByte(qos, retain);
  let at = writeVarInt(out, 1, remaining);
  out[at++] = topicBytes.length >> 8;
  out[at++] = topicBytes.length & 0xff;
  out.set(topicBytes, at);
  at += topicBytes.length + (qos > 0 ? 2 : 0); // the packet id bytes are zero in a new array
  out.set(payload, at);
  return out;
}

export function publishFirstByte(qos: QoS, retain: boolean): number {
  return 0x30 | (qos << 1) | (retain ? 0x01 : 0);
}

/** A copy of an encoded QoS 1/2 PUBLISH with its packet id (and optionally DUP) set. */
export function withPacketId(encoded: Uint8Array, packetId: number, dup = false): Uint8Array {
  const copy = encoded.slice();
  if (dup) copy[0] |= 0x08;
  const header = fixedHeaderLength(copy);
  const at = header + 2 + ((copy[header] << 8) | copy[header + 1]);
  copy[at] = packetId >> 8;
  copy[at + 1] = packetId & 0xff;
  return copy;
}

/** An acknowledgement that is only a packet id in MQTT 3.1.1. */
export function encodeAck(type: keyof typeof ACK_FIRST_BYTE, packetId: number): Uint8Array {
  const out = new Uint8Array(4);
  out[0] = ACK_FIRST_BYTE[type];
  out[1] = 2;
  out[2] = packetId >> 8;
  out[3] = packetId & 0xff;
  return out;
}

export const PINGRESP: Uint8Array = Uint8Array.of(0xd0, 0x00);

export function varIntLength(value: number): number {
  return value < 128 ? 1 : value < 16384 ? 2 : value < 2097152 ? 3 : 4;
}

/** Writes MQTT's variable byte integer at `at`; returns the index after it. */
export function writeVarInt(out: Uint8Array, at: number, value: number): number {
  do {
    let byte = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) byte |= 0x80;
    out[at++] = byte;
  } while (value > 0);
  return at;
}
