import type { ConnectPacket, QoS } from "../protocol/codec.ts";
import { copyBytes } from "../protocol/fields.ts";
import type { PublishPacket } from "../protocol/hot.ts";
import type { PendingWill, Session } from "./session.ts";

const textEncoder = new TextEncoder();

/**
 * An application message as the broker routes and stores it. Immutable once created (but for its cache of
 * encoded forms) and shared by every subscriber it goes to, so a fan-out never copies the payload.
 */
export interface Message {
  readonly topic: string;
  readonly payload: Uint8Array;
  readonly qos: QoS;
  /** The RETAIN flag as published (the broker decides the flag on each delivery). */
  readonly retain: boolean;
  /** The topic's UTF-8 bytes, when the message arrived as a PUBLISH (saves encoding it again). */
  readonly topicBytes?: Uint8Array;
  /**
   * The PUBLISH it arrived in, reused as is when a delivery has the same wire form: a 3.1.1 one, or a 5.0 one
   * whose properties are all forwarded as they are (no Topic Alias, no Message Expiry Interval).
   */
  readonly frame?: Uint8Array;
  /** `frame` is an MQTT 5.0 PUBLISH. */
  readonly frameIsV5?: boolean;
  /**
   * MQTT 5.0 properties forwarded to MQTT 5 subscribers untouched and in order (Payload Format Indicator,
   * Content Type, Response Topic, Correlation Data, User Properties [MQTT-3.3.2-4, 3.3.2-17, 3.3.2-20]): their
   * encoded bytes, as received.
   */
  readonly properties?: Uint8Array;
  /** When the Message Expiry Interval runs out, in `performance.now()` milliseconds. */
  readonly expiresAt?: number;
  /** The session that published it, for No Local subscriptions; absent for the broker's own messages. */
  readonly origin?: Session;
  /** The compact copy made when the message is first kept beyond the moment (see `storedCopy`). */
  stored?: Message;
  /**
   * Encoded PUBLISH forms without per-delivery parts, filled on first use: MQTT 3.1.1 at index
   * `qos * 2 + (retain ? 1 : 0)`, MQTT 5.0 at that plus 6.
   */
  wire?: (Uint8Array | undefined)[];
}

/** The Message Expiry Interval to send now, in whole seconds (rounded up), or undefined if none; 0 if expired. */
export function remainingExpiry(message: Message, now: number): number | undefined {
  if (message.expiresAt === undefined) return undefined;
  return Math.max(0, Math.ceil((message.expiresAt - now) / 1000));
}

/** True if the message has a Message Expiry Interval and it has run out [MQTT-3.3.2-5]. */
export function isExpired(message: Message, now: number): boolean {
  return message.expiresAt !== undefined && now >= message.expiresAt;
}

/**
 * The message as it should be kept (retained, or queued for a client that cannot take it now): its bytes in
 * one buffer of their own, so it does not hold the whole network chunk its frame is a view into. Made once
 * per message and shared.
 */
export function storedCopy(message: Message): Message {
  if (message.stored) return message.stored;
  const { frame } = message;
  let copy: Message;
  if (frame) {
    const own = copyBytes(frame);
    const view = (part: Uint8Array | undefined) =>
      part && part.buffer === frame.buffer
        ? own.subarray(part.byteOffset - frame.byteOffset, part.byteOffset - frame.byteOffset + part.length)
        : part && copyBytes(part);
    copy = {
      ...message,
      // No Local was decided when it was routed; a kept copy must not keep the publisher's session alive.
      origin: undefined,
      frame: own,
      payload: view(message.payload)!,
      topicBytes: view(message.topicBytes),
      properties: view(message.properties),
      wire: undefined,
    };
  } else {
    copy = {
      ...message,
      origin: undefined,
      payload: copyBytes(message.payload),
      topicBytes: message.topicBytes && copyBytes(message.topicBytes),
      properties: message.properties && copyBytes(message.properties),
      wire: undefined,
    };
  }
  copy.stored = copy;
  return message.stored = copy;
}

/** The message a PUBLISH carries, `topic` resolved from any alias. */
export function messageFromPublish(
  packet: PublishPacket,
  topic: string,
  topicBytes: Uint8Array,
  origin: Session,
  v5: boolean,
): Message {
  const { payload, qos, retain, frame, forward, messageExpiryInterval } = packet;
  return {
    topic,
    topicBytes,
    payload,
    qos,
    retain,
    // A Topic Alias or an expiry (which counts down) would be wrong in any delivery: such a frame is not kept.
    frame: v5 && (packet.topicAlias !== undefined || messageExpiryInterval !== undefined) ? undefined : frame,
    frameIsV5: v5,
    properties: forward,
    expiresAt: messageExpiryInterval === undefined
      ? undefined
      : performance.now() + messageExpiryInterval * 1000,
    origin,
  };
}

/** The will a CONNECT carries, waiting for its connection to end. */
export function willFromConnect(will: NonNullable<ConnectPacket["will"]>, v5: boolean): PendingWill {
  const message: Message = {
    topic: will.topic,
    topicBytes: textEncoder.encode(will.topic),
    // Its own copy: the will lives as long as the session, the CONNECT's network chunk need not.
    payload: copyBytes(will.payload),
    qos: will.qos,
    retain: will.retain,
    properties: v5 && will.forward ? copyBytes(will.forward) : undefined,
  };
  const properties = will.properties ?? {};
  return {
    message,
    delay: properties.willDelayInterval ?? 0,
    expiryInterval: properties.messageExpiryInterval,
  };
}
