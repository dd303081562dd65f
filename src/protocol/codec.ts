/**
 * The codec: one entry point for turning frames into typed packets, for MQTT 3.1, 3.1.1 and 5.0.
 *
 * Every packet is read by hand: PUBLISH, the QoS acknowledgements and PINGREQ in `hot.ts`, CONNECT in
 * `connect.ts`, SUBSCRIBE and UNSUBSCRIBE in `subscribe.ts`, DISCONNECT and AUTH in `control.ts`, MQTT 5.0
 * properties in `properties.ts`. Everything the broker sends is written by hand too, next to its reader.
 * The tests check both directions against npm:mqtt-packet, which src/ no longer uses.
 */

import { type ConnectPacket, decodeConnect } from "./connect.ts";
import { type AuthPacket, decodeAuth, decodeDisconnect, type DisconnectPacket } from "./control.ts";
import { type DecodeError, malformed, protocolError } from "./decode_error.ts";
import { fixedHeaderLength } from "./frame.ts";
import { decodeHot, type HotPacket } from "./hot.ts";
import {
  decodeSubscribe,
  decodeUnsubscribe,
  type SubscribePacket,
  type UnsubscribePacket,
} from "./subscribe.ts";

export type { DecodeError } from "./decode_error.ts";
export type { AckPacket, AckType, HotPacket, PublishPacket } from "./hot.ts";
export type { ConnectPacket, Will } from "./connect.ts";
export type { SubscribePacket, SubscriptionRequest, UnsubscribePacket } from "./subscribe.ts";
export type { AuthPacket, DisconnectPacket } from "./control.ts";
export type { Properties, PropertyContext } from "./properties.ts";

export type QoS = 0 | 1 | 2;

/** Every packet a client can send, as decoded. */
export type Packet =
  | HotPacket
  | ConnectPacket
  | SubscribePacket
  | UnsubscribePacket
  | DisconnectPacket
  | AuthPacket;

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
  const v5 = version === 5;
  if (!v5) {
    const fixed = FIXED_LENGTH_V3[type];
    if (fixed >= 0 && frame.length - fixedHeaderLength(frame) !== fixed) {
      return malformed(`${TYPE_NAMES[type]} must have a remaining length of ${fixed}`);
    }
  }
  const hot = decodeHot(frame, v5);
  if (hot) return hot;
  switch (type) {
    case 1:
      return decodeConnect(frame);
    case 8:
      return decodeSubscribe(frame, v5);
    case 10:
      return decodeUnsubscribe(frame, v5);
    case 14:
      return decodeDisconnect(frame, v5);
    case 15:
      return v5 ? decodeAuth(frame) : malformed("reserved packet type");
    case 0:
      return malformed("reserved packet type");
    default:
      // CONNACK, SUBACK, UNSUBACK, PINGRESP.
      return protocolError(`${TYPE_NAMES[type]} is never sent by a client`);
  }
}
