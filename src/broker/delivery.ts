/**
 * Outbound delivery to one session: QoS 0 straight to the connection while its write buffer has room;
 * QoS 1/2 through the inflight window, then the bounded queue. What does not fit, has expired, or exceeds the
 * client's Maximum Packet Size is dropped and counted.
 */

import type { QoS } from "../protocol/codec.ts";
import { DUP_FLAG, encodeAck, packetIdOffset } from "../protocol/hot.ts";
import type { Metrics } from "../observe/metrics.ts";
import { Reason } from "../protocol/reason_codes.ts";
import { isExpired, type Message, storedCopy } from "./message.ts";
import type { SharedGroup } from "./router.ts";
import type { Outbound, Outlet, Session } from "./session.ts";

export interface DeliveryLimits {
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

  /**
   * Sends or queues `message` for `session` at `qos`, with the RETAIN flag set to `retain`, carrying
   * `subscriptionIds`; `share` is the shared group it goes through, if any.
   */
  deliver(
    session: Session,
    message: Message,
    qos: QoS,
    retain: boolean,
    subscriptionIds?: readonly number[],
    share?: SharedGroup,
  ): void {
    if (message.expiresAt !== undefined && isExpired(message, performance.now())) {
      this.#metrics.droppedExpired++;
      return;
    }
    const outlet = session.outlet;
    if (qos === 0) {
      // QoS 0 is never queued: offline sessions miss it, as in Mosquitto's default.
      if (!outlet) return;
      if (outlet.buffered >= this.#limits.maxWriteBuffer) {
        this.#metrics.droppedWriteBufferFull++;
        return;
      }
      const bytes = outlet.publishBytes(message, 0, retain, subscriptionIds);
      if (!bytes) {
        this.#metrics.droppedTooLarge++;
        return;
      }
      outlet.write(bytes);
      this.#metrics.messagesSent++;
      return;
    }
    const outbound: Outbound = { message, qos, retain, subscriptionIds, share, packetId: 0, released: false };
    // Anything already queued goes first, to keep per-topic order [MQTT-4.6.0-6].
    if (outlet && session.queued === 0 && session.inflight.size < outlet.inflightWindow) {
      this.#send(session, outlet, outbound);
    } else if (session.queued < this.#limits.maxQueued) {
      // For an offline session it may wait long: it keeps its own bytes, not the network chunk they arrived in
      // (what an online session queues is compacted only if it goes offline: `Session.compactMessages`).
      session.enqueue(outlet ? outbound : { ...outbound, message: storedCopy(message) });
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

  /**
   * PUBREC from the client: the message is delivered; release it with PUBREL. A reason code of 0x80 or above
   * ends the flow instead (MQTT 5.0 section 4.3.3): no PUBREL, and the slot is free.
   */
  received(session: Session, packetId: number, reasonCode: number): void {
    const outbound = session.inflight.get(packetId);
    if (reasonCode >= 0x80) {
      if (outbound?.qos === 2) {
        session.removeInflight(packetId);
        this.#pump(session);
      }
      return;
    }
    if (outbound?.qos === 2) outbound.released = true;
    // An unknown id still gets PUBREL, so the client can finish its own flow.
    const outlet = session.outlet;
    if (!outlet) return;
    const code = outbound || outlet.version !== 5 ? 0 : Reason.packetIdentifierNotFound;
    outlet.write(encodeAck("pubrel", packetId, code));
  }

  /** PUBCOMP from the client. */
  completed(session: Session, packetId: number): void {
    const outbound = session.inflight.get(packetId);
    if (!outbound?.released) return;
    session.removeInflight(packetId);
    this.#pump(session);
  }

  /**
   * A session's client is back: re-send unacknowledged PUBLISH packets with DUP and their original packet ids,
   * and PUBREL for released ones [MQTT-4.4.0-1], then fill the window from the queue. The window is the new
   * connection's (MQTT 5.0 section 4.9): what does not fit waits, keeping its id, and goes first as it frees.
   */
  resume(session: Session): void {
    const outlet = session.outlet;
    if (!outlet) return;
    session.resendBacklog = 0;
    let sent = 0;
    for (const outbound of session.inflight.values()) {
      outbound.resend = sent >= outlet.inflightWindow;
      if (outbound.resend) session.resendBacklog++;
      else if (this.#resend(session, outlet, outbound)) sent++;
    }
    this.#pump(session);
  }

  /** Re-sends one inflight message on a new connection; false if it had to be dropped instead. */
  #resend(session: Session, outlet: Outlet, outbound: Outbound): boolean {
    if (outbound.released) {
      outlet.write(encodeAck("pubrel", outbound.packetId));
      return true;
    }
    const { message, qos, retain, subscriptionIds } = outbound;
    const bytes = outlet.publishBytes(message, qos, retain, subscriptionIds);
    if (bytes) {
      outlet.writeEdited(bytes, packetIdOffset(bytes), outbound.packetId, DUP_FLAG);
      return true;
    }
    // The new connection allows smaller packets than the old one did.
    this.#metrics.droppedTooLarge++;
    session.removeInflight(outbound.packetId);
    return false;
  }

  #pump(session: Session): void {
    const outlet = session.outlet;
    if (!outlet) return;
    while (session.resendBacklog > 0 && session.sentUnacknowledged < outlet.inflightWindow) {
      for (const outbound of session.inflight.values()) {
        if (!outbound.resend) continue;
        outbound.resend = false;
        session.resendBacklog--;
        this.#resend(session, outlet, outbound);
        break;
      }
    }
    while (session.inflight.size < outlet.inflightWindow) {
      const next = session.dequeue();
      if (!next) return;
      if (next.message.expiresAt !== undefined && isExpired(next.message, performance.now())) {
        this.#metrics.droppedExpired++;
        continue;
      }
      this.#send(session, outlet, next);
    }
  }

  #send(session: Session, outlet: Outlet, outbound: Outbound): void {
    const bytes = outlet.publishBytes(
      outbound.message,
      outbound.qos,
      outbound.retain,
      outbound.subscriptionIds,
    );
    if (!bytes) {
      // Dropped as if it had been sent and acknowledged [MQTT-3.1.2-25].
      this.#metrics.droppedTooLarge++;
      return;
    }
    session.addInflight(outbound);
    // The encoded PUBLISH is shared by every subscriber: each gets its own packet id on the way out.
    outlet.writeEdited(bytes, packetIdOffset(bytes), outbound.packetId, 0);
    this.#metrics.messagesSent++;
  }
}
