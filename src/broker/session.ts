/**
 * Session state (MQTT 3.1.1 section 4.1): what survives a reconnect when clean session is 0. It holds no
 * socket; while a client is connected, `outlet` is how deliveries reach it.
 */

import type { QoS } from "../protocol/codec.ts";
import type { Message } from "./message.ts";
import type { Subscription } from "./router.ts";

/** A QoS 1/2 delivery, queued or in flight. */
export interface Outbound {
  readonly message: Message;
  readonly qos: QoS;
  readonly retain: boolean;
  packetId: number;
  /** QoS 2 only: PUBREC received and PUBREL sent; waiting for PUBCOMP. */
  released: boolean;
}

/** The connected client, as delivery sees it. */
export interface Outlet {
  write(bytes: Uint8Array): void;
  /** Bytes written but not yet on the wire. */
  readonly buffered: number;
  /** Another connection with the same client id took the session over: close this one [MQTT-3.1.4-2]. */
  takeOver(): void;
}

export class Session {
  readonly clientId: string;
  /** Clean session 0: kept after disconnect until it expires. */
  persistent: boolean;
  /** Filter -> subscription (the same objects the router holds). */
  readonly subscriptions = new Map<string, Subscription>();
  /** Outbound QoS 1/2 messages sent and not yet completed, by packet id, in send order. */
  readonly inflight = new Map<number, Outbound>();
  /** Outbound QoS 1/2 messages waiting for room in the inflight window. */
  readonly queue = new Fifo<Outbound>();
  /** Inbound QoS 2 packet ids delivered onward and waiting for PUBREL (method B, MQTT 3.1.1 4.3.3). */
  readonly inboundQos2 = new Set<number>();
  outlet: Outlet | null = null;
  /** Pending expiry of an offline persistent session. */
  expiry: ReturnType<typeof setTimeout> | undefined;
  /** Router scratch: the publish this session was last matched for and its highest matching QoS. */
  matchSeq = 0;
  matchQos: QoS = 0;
  #lastPacketId = 0;

  constructor(clientId: string, persistent: boolean) {
    this.clientId = clientId;
    this.persistent = persistent;
  }

  /** The next packet id not in flight (1..65535); callers keep the inflight window below 65535. */
  nextPacketId(): number {
    do {
      this.#lastPacketId = this.#lastPacketId === 0xffff ? 1 : this.#lastPacketId + 1;
    } while (this.inflight.has(this.#lastPacketId));
    return this.#lastPacketId;
  }
}

/** A first-in first-out queue with O(1) shift. */
export class Fifo<T> {
  #items: T[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }
  push(item: T): void {
    this.#items.push(item);
  }
  shift(): T | undefined {
    if (this.#head === this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined as T; // release the reference now
    if (this.#head === this.#items.length) {
      this.#items.length = 0;
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
  clear(): void {
    this.#items = [];
    this.#head = 0;
  }
}
