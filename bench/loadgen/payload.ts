/**
 * The 16-byte header every payload starts with, laid out as mqttload's (little-endian): send time (u64,
 * nanoseconds on the generator's shared clock), publisher index (u32), sequence number (u32). Plain byte
 * arithmetic rather than a DataView: the buffers it patches are replaced as they grow, and this runs per
 * message.
 */

export const HEADER_BYTES = 16;

const TWO_32 = 4294967296;

export function writeU32(buf: Uint8Array, pos: number, value: number): void {
  buf[pos] = value & 0xff;
  buf[pos + 1] = (value >>> 8) & 0xff;
  buf[pos + 2] = (value >>> 16) & 0xff;
  buf[pos + 3] = (value >>> 24) & 0xff;
}

export function readU32(buf: Uint8Array, pos: number): number {
  return (buf[pos] | (buf[pos + 1] << 8) | (buf[pos + 2] << 16) | (buf[pos + 3] << 24)) >>> 0;
}

/** Writes a non-negative integer below 2^53 as a u64. */
export function writeU64(buf: Uint8Array, pos: number, value: number): void {
  const hi = Math.floor(value / TWO_32);
  writeU32(buf, pos, value - hi * TWO_32);
  writeU32(buf, pos + 4, hi);
}

export function readU64(buf: Uint8Array, pos: number): number {
  return readU32(buf, pos + 4) * TWO_32 + readU32(buf, pos);
}

export interface Header {
  sentNs: number;
  pub: number;
  seq: number;
}

export function writeHeader(buf: Uint8Array, pos: number, header: Header): void {
  writeU64(buf, pos, Math.round(header.sentNs));
  writeU32(buf, pos + 8, header.pub);
  writeU32(buf, pos + 12, header.seq);
}

export function readHeader(buf: Uint8Array, pos: number): Header {
  return { sentNs: readU64(buf, pos), pub: readU32(buf, pos + 8), seq: readU32(buf, pos + 12) };
}
