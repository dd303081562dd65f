/**
 * Outbound delivery to one session: QoS 0 straight to the connection while its write buffer has room;
 * QoS 1/2 through the inflight window, then the bounded queue. What does not fit is dropped and counted.
 */

import type { QoS } from "../protocol/codec.ts";
import { encodeAck, encodePublish, publishFirstByte, withPacketId } from "../protocol/hot.ts";
import type { Metrics } from "../observe/metrics.ts";
import type { Message } from "./message.ts";
import type { Outbound, Outlet, Session } from "./session.ts";

export interface DeliveryLimits {
  maxInflight: number;
  maxQueued: number;
  maxWriteBuffer: number;
}

export class Delivery {
  readonly #limits: DeliveryLimits;
  readonly #metrics: Metrics;

  constructor(limits: DeliveryLimits, metrics: Metrics) {
    this.#limits = limits;
    this.#metrics = metrics;
  }

  /** Sends or queues `message` for `session` at `qos`, with the RETAIN flag set to `retain`. */
  deliver(session: Session, message: Message, qos: QoS, retain: boolean): void {
    const outlet = session.outlet;
    if (qos === 0) {
      // QoS 0 is never queued: offline sessions miss it, as in Mosquitto's default.
      if (!outlet) return;
      if (outlet.buffered >= this.#limits.maxWriteBuffer) {
        this.#metrics.droppedWriteBufferFull++;
        return;
      }
      outlet.write(wireForm(message, 0, retain));
      this.#metrics.messagesSent++;
      return;
    }
    const outbound: Outbound = { message, qos, retain, packetId: 0, released: false };
    // Anything already queued goes first, to keep per-topic order [MQTT-4.6.0-6].
    if (outlet && session.queued === 0 && session.inflight.size < this.#limits.maxInflight) {
      this.#send(session, outlet, outbound);
    } else if (session.queued < this.#limits.maxQueued) {
      session.enqueue(outbound);
    } else {
      this.#metrics.droppedQueueFull++;
    }
  }

  /** PUBACK from the client. */
  acknowledged(session: Session, packetId: number): void {
    const outbound = session.inflight.get(packetId);
    if (outbound?.qos !== 1) return;
    session.removeInflight(packetId);
    this.#pump(session);
  }

  /** PUBREC from the client: the message is delivered; release it with PUBREL. */
  received(session: Session, packetId: number): void {
    const outbound = session.inflight.get(packetId);
    if (outbound?.qos === 2) outbound.released = true;
    // An unknown id still gets PUBREL, so the client can finish its own flow.
    session.outlet?.write(encodeAck("pubrel", packetId));
  }

  /** PUBCOMP from the client. */
  completed(session: Session, packetId: number): void {
    const outbound = session.inflight.get(packetId);
    if (!outbound?.released) return;
    session.removeInflight(packetId);
    this.#pump(session);
  }

  /**
   * A persistent session's client is back: re-send unacknowledged PUBLISH packets with DUP and their
   * original packet ids, and PUBREL for released ones [MQTT-4.4.0-1], then fill the window from the queue.
   */
  resume(session: Session): void {
    const outlet = session.outlet;
    if (!outlet) return;
    for (const outbound of session.inflight.values()) {
      outlet.write(
        outbound.released
          ? encodeAck("pubrel", outbound.packetId)
          : withPacketId(wireForm(outbound.message, outbound.qos, outbound.retain), outbound.packetId, true),
      );
    }
    this.#pump(session);
  }

  #pump(session: Session): void {
    const outlet = session.outlet;
    if (!outlet) return;
    while (session.inflight.size < this.#limits.maxInflight) {
      const next = session.dequeue();
      if (!next) return;
      this.#send(session, outlet, next);
    }
  }

  #send(session: Session, outlet: Outlet, outbound: Outbound): void {
    session.addInflight(outbound);
    outlet.write(withPacketId(wireForm(outbound.message, outbound.qos, outbound.retain), outbound.packetId));
    this.#metrics.messagesSent++;
  }
}

const textEncoder = new TextEncoder();

/**
 * The message's PUBLISH bytes for this QoS and RETAIN flag, made once and shared by every subscriber. When
 * the message arrived as a PUBLISH of the same QoS, its own bytes are used: as they are if the first byte
 * matches too (a QoS 0 fan-out then copies nothing), else copied with the first byte changed.
 */
function wireForm(message: Message, qos: QoS, retain: boolean): Uint8Array {
  const cache = message.wire ??= [];
  const index = qos * 2 + (retain ? 1 : 0);
  const cached = cache[index];
  if (cached) return cached;
  const first = publishFirstByte(qos, retain);
  const { frame } = message;
  let bytes: Uint8Array;
  if (frame && message.qos === qos) {
    if (frame[0] === first) {
      bytes = frame;
    } else {
      bytes = frame.slice();
      bytes[0] = first;
    }
  } else {
    const topicBytes = message.topicBytes ?? textEncoder.encode(message.topic);
    bytes = encodePublish(topicBytes, message.payload, qos, retain);
  }
  return cache[index] = bytes;
}
