/**
 * The packets on the hot path, read and written by hand for MQTT 3.1, 3.1.1 and 5.0: PUBLISH, the four QoS
 * acknowledgements and PINGREQ. Nearly every packet a busy broker sees is one of these, and going through
 * mqtt-packet for them cost more than the rest of the broker (Node Buffer construction, a BufferList and debug
 * calls per packet; see docs/performance.md). The MQTT 3.1.1 PUBLISH path allocates nothing but the packet
 * object and two views; MQTT 5.0 adds its property block. tests/unit/codec.test.ts and v5codec.test.ts check
 * both directions against mqtt-packet.
 */

import type { QoS } from "./codec.ts";
import { hex } from "./reason_codes.ts";
import { type DecodeError, malformed } from "./decode_error.ts";
import { decodeString, varIntLength, writeVarInt } from "./fields.ts";
import { fixedHeaderLength } from "./frame.ts";
import {
  type Properties,
  propertyBlockLength,
  propertyBody,
  readProperties,
  writePropertyBlock,
} from "./properties.ts";

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
  /** MQTT 5.0 only, as received (0 included: the broker answers it with 0x94). */
  topicAlias?: number;
  /** MQTT 5.0 only. */
  messageExpiryInterval?: number;
  /** MQTT 5.0 only. */
  payloadFormatIndicator?: number;
  /**
   * MQTT 5.0 only: the raw bytes (identifier + value) of Payload Format Indicator, Content Type, Response
   * Topic, Correlation Data and User Properties in the order received, to forward untouched [MQTT-3.3.2-17,
   * MQTT-3.3.2-18, MQTT-3.3.2-20]. Undefined when there are none.
   */
  forward?: Uint8Array;
}

export type AckType = "puback" | "pubrec" | "pubrel" | "pubcomp";

export interface AckPacket {
  cmd: AckType;
  messageId: number;
  /** 0 in MQTT 3.1/3.1.1, and in MQTT 5.0 when the remaining length is 2. */
  reasonCode: number;
  /** MQTT 5.0 only, when the packet has a property block. */
  properties?: Properties;
}

export type HotPacket = PublishPacket | AckPacket | { cmd: "pingreq" };

const ACK_TYPES: Record<number, AckType> = { 4: "puback", 5: "pubrec", 6: "pubrel", 7: "pubcomp" };
/** First byte of each acknowledgement; PUBREL's reserved flags are 0010 [MQTT-3.6.1-1]. */
const ACK_FIRST_BYTE = { puback: 0x40, pubrec: 0x50, pubrel: 0x62, pubcomp: 0x70, unsuback: 0xb0 } as const;

/** MQTT 5.0 reason codes each acknowledgement may carry (sections 3.4.2.1, 3.5.2.1, 3.6.2.1, 3.7.2.1). */
const PUBACK_CODES = new Set([0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]);
const PUBREL_CODES = new Set([0x00, 0x92]);
const ACK_CODES: Record<AckType, Set<number>> = {
  puback: PUBACK_CODES,
  pubrec: PUBACK_CODES,
  pubrel: PUBREL_CODES,
  pubcomp: PUBREL_CODES,
};

/**
 * Decodes a hot packet from a whole frame; undefined for the packet types it does not handle. In MQTT
 * 3.1/3.1.1 the caller has already checked the remaining length of the fixed-size ones.
 */
export function decodeHot(frame: Uint8Array, v5 = false): HotPacket | DecodeError | undefined {
  const type = frame[0] >> 4;
  switch (type) {
    case 3:
      return decodePublish(frame, v5);
    case 4:
    case 5:
    case 6:
    case 7:
      return decodeAck(frame, ACK_TYPES[type], v5);
    case 12:
      if (frame[0] !== 0xc0) return malformed("reserved flag bits of PINGREQ are wrong");
      return frame[1] === 0 ? { cmd: "pingreq" } : malformed("PINGREQ must have a remaining length of 0");
    default:
      return undefined;
  }
}

function decodeAck(frame: Uint8Array, cmd: AckType, v5: boolean): AckPacket | DecodeError {
  if (frame[0] !== ACK_FIRST_BYTE[cmd]) {
    return malformed(`reserved flag bits of ${cmd.toUpperCase()} are wrong`);
  }
  const at = fixedHeaderLength(frame);
  if (frame.length < at + 2) return malformed(`${cmd.toUpperCase()} is too short for a packet identifier`);
  const messageId = (frame[at] << 8) | frame[at + 1];
  if (!messageId) return malformed("packet identifier must not be 0");
  // MQTT 3.1/3.1.1: the caller checked the remaining length is 2. MQTT 5.0: the reason code and then the
  // property block may each be left out [MQTT-3.4.2-1 and the sections of the other acks].
  if (!v5 || frame.length === at + 2) return { cmd, messageId, reasonCode: 0 };
  const reasonCode = frame[at + 2];
  if (!ACK_CODES[cmd].has(reasonCode)) {
    return malformed(`${hex(reasonCode)} is not a reason code of ${cmd.toUpperCase()}`);
  }
  if (frame.length === at + 3) return { cmd, messageId, reasonCode };
  const block = readProperties(frame, at + 3, "ack");
  if ("kind" in block) return block;
  if (block.end !== frame.length) return malformed(`${cmd.toUpperCase()} has bytes after its properties`);
  return { cmd, messageId, reasonCode, properties: block.properties };
}

