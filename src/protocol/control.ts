/**
 * DISCONNECT (every version) and AUTH (MQTT 5.0 only), read and written by hand. In MQTT 3.1/3.1.1 a
 * DISCONNECT is two bytes; MQTT 5.0 adds an optional reason code and property block.
 */

import { hex } from "./reason_codes.ts";
import { type DecodeError, malformed } from "./decode_error.ts";
import { varIntLength, writeVarInt } from "./fields.ts";
import { fixedHeaderLength } from "./frame.ts";
import {
  NO_PROPERTIES,
  type Properties,
  propertyBlockLength,
  propertyBody,
  readProperties,
  writePropertyBlock,
} from "./properties.ts";

export interface DisconnectPacket {
  cmd: "disconnect";
  /** 0 in MQTT 3.1/3.1.1 and when an MQTT 5.0 DISCONNECT leaves it out. */
  reasonCode: number;
  /** MQTT 5.0 only, when the packet has a property block. */
  properties?: Properties;
}

export interface AuthPacket {
  cmd: "auth";
  /** 0x00 success, 0x18 continue authentication, 0x19 re-authenticate. */
  reasonCode: 0x00 | 0x18 | 0x19;
  properties: Properties;
}

/** DISCONNECT reason codes a client may send: those whose "Sent by" includes Client in table 3-10. */
const CLIENT_DISCONNECT_CODES = new Set([
  0x00,
  0x04,
  0x80,
  0x81,
  0x82,
  0x83,
  0x90,
  0x93,
  0x94,
  0x95,
  0x96,
  0x97,
  0x98,
  0x99,
]);

/** AUTH reason codes (section 3.15.2.1). */
const AUTH_CODES = new Set([0x00, 0x18, 0x19]);

/** A whole DISCONNECT frame; in MQTT 3.1/3.1.1 the caller has checked its remaining length is 0. */
export function decodeDisconnect(frame: Uint8Array, v5: boolean): DisconnectPacket | DecodeError {
  if (frame[0] !== 0xe0) return malformed("reserved flag bits of DISCONNECT are wrong [MQTT-3.14.1-1]");
  const at = fixedHeaderLength(frame);
  if (!v5 || frame.length === at) return { cmd: "disconnect", reasonCode: 0 };
  const reasonCode = frame[at];
  if (!CLIENT_DISCONNECT_CODES.has(reasonCode)) {
    return malformed(`${hex(reasonCode)} is not a DISCONNECT reason code a client may send`);
  }
  // A remaining length of 1 means no property block (section 3.14.2.2.1).
  if (frame.length === at + 1) return { cmd: "disconnect", reasonCode };
  const block = readProperties(frame, at + 1, "disconnect");
  if ("kind" in block) return block;
  if (block.end !== frame.length) return malformed("DISCONNECT has bytes after its properties");
  return { cmd: "disconnect", reasonCode, properties: block.properties };
}

/**
 * A whole MQTT 5.0 AUTH frame. Only a remaining length of 0 may leave out the reason code and the property
 * block (section 3.15.2.1); unlike DISCONNECT, the reason code alone is not a valid AUTH.
 */
export function decodeAuth(frame: Uint8Array): AuthPacket | DecodeError {
  if (frame[0] !== 0xf0) return malformed("reserved flag bits of AUTH are wrong [MQTT-3.15.1-1]");
  const at = fixedHeaderLength(frame);
  if (frame.length === at) return { cmd: "auth", reasonCode: 0, properties: NO_PROPERTIES };
  const reasonCode = frame[at];
  if (!AUTH_CODES.has(reasonCode)) {
    return malformed(`${hex(reasonCode)} is not an AUTH reason code`);
  }
  if (frame.length === at + 1) return malformed("AUTH has a reason code but no property length");
  const block = readProperties(frame, at + 1, "auth");
  if ("kind" in block) return block;
  if (block.end !== frame.length) return malformed("AUTH has bytes after its properties");
  return { cmd: "auth", reasonCode: reasonCode as AuthPacket["reasonCode"], properties: block.properties };
}

/** MQTT 5.0 DISCONNECT; the shortest form the reason code and properties allow (section 3.14.2). */
export function encodeDisconnect(reasonCode: number, properties?: Properties): Uint8Array {
  const body = propertyBody(properties);
  if (body.length === 0) {
    return reasonCode === 0 ? Uint8Array.of(0xe0, 0) : Uint8Array.of(0xe0, 1, reasonCode);
  }
  return withReasonAndProperties(0xe0, reasonCode, body);
}

/** MQTT 5.0 AUTH: the 2-byte form for success without properties, else reason code and property block. */
export function encodeAuth(reasonCode: number, properties?: Properties): Uint8Array {
  const body = propertyBody(properties);
  if (body.length === 0 && reasonCode === 0) return Uint8Array.of(0xf0, 0);
  return withReasonAndProperties(0xf0, reasonCode, body);
}

function withReasonAndProperties(firstByte: number, reasonCode: number, body: Uint8Array): Uint8Array {
  const remaining = 1 + propertyBlockLength(body);
  const out = new Uint8Array(1 + varIntLength(remaining) + remaining);
  out[0] = firstByte;
  let at = writeVarInt(out, 1, remaining);
  out[at++] = reasonCode;
  writePropertyBlock(out, at, body);
  return out;
}
