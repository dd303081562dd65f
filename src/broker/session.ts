/**
 * Session state (MQTT 3.1.1 and 5.0 section 4.1): what survives a reconnect while the session has not expired.
 * It holds no socket; while a client is connected, `outlet` is how deliveries reach it.
 */

import type { ProtocolVersion, QoS } from "../protocol/codec.ts";
import type { Message } from "./message.ts";
import type { SharedGroup, Subscription } from "./router.ts";

/** The Session Expiry Interval that means the session does not expire (MQTT 5.0 section 3.1.2.11.2). */
export const NEVER_EXPIRES = 0xffffffff;

/** A QoS 1/2 delivery, queued or in flight. */
export interface Outbound {
  readonly message: Message;
  readonly qos: QoS;
  readonly retain: boolean;
  /** Subscription Identifiers of the subscriptions it matched (MQTT 5.0). */
  readonly subscriptionIds: readonly number[] | undefined;
  /** The shared subscription group it was sent through, so another member can take it over. */
  readonly share: SharedGroup | undefined;
  packetId: number;
  /** QoS 2 only: PUBREC received and PUBREL sent; waiting for PUBCOMP. */
  released: boolean;
  /** In flight from an earlier connection and not yet re-sent on this one (the window was full). */
  resend?: boolean;
}

/** The connected client, as delivery sees it. */
export interface Outlet {
  readonly version: ProtocolVersion;
  write(bytes: Uint8Array): void;
  /** `write`, with two bytes at `at` set to `value` and `flags` ORed into the first (see `Connection`). */
  writeEdited(bytes: Uint8Array, at: number, value: number, flags: number): void;
  /** Bytes written but not yet on the wire. */
  readonly buffered: number;
  /** QoS 1/2 messages the client accepts unacknowledged: the broker's limit and its Receive Maximum. */
  readonly inflightWindow: number;
  /**
   * The PUBLISH bytes for this connection (its protocol version and topic aliases), packet id 0; null when
   * they exceed the client's Maximum Packet Size, so the message must be dropped [MQTT-3.1.2-25].
   */
  publishBytes(
    message: Message,
    qos: QoS,
    retain: boolean,
    subscriptionIds: readonly number[] | undefined,
  ): Uint8Array | null;
  /** Another connection with the same client id took the session over: close this one [MQTT-3.1.4-2]. */
  takeOver(): void;
}

/** A pending timer that may be re-armed in steps; `timer` is always the current step's. */
export interface Deadline {
  timer: ReturnType<typeof setTimeout> | undefined;
}

/** A will waiting for its Will Delay Interval (MQTT 5.0 section 3.1.3.2.2). */
export interface PendingWill {
  /** Without `expiresAt`: the Message Expiry Interval starts when the will is published. */
  readonly message: Message;
  /** Seconds to wait after the connection ends; 0 publishes at once. */
  readonly delay: number;
  /** The will's Message Expiry Interval in seconds, if it has one. */
  readonly expiryInterval: number | undefined;
  timer?: Deadline;
}

export class Session {
  readonly clientId: string;
  /**
   * Seconds the session outlives its connection: 0 ends it with the connection (3.1.1 clean session 1),
   * NEVER_EXPIRES keeps it until the broker stops.
   */
  expiryInterval: number;
  // The tables below are made on first use: most connections never need one, and ten thousand idle clients
  // each carrying four empty tables cost about 0.5 KB apiece.
  #subscriptions: Map<string, Subscription> | undefined;
  #inflight: Map<number, Outbound> | undefined;
  #queue: Fifo<Outbound> | undefined;
  #inboundQos2: Set<number> | undefined;
  outlet: Outlet | null = null;
  /** Pending expiry of an offline persistent session. */
  expiry: Deadline | undefined;
  /** The will of the last connection, published when its delay or the session ends, whichever is first. */
  will: PendingWill | undefined;
  /**
   * Router scratch for one publish: its sequence number, the highest QoS among this session's matching
   * subscriptions, whether any of them has Retain As Published, and their Subscription Identifiers.
   */
  matchSeq = 0;
  matchQos: QoS = 0;
  matchRetain = false;
  matchIds: number[] | undefined;
  #lastPacketId = 0;
  /** Inflight messages marked `resend`: they hold packet ids but do not count against the window. */
  resendBacklog = 0;

  constructor(clientId: string, expiryInterval: number) {
    this.clientId = clientId;
    this.expiryInterval = expiryInterval;
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
    const outbound = this.#inflight?.get(packetId);
    if (outbound?.resend) this.resendBacklog--;
    this.#inflight?.delete(packetId);
  }

  /** Inflight messages sent on this connection and not yet acknowledged: what the window bounds. */
  get sentUnacknowledged(): number {
    return this.inflight.size - this.resendBacklog;
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

  /**
   * Replaces each queued and inflight message with `compact(message)`, in place (the session has gone
   * offline, and they wait for it).
   */
  compactMessages(compact: (message: Message) => Message): void {
    const replace = (outbound: Outbound) => ({ ...outbound, message: compact(outbound.message) });
    this.#queue?.replaceAll(replace);
    const inflight = this.#inflight;
    if (inflight) { for (const [packetId, outbound] of inflight) inflight.set(packetId, replace(outbound)); }
  }

  /**
   * Removes and returns the messages this session holds through shared subscriptions that another member may
   * take over: queued ones, and QoS 1 ones in flight. A QoS 2 message in flight stays: its delivery must be
   * completed with this session or not at all [MQTT-4.8.2-4, MQTT-4.8.2-5].
   */
  takeShared(): Outbound[] {
    const taken: Outbound[] = [];
    for (const [packetId, outbound] of this.inflight) {
      if (outbound.share && outbound.qos === 1) {
        taken.push(outbound);
        this.removeInflight(packetId);
        outbound.resend = false;
      }
    }
    const queue = this.#queue;
    if (queue) {
      const kept = new Fifo<Outbound>();
      for (let next = queue.shift(); next; next = queue.shift()) (next.share ? taken : kept).push(next);
      this.#queue = kept;
    }
    return taken;
  }

  /** Inbound QoS 2 packet ids delivered onward and waiting for PUBREL (method B, MQTT 3.1.1 4.3.3). */
  hasInboundQos2(packetId: number): boolean {
    return this.#inboundQos2?.has(packetId) ?? false;
  }

  addInboundQos2(packetId: number): void {
    (this.#inboundQos2 ??= new Set()).add(packetId);
  }

  /** False if the id was not pending. */
  releaseInboundQos2(packetId: number): boolean {
    return this.#inboundQos2?.delete(packetId) ?? false;
  }

  /** Inbound QoS 2 messages waiting for PUBREL: what the broker's Receive Maximum bounds. */
  get inboundQos2Count(): number {
    return this.#inboundQos2?.size ?? 0;
  }

  /** Drops every subscription and every message in flight or queued, both ways (the session is discarded). */
  clear(): void {
    this.#subscriptions = undefined;
    this.#inflight = undefined;
    this.#queue = undefined;
    this.#inboundQos2 = undefined;
    this.resendBacklog = 0;
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
  replaceAll(replace: (item: T) => T): void {
    for (let i = this.#head; i < this.#items.length; i++) this.#items[i] = replace(this.#items[i]);
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