function decodePublish(frame: Uint8Array, v5: boolean): PublishPacket | DecodeError {
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
  if (!v5) {
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
  const block = readProperties(frame, at, "publish");
  if ("kind" in block) return block;
  const properties = block.properties;
  // The empty topic is allowed here: with a Topic Alias the broker resolves it [MQTT-3.3.2-8].
  return {
    cmd: "publish",
    topic,
    topicBytes,
    payload: frame.subarray(block.end),
    qos: qos as QoS,
    retain: (flags & 0x01) !== 0,
    dup,
    messageId,
    frame,
    topicAlias: properties.topicAlias,
    messageExpiryInterval: properties.messageExpiryInterval,
    payloadFormatIndicator: properties.payloadFormatIndicator,
    forward: block.forward,
  };
}

/**
 * Encodes a PUBLISH from its topic bytes. For QoS 1 and 2 the packet id is written as 0: each delivery has
 * the connection write its own id at `packetIdOffset`, so a message encoded once serves every subscriber. With `properties` (a
 * body from encodeProperties, possibly empty) it is the MQTT 5.0 form, the property block after the packet
 * id; without, the MQTT 3.1/3.1.1 form.
 */
export function encodePublish(
  topicBytes: Uint8Array,
  payload: Uint8Array,
  qos: QoS,
  retain: boolean,
  properties?: Uint8Array,
): Uint8Array {
  const block = properties ? propertyBlockLength(properties) : 0;
  const remaining = 2 + topicBytes.length + (qos > 0 ? 2 : 0) + block + payload.length;
  const out = new Uint8Array(1 + varIntLength(remaining) + remaining);
  out[0] = publishFirstByte(qos, retain);
  let at = writeVarInt(out, 1, remaining);
  out[at++] = topicBytes.length >> 8;
  out[at++] = topicBytes.length & 0xff;
  out.set(topicBytes, at);
  at += topicBytes.length + (qos > 0 ? 2 : 0); // the packet id bytes are zero in a new array
  if (properties) at = writePropertyBlock(out, at, properties);
  out.set(payload, at);
  return out;
}

export function publishFirstByte(qos: QoS, retain: boolean): number {
  return 0x30 | (qos << 1) | (retain ? 0x01 : 0);
}

/**
 * Where the packet id of an encoded QoS 1/2 PUBLISH is: right after the topic, in both versions. Deliveries
 * share one encoded PUBLISH and have the connection write it with their own id there (`Connection.writeEdited`).
 */
export function packetIdOffset(encoded: Uint8Array): number {
  const header = fixedHeaderLength(encoded);
  return header + 2 + ((encoded[header] << 8) | encoded[header + 1]);
}

/** The DUP flag of PUBLISH's first byte [MQTT-3.3.1-1]. */
export const DUP_FLAG = 0x08;

/**
 * An acknowledgement. Reason code 0 without properties is the 4-byte form, valid in every version (MQTT
 * 5.0 lets both be left out [MQTT-3.4.2-1]); otherwise the MQTT 5.0 form: the reason code, then the property
 * block only if there are properties.
 */
export function encodeAck(
  type: keyof typeof ACK_FIRST_BYTE,
  packetId: number,
  reasonCode = 0,
  properties?: Properties,
): Uint8Array {
  if (reasonCode === 0 && properties === undefined) {
    return Uint8Array.of(ACK_FIRST_BYTE[type], 2, packetId >> 8, packetId & 0xff);
  }
  const body = propertyBody(properties);
  const remaining = body.length > 0 ? 3 + propertyBlockLength(body) : reasonCode !== 0 ? 3 : 2;
  const out = new Uint8Array(1 + varIntLength(remaining) + remaining);
  out[0] = ACK_FIRST_BYTE[type];
  let at = writeVarInt(out, 1, remaining);
  out[at++] = packetId >> 8;
  out[at++] = packetId & 0xff;
  if (remaining === 2) return out;
  out[at++] = reasonCode;
  if (body.length > 0) writePropertyBlock(out, at, body);
  return out;
}

export const PINGRESP: Uint8Array = Uint8Array.of(0xd0, 0x00);
