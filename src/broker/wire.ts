/**
 * A message's PUBLISH bytes. The parts every subscriber shares are encoded once per message and cached on it;
 * only what differs per delivery (MQTT 5.0 Subscription Identifiers, a topic alias, the remaining expiry) makes
 * a fresh packet.
 */

import type { QoS } from "../protocol/codec.ts";
import { copyBytes } from "../protocol/fields.ts";
import { encodePublish, publishFirstByte } from "../protocol/hot.ts";
import { encodeProperties } from "../protocol/properties.ts";
import { type Message, remainingExpiry } from "./message.ts";

const textEncoder = new TextEncoder();
const NO_BYTES = new Uint8Array(0);
/** Offset of the MQTT 5.0 forms in `Message.wire`, after the six MQTT 3.1.1 ones. */
const V5_FORMS = 6;

/** How one connection wants its PUBLISH packets. */
export interface PublishEncoder {
  /** The bytes with packet id 0, or null when they exceed the client's Maximum Packet Size. */
  encode(
    message: Message,
    qos: QoS,
    retain: boolean,
    subscriptionIds: readonly number[] | undefined,
  ): Uint8Array | null;
}

/** MQTT 3.1/3.1.1: the shared form, always. */
export const V3_PUBLISH: PublishEncoder = {
  encode: (message, qos, retain) => v3Publish(message, qos, retain),
};

/**
 * MQTT 5.0: the shared form unless the delivery adds properties of its own, with topic aliases assigned by
 * the broker (each new topic takes the next alias until the client's Topic Alias Maximum is used up) and
 * packets above the client's Maximum Packet Size refused [MQTT-3.1.2-25].
 */
export class V5PublishEncoder implements PublishEncoder {
  readonly #maxPacketSize: number;
  readonly #aliasMaximum: number;
  #aliases: Map<string, number> | undefined;

  constructor(maxPacketSize: number, aliasMaximum: number) {
    this.#maxPacketSize = maxPacketSize;
    this.#aliasMaximum = aliasMaximum;
  }

  encode(
    message: Message,
    qos: QoS,
    retain: boolean,
    subscriptionIds: readonly number[] | undefined,
  ): Uint8Array | null {
    const expiry = remainingExpiry(message, message.expiresAt === undefined ? 0 : performance.now());
    let alias: number | undefined;
    let aliasOnly = false;
    if (this.#aliasMaximum > 0) {
      const aliases = this.#aliases ??= new Map();
      alias = aliases.get(message.topic);
      if (alias !== undefined) aliasOnly = true;
      else if (aliases.size < this.#aliasMaximum) alias = aliases.size + 1;
    }
    const extra = expiry === undefined && subscriptionIds === undefined && alias === undefined
      ? undefined
      : { expiry, subscriptionIds, alias, aliasOnly };
    const bytes = v5Publish(message, qos, retain, extra);
    if (bytes.length > this.#maxPacketSize) return null;
    // An alias is taken only by a packet that is sent, so the client always learns it first.
    if (alias !== undefined && !aliasOnly) this.#aliases!.set(message.topic, alias);
    return bytes;
  }
}

/** What one MQTT 5.0 delivery adds to the shared form. */
interface DeliveryProperties {
  /** Remaining Message Expiry Interval in seconds. */
  readonly expiry: number | undefined;
  readonly subscriptionIds: readonly number[] | undefined;
  /** Topic alias to send, and whether the topic goes with it (first use on this connection) or not. */
  readonly alias: number | undefined;
  readonly aliasOnly: boolean;
}

/** The MQTT 3.1/3.1.1 PUBLISH for this QoS and RETAIN flag, shared by every subscriber. */
function v3Publish(message: Message, qos: QoS, retain: boolean): Uint8Array {
  return sharedForm(message, qos, retain, false);
}

/** The MQTT 5.0 PUBLISH; shared and cached when the delivery adds nothing of its own. */
function v5Publish(
  message: Message,
  qos: QoS,
  retain: boolean,
  extra: DeliveryProperties | undefined,
): Uint8Array {
  if (!extra) return sharedForm(message, qos, retain, true);
  const properties = encodeProperties({
    messageExpiryInterval: extra.expiry,
    topicAlias: extra.alias,
    subscriptionIdentifiers: extra.subscriptionIds as number[] | undefined,
  }, message.properties);
  const topic = extra.aliasOnly ? NO_BYTES : topicBytesOf(message);
  return encodePublish(topic, message.payload, qos, retain, properties);
}

/**
 * A form every subscriber of one version shares, made once per (version, QoS, RETAIN). When the message
 * arrived as a PUBLISH of that version and QoS, its own bytes are used: as they are if the first byte matches
 * too (a QoS 0 fan-out then copies nothing), else copied with the first byte changed.
 */
function sharedForm(message: Message, qos: QoS, retain: boolean, v5: boolean): Uint8Array {
  const cache = message.wire ??= [];
  const index = (v5 ? V5_FORMS : 0) + qos * 2 + (retain ? 1 : 0);
  const cached = cache[index];
  if (cached) return cached;
  const first = publishFirstByte(qos, retain);
  const { frame } = message;
  let bytes: Uint8Array;
  if (frame && message.frameIsV5 === v5 && message.qos === qos) {
    if (frame[0] === first) {
      bytes = frame;
    } else {
      bytes = copyBytes(frame);
      bytes[0] = first;
    }
  } else {
    const properties = v5 ? message.properties ?? NO_BYTES : undefined;
    bytes = encodePublish(topicBytesOf(message), message.payload, qos, retain, properties);
  }
  return cache[index] = bytes;
}

function topicBytesOf(message: Message): Uint8Array {
  return message.topicBytes ?? textEncoder.encode(message.topic);
}
