/**
 * The field types every packet is built from (MQTT 5.0 section 1.5): strict UTF-8 strings, variable byte
 * integers, and a reader for length-prefixed fields. Kept apart from the packet decoders so that `hot.ts`,
 * `properties.ts` and the others can share them without importing each other.
 */

import { type DecodeError, malformed } from "./decode_error.ts";

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
 * A copy of `bytes` in a buffer of its own. Not `bytes.slice()`: the transport's chunks are Node Buffers,
 * whose slice() is a view of the same memory, and every frame and field is a view into a chunk.
 */
export function copyBytes(bytes: Uint8Array): Uint8Array {
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return copy;
}

/** Whether `bytes` are well-formed UTF-8 (a payload whose Payload Format Indicator says it is). */
export function isUtf8(bytes: Uint8Array): boolean {
  try {
    strictUtf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

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

/** `readVarInt` found fewer bytes than the integer needs before `end`. */
export const VARINT_TRUNCATED = -1;
/** `readVarInt` found more than four bytes, or a longer encoding than the value needs [MQTT-1.5.5-1]. */
export const VARINT_BAD = -2;

/**
 * A variable byte integer at `at`, or VARINT_TRUNCATED / VARINT_BAD. Since only the minimal encoding is
 * valid, the caller finds its end as `at + varIntLength(value)` (no result object to allocate).
 */
export function readVarInt(bytes: Uint8Array, at: number, end: number): number {
  let value = 0;
  let multiplier = 1;
  for (let i = 0; i < 4; i++) {
    if (at + i >= end) return VARINT_TRUNCATED;
    const byte = bytes[at + i];
    value += (byte & 0x7f) * multiplier;
    if ((byte & 0x80) === 0) return varIntLength(value) === i + 1 ? value : VARINT_BAD;
    multiplier *= 128;
  }
  return VARINT_BAD;
}

/**
 * Reads fields in order; the first failure sticks in `error` and later reads return empty values, so a
 * decoder checks once at the end instead of after every field.
 */
export class FieldReader {
  readonly bytes: Uint8Array;
  at: number;
  error: DecodeError | null = null;
  readonly #what: string;

  /** `what` names the packet in the error for a field that runs past the end. */
  constructor(bytes: Uint8Array, at: number, what: string) {
    this.bytes = bytes;
    this.at = at;
    this.#what = what;
  }

  byte(): number {
    if (!this.#have(1)) return 0;
    return this.bytes[this.at++];
  }

  u16(): number {
    if (!this.#have(2)) return 0;
    const value = (this.bytes[this.at] << 8) | this.bytes[this.at + 1];
    this.at += 2;
    return value;
  }

  string(): string {
    const bytes = this.binary();
    if (this.error) return "";
    const text = decodeString(bytes, 0, bytes.length);
    if (typeof text === "string") return text;
    this.error = text;
    return "";
  }

  binary(): Uint8Array {
    const length = this.u16();
    if (!this.#have(length)) return new Uint8Array(0);
    const value = this.bytes.subarray(this.at, this.at + length);
    this.at += length;
    return value;
  }

  #have(n: number): boolean {
    if (this.error) return false;
    if (this.at + n <= this.bytes.length) return true;
    this.error = malformed(`${this.#what} is shorter than its fields say`);
    return false;
  }
}
