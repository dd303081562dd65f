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
  // The tables below are made on first use: most connections never need one, and ten thousand idle clients
  // each carrying four empty tables cost about 0.5 KB apiece.
  #subscriptions: Map<string, Subscription> | undefined;
  #inflight: Map<number, Outbound> | undefined;
  #queue: Fifo<Outbound> | undefined;
  #inboundQos2: Set<number> | undefined;
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

  /** Filter -> subscription (the same objects the router holds). */
  get subscriptions(): ReadonlyMap<string, Subscription> {
    return this.#subscriptions ?? NO_SUBSCRIPTIONS;
  }

  setSubscription(filter: string, subscription: Subscription): void {
    (this.#subscriptions ??= new Map()).set(filter, subscription);
  }

  /** True if there was one. */
  deleteSubscription(filter: string): boolean {
    return this.#subscriptions?.delete(filter) ?? false;
  }

  /** Outbound QoS 1/2 messages sent and not yet completed, by packet id, in send order. */
  get inflight(): ReadonlyMap<number, Outbound> {
    return this.#inflight ?? NO_OUTBOUND;
  }

  /** Gives `outbound` the next packet id not in flight (1..65535) and records it as in flight. */
  addInflight(outbound: Outbound): void {
    const inflight = this.#inflight ??= new Map();
    // Callers keep the window below 65535, so a free id exists.
    do {
      this.#lastPacketId = this.#lastPacketId === 0xffff ? 1 : this.#lastPacketId + 1;
    } while (inflight.has(this.#lastPacketId));
    outbound.packetId = this.#lastPacketId;
    inflight.set(outbound.packetId, outbound);
  }

  removeInflight(packetId: number): void {
    this.#inflight?.delete(packetId);
  }

  /** Outbound QoS 1/2 messages waiting for room in the inflight window. */
  get queued(): number {
    return this.#queue?.length ?? 0;
  }

  enqueue(outbound: Outbound): void {
    (this.#queue ??= new Fifo()).push(outbound);
  }

  dequeue(): Outbound | undefined {
    return this.#queue?.shift();
  }

  /** Inbound QoS 2 packet ids delivered onward and waiting for PUBREL (method B, MQTT 3.1.1 4.3.3). */
  hasInboundQos2(packetId: number): boolean {
    return this.#inboundQos2?.has(packetId) ?? false;
  }

  addInboundQos2(packetId: number): void {
    (this.#inboundQos2 ??= new Set()).add(packetId);
  }

  releaseInboundQos2(packetId: number): void {
    this.#inboundQos2?.delete(packetId);
  }

  /** Drops every subscription and every message in flight or queued, both ways (the session is discarded). */
  clear(): void {
    this.#subscriptions = undefined;
    this.#inflight = undefined;
    this.#queue = undefined;
    this.#inboundQos2 = undefined;
  }
}

const NO_OUTBOUND: ReadonlyMap<number, Outbound> = new Map();
const NO_SUBSCRIPTIONS: ReadonlyMap<string, Subscription> = new Map();

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
}
