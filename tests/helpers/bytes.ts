/**
 * Byte builders for packets written by hand, for what mqtt-packet will not encode (bad flags, wildcard
 * topics, truncated or oversized packets). Runs of bytes are plain arrays so they spread into one another.
 */

import { DUP_FLAG, packetIdOffset } from "../../src/protocol/hot.ts";

/** MQTT's variable byte integer (the remaining length): seven bits a byte, low first, high bit "more". */
export function varInt(value: number): number[] {
  const out: number[] = [];
  do {
    let byte = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) byte |= 0x80;
    out.push(byte);
  } while (value > 0);
  return out;
}

/** A two-byte big-endian integer, as MQTT sends packet ids, keep-alives and string lengths. */
export function u16(value: number): number[] {
  return [value >> 8, value & 0xff];
}

/** A four-byte big-endian integer, as MQTT 5 sends expiry intervals and maximum sizes. */
export function u32(value: number): number[] {
  return [(value >>> 24) & 0xff, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff];
}

/** The UTF-8 bytes of `text` with no length prefix, for payloads and hand-made invalid strings. */
export function utf8Bytes(text: string): number[] {
  return [...new TextEncoder().encode(text)];
}

/** An MQTT UTF-8 string: its byte length as two bytes, then its UTF-8 bytes. */
export function utf8(text: string): number[] {
  const bytes = utf8Bytes(text);
  return [...u16(bytes.length), ...bytes];
}

/** Joins runs of bytes into one buffer, ready to send. */
export function concat(parts: ArrayLike<number>[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** A whole packet: `firstByte` (type and flags), the remaining length of `body`, then `body`. */
export function frame(firstByte: number, body: ArrayLike<number>): Uint8Array {
  return concat([[firstByte, ...varInt(body.length)], body]);
}

/**
 * A copy of an encoded QoS 1/2 PUBLISH with its packet id (and optionally DUP) set: what a connection sends
 * for `writeEdited(bytes, packetIdOffset(bytes), packetId, dup ? DUP_FLAG : 0)`.
 */
export function withPacketId(encoded: Uint8Array, packetId: number, dup = false): Uint8Array {
  const copy = new Uint8Array(encoded);
  const at = packetIdOffset(copy);
  copy[at] = packetId >> 8;
  copy[at + 1] = packetId & 0xff;
  if (dup) copy[0] |= DUP_FLAG;
  return copy;
}

/**
 * `length` pseudo-random bytes (xorshift from `seed`) in which a dropped, repeated, reordered or
 * mis-unmasked byte shows.
 */
export function pattern(length: number, seed = 1): Uint8Array {
  const bytes = new Uint8Array(length);
  let x = 0x2545f491 ^ seed;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  return bytes;
}
