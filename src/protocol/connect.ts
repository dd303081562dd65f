/**
 * CONNECT and CONNACK of MQTT 3.1, 3.1.1 and 5.0, read and written by hand. Every connection starts with
 * them, and going through mqtt-packet cost a parser (an EventEmitter and a BufferList) per CONNECT plus its
 * generic encoder per CONNACK, on the path that decides the connect rate (docs/performance.md). Reading
 * CONNECT strictly here also enforces in one place what mqtt-packet leaves to the receiver: flag
 * combinations, well-formed strings, property rules, and no bytes after the last field.
 */

import type { ProtocolVersion, QoS } from "./codec.ts";
import { type DecodeError, malformed, protocolError } from "./decode_error.ts";
import { decodeString, FieldReader, varIntLength, writeVarInt } from "./fields.ts";
import { fixedHeaderLength } from "./frame.ts";
import {
  type Properties,
  propertyBlockLength,
  propertyBody,
  readProperties,
  writePropertyBlock,
} from "./properties.ts";

export interface Will {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  /** MQTT 5.0 only: the will properties. */
  properties?: Properties;
  /** MQTT 5.0 only: the will properties to forward untouched (see PublishPacket.forward). */
  forward?: Uint8Array;
}

export interface ConnectPacket {
  cmd: "connect";
  protocolId: "MQTT" | "MQIsdp";
  /** 3 for MQTT 3.1, 4 for 3.1.1, 5 for 5.0 (the bridge bit is not part of it). */
  protocolVersion: 3 | 4 | 5;
  clean: boolean;
  keepalive: number;
  clientId: string;
  /** MQTT 5.0 only. */
  properties?: Properties;
  will?: Will;
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

/** A whole CONNECT frame whose protocol name and level were already accepted. */
export function decodeConnect(frame: Uint8Array): ConnectPacket | DecodeError {
  if (frame[0] !== 0x10) return malformed("reserved flag bits of CONNECT are wrong [MQTT-2.2.2-2]");
  const reader = new FieldReader(frame, fixedHeaderLength(frame), "CONNECT");
  const protocolId = reader.string() as ConnectPacket["protocolId"];
  const protocolVersion = (reader.byte() & 0x7f) as 3 | 4 | 5;
  const flags = reader.byte();
  const keepalive = reader.u16();
  if (reader.error) return reader.error;
  const v5 = protocolVersion === 5;
  if (flags & 0x01) return malformed("reserved CONNECT flag is set [MQTT-3.1.2-3]");
  const willFlag = (flags & 0x04) !== 0;
  const willQos = (flags >> 3) & 3;
  const willRetain = (flags & 0x20) !== 0;
  if (!willFlag && (willQos !== 0 || willRetain)) {
    return malformed("will QoS or will retain set without the will flag [MQTT-3.1.2-11]");
  }
  if (willQos === 3) return malformed("will QoS must not be 3 [MQTT-3.1.2-14]");
  // MQTT 5.0 allows a password without a user name (section 3.1.2.9); 3.1.1 does not.
  if (!v5 && (flags & 0x40) && !(flags & 0x80)) {
    return malformed("password flag set without the username flag [MQTT-3.1.2-22]");
  }
  let properties: Properties | undefined;
  if (v5) {
    const block = readProperties(frame, reader.at, "connect");
    if ("kind" in block) return block;
    if (block.properties.authenticationData && block.properties.authenticationMethod === undefined) {
      return protocolError("Authentication Data without an Authentication Method (section 3.1.2.11.10)");
    }
    properties = block.properties;
    reader.at = block.end;
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
  if (properties) packet.properties = properties;
  if (willFlag) {
    let will: Pick<Will, "properties" | "forward"> | undefined;
    if (v5 && !reader.error) {
      const block = readProperties(frame, reader.at, "will");
      if ("kind" in block) return block;
      will = { properties: block.properties, forward: block.forward };
      reader.at = block.end;
    }
    const topic = reader.string();
    packet.will = { topic, payload: reader.binary(), qos: willQos as QoS, retain: willRetain, ...will };
  }
  if (flags & 0x80) packet.username = reader.string();
  if (flags & 0x40) packet.password = reader.binary();
  if (reader.error) return reader.error;
  if (reader.at !== frame.length) return malformed("CONNECT has bytes after its last field [MQTT-3.1.4-1]");
  return packet;
}

/**
 * CONNACK. In MQTT 3.1/3.1.1 `code` is a return code and `sessionPresent` only exists in 3.1.1
 * [MQTT-3.2.2-1]; in MQTT 5.0 `code` is a reason code and the property block follows (length 0 if none).
 */
export function encodeConnack(
  code: number,
  sessionPresent: boolean,
  version: ProtocolVersion = 4,
  properties?: Properties,
): Uint8Array {
  if (version !== 5) return Uint8Array.of(0x20, 0x02, sessionPresent ? 1 : 0, code);
  const body = propertyBody(properties);
  const remaining = 2 + propertyBlockLength(body);
  const out = new Uint8Array(1 + varIntLength(remaining) + remaining);
  out[0] = 0x20;
  let at = writeVarInt(out, 1, remaining);
  out[at++] = sessionPresent ? 1 : 0;
  out[at++] = code;
  writePropertyBlock(out, at, body);
  return out;
}
