import type { QoS } from "../protocol/codec.ts";

/**
 * An application message as the broker routes and stores it. Immutable once created and shared by every
 * subscriber it goes to, so a fan-out never copies the payload.
 */
export interface Message {
  readonly topic: string;
  readonly payload: Uint8Array;
  readonly qos: QoS;
  /** The RETAIN flag as published (the broker decides the flag on each delivery). */
  readonly retain: boolean;
  /** The topic's UTF-8 bytes, when the message arrived as a PUBLISH (saves encoding it again). */
  readonly topicBytes?: Uint8Array;
  /** The MQTT 3.1/3.1.1 PUBLISH it arrived in, reused as is when a delivery has the same wire form. */
  readonly frame?: Uint8Array;
  /** Encoded MQTT 3.1.1 PUBLISH forms, filled on first use; index `qos * 2 + (retain ? 1 : 0)`. */
  wire?: (Uint8Array | undefined)[];
}
