/**
 * CONNECT and CONNACK of MQTT 3.1 and 3.1.1, read and written by hand. Every connection starts with them, and
 * going through mqtt-packet cost a parser (an EventEmitter and a BufferList) per CONNECT plus its generic
 * encoder per CONNACK, on the path that decides the connect rate (docs/performance.md). Reading CONNECT
 * strictly here also enforces in one place what mqtt-packet leaves to the receiver: flag combinations,
 * well-formed strings, and no bytes after the last field.
 */

import type { QoS } from "./codec.ts";
import { type DecodeError, malformed } from "./decode_error.ts";
import { fixedHeaderLength } from "./frame.ts";
import { decodeString, varIntLength, writeVarInt } from "./hot.ts";

export interface ConnectPacket {
  cmd: "connect";
  protocolId: "MQTT" | "MQIsdp";
  /** 3 for MQTT 3.1, 4 for 3.1.1 (the bridge bit is not part of it). */
  protocolVersion: 3 | 4;
  clean: boolean;
  keepalive: number;
  clientId: string;
  will?: { topic: string; payload: Uint8Array; qos: QoS; retain: boolean };
  username?: string;
  password?: Uint8Array;
}

/** Protocol name and level, read first so an unsupported level can get CONNACK 1 [MQTT-3.1.2-2]. */
export function peekProtocol(frame: Uint8Array): { name: string; level: number } | null {
  const at = fixedHeaderLength(frame);
  if (frame.length < at + 2) return null;
  const end = at + 2 + ((frame[at] << 8) | frame[at + 1]);
  if (frame.length <= end) return null;
  const name = decodeString(frame, at + 2, end);
  return typeof name === "string" ? { name, level: frame[end] } : null;
}

/** A whole MQTT 3.1/3.1.1 CONNECT frame whose protocol name and level were already accepted. */
export function decodeConnect(frame: Uint8Array): ConnectPacket | DecodeError {
  if (frame[0] !== 0x10) return malformed("reserved flag bits of CONNECT are wrong [MQTT-2.2.2-2]");
  const reader = new FieldReader(frame, fixedHeaderLength(frame));
  const protocolId = reader.string() as ConnectPacket["protocolId"];
  const protocolVersion = (reader.byte() & 0x7f) as 3 | 4;
  const flags = reader.byte();
  const keepalive = reader.u16();
  if (reader.error) return reader.error;
  if (flags & 0x01) return malformed("reserved CONNECT flag is set [MQTT-3.1.2-3]");
  const willFlag = (flags & 0x04) !== 0;
  const willQos = (flags >> 3) & 3;
  const willRetain = (flags & 0x20) !== 0;
  if (!willFlag && (willQos !== 0 || willRetain)) {
    return malformed("will QoS or will retain set without the will flag [MQTT-3.1.2-11]");
  }
  if (willQos === 3) return malformed("will QoS must not be 3 [MQTT-3.1.2-14]");
  if ((flags & 0x40) && !(flags & 0x80)) {
    return malformed("password flag set without the username flag [MQTT-3.1.2-22]");
  }
  const clientId = reader.string();
  const packet: ConnectPacket = {
    cmd: "connect",
    protocolId,
    protocolVersion,
    clean: (flags & 0x02) !== 0,
    keepalive,
    clientId,
  };
  if (willFlag) {
    const topic = reader.string();
    packet.will = { topic, payload: reader.binary(), qos: willQos as QoS, retain: willRetain };
  }
  if (flags & 0x80) packet.username = reader.string();
  if (flags & 0x40) packet.password = reader.binary();
  if (reader.error) return reader.error;
  if (reader.at !== frame.length) return malformed("CONNECT has bytes after its last field [MQTT-3.1.4-1]");
  return packet;
}

/**
 * Reads length-prefixed fields in order; the first failure sticks in `error` and later reads return empty
 * values, so a decoder checks once at the end instead of after every field.
 */
class FieldReader {
  readonly #bytes: Uint8Array;
  at: number;
  error: DecodeError | null = null;

  constructor(bytes: Uint8Array, at: number) {
    this.#bytes = bytes;
    this.at = at;
  }

  byte(): number {
    if (!this.#have(1)) return 0;
    return this.#bytes[this.at++];
  }

  u16(): number {
    if (!this.#have(2)) return 0;
    const value = (this.#bytes[this.at] << 8) | this.#bytes[this.at + 1];
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
    const value = this.#bytes.subarray(this.at, this.at + length);
    this.at += length;
    return value;
  }

  #have(n: number): boolean {
    if (this.error) return false;
    if (this.at + n <= this.#bytes.length) return true;
    this.error = malformed("CONNECT is shorter than its fields say");
    return false;
  }
}

/** CONNACK of MQTT 3.1/3.1.1; `sessionPresent` only exists in 3.1.1 [MQTT-3.2.2-1]. */
export function encodeConnack(returnCode: number, sessionPresent: boolean): Uint8Array {
  return Uint8Array.of(0x20, 0x02, sessionPresent ? 1 : 0, returnCode);
}

/** SUBACK of MQTT 3.1/3.1.1: one return code per filter, in order [MQTT-3.9.3-1]. */
export function encodeSuback(packetId: number, codes: readonly number[]): Uint8Array {
  const remaining = 2 + codes.length;
  const out = new Uint8Array(1 + varIntLength(remaining) + remaining);
  out[0] = 0x90;
  let at = writeVarInt(out, 1, remaining);
  out[at++] = packetId >> 8;
  out[at++] = packetId & 0xff;
  out.set(codes, at);
  return out;
}
