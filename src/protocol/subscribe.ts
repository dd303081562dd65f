/**
 * SUBSCRIBE and UNSUBSCRIBE read by hand for MQTT 3.1, 3.1.1 and 5.0, and SUBACK and UNSUBACK written. One
 * reader per packet serves every version: MQTT 5.0 only adds the property block after the packet id and
 * gives meaning to more bits of the subscription options.
 */

import type { ProtocolVersion, QoS } from "./codec.ts";
import { type DecodeError, malformed, protocolError } from "./decode_error.ts";
import { FieldReader, varIntLength, writeVarInt } from "./fields.ts";
import { fixedHeaderLength } from "./frame.ts";
import {
  type Properties,
  propertyBlockLength,
  propertyBody,
  readProperties,
  writePropertyBlock,
} from "./properties.ts";

export interface SubscriptionRequest {
  topic: string;
  qos: QoS;
  /** MQTT 5.0: do not send this session's own messages back to it. Always false in 3.1/3.1.1. */
  noLocal: boolean;
  /** MQTT 5.0: keep the RETAIN flag on forwarded messages. Always false in 3.1/3.1.1. */
  retainAsPublished: boolean;
  /** MQTT 5.0: 0 send retained messages, 1 only for a new subscription, 2 never. Always 0 in 3.1/3.1.1. */
  retainHandling: 0 | 1 | 2;
}

export interface SubscribePacket {
  cmd: "subscribe";
  messageId: number;
  subscriptions: SubscriptionRequest[];
  /** MQTT 5.0 only. */
  properties?: Properties;
}

export interface UnsubscribePacket {
  cmd: "unsubscribe";
  messageId: number;
  unsubscriptions: string[];
  /** MQTT 5.0 only. */
  properties?: Properties;
}

/** Packet id and (in MQTT 5.0) properties: the variable header both packets share. */
function readHeader(
  frame: Uint8Array,
  name: string,
  v5: boolean,
): { reader: FieldReader; messageId: number; properties?: Properties } | DecodeError {
  const reader = new FieldReader(frame, fixedHeaderLength(frame), name);
  const messageId = reader.u16();
  if (reader.error) return reader.error;
  if (!messageId) return malformed("packet identifier must not be 0 [MQTT-2.2.1-3]");
  if (!v5) return { reader, messageId };
  const block = readProperties(frame, reader.at, name === "SUBSCRIBE" ? "subscribe" : "unsubscribe");
  if ("kind" in block) return block;
  reader.at = block.end;
  return { reader, messageId, properties: block.properties };
}

/** A whole SUBSCRIBE frame. */
export function decodeSubscribe(frame: Uint8Array, v5: boolean): SubscribePacket | DecodeError {
  if (frame[0] !== 0x82) return malformed("reserved flag bits of SUBSCRIBE are wrong [MQTT-3.8.1-1]");
  const header = readHeader(frame, "SUBSCRIBE", v5);
  if ("kind" in header) return header;
  const { reader, messageId } = header;
  const subscriptions: SubscriptionRequest[] = [];
  while (reader.at < frame.length) {
    const topic = reader.string();
    const options = reader.byte();
    if (reader.error) return reader.error;
    // MQTT 3.1.1 reserves bits 2-7 [MQTT-3.8.3-4]; MQTT 5.0 bits 6-7 [MQTT-3.8.3-5].
    if (options & (v5 ? 0xc0 : 0xfc)) return malformed("reserved bits of the subscription options are set");
    const qos = options & 3;
    if (qos === 3) return malformed("a subscription must not request QoS 3");
    const retainHandling = (options >> 4) & 3;
    if (retainHandling === 3) return protocolError("Retain Handling must not be 3 (section 3.8.3.1)");
    subscriptions.push({
      topic,
      qos: qos as QoS,
      noLocal: (options & 0x04) !== 0,
      retainAsPublished: (options & 0x08) !== 0,
      retainHandling: retainHandling as 0 | 1 | 2,
    });
  }
  if (subscriptions.length === 0) {
    return protocolError("SUBSCRIBE must contain at least one topic filter [MQTT-3.8.3-2]");
  }
  const packet: SubscribePacket = { cmd: "subscribe", messageId, subscriptions };
  if (header.properties) packet.properties = header.properties;
  return packet;
}

/** A whole UNSUBSCRIBE frame. */
export function decodeUnsubscribe(frame: Uint8Array, v5: boolean): UnsubscribePacket | DecodeError {
  if (frame[0] !== 0xa2) return malformed("reserved flag bits of UNSUBSCRIBE are wrong [MQTT-3.10.1-1]");
  const header = readHeader(frame, "UNSUBSCRIBE", v5);
  if ("kind" in header) return header;
  const { reader, messageId } = header;
  const unsubscriptions: string[] = [];
  while (reader.at < frame.length) {
    const filter = reader.string();
    if (reader.error) return reader.error;
    unsubscriptions.push(filter);
  }
  if (unsubscriptions.length === 0) {
    return protocolError("UNSUBSCRIBE must contain at least one topic filter [MQTT-3.10.3-2]");
  }
  const packet: UnsubscribePacket = { cmd: "unsubscribe", messageId, unsubscriptions };
  if (header.properties) packet.properties = header.properties;
  return packet;
}

/**
 * SUBACK: one return/reason code per filter, in order [MQTT-3.9.3-1]. MQTT 5.0 puts the property block
 * (length 0 if none) between the packet id and the codes.
 */
export function encodeSuback(
  packetId: number,
  codes: readonly number[],
  version: ProtocolVersion = 4,
  properties?: Properties,
): Uint8Array {
  return encodeAckList(0x90, packetId, codes, version === 5 ? propertyBody(properties) : undefined);
}

/** MQTT 5.0 UNSUBACK: one reason code per filter, in order [MQTT-3.11.3-1]. */
export function encodeUnsuback(
  packetId: number,
  codes: readonly number[],
  properties?: Properties,
): Uint8Array {
  return encodeAckList(0xb0, packetId, codes, propertyBody(properties));
}

function encodeAckList(
  firstByte: number,
  packetId: number,
  codes: readonly number[],
  properties: Uint8Array | undefined,
): Uint8Array {
  const remaining = 2 + (properties ? propertyBlockLength(properties) : 0) + codes.length;
  const out = new Uint8Array(1 + varIntLength(remaining) + remaining);
  out[0] = firstByte;
  let at = writeVarInt(out, 1, remaining);
  out[at++] = packetId >> 8;
  out[at++] = packetId & 0xff;
  if (properties) at = writePropertyBlock(out, at, properties);
  out.set(codes, at);
  return out;
}
