/**
 * The broker: sessions by client id (creation, takeover, expiry), routing of published messages to
 * subscribers, and retained messages. It never touches a socket: connected clients reach it through
 * `Client`, and deliveries leave through each session's outlet.
 */

import type { Config } from "../config/schema.ts";
import { type Logger, quote } from "../observe/log.ts";
import type { Metrics } from "../observe/metrics.ts";
import type { QoS } from "../protocol/codec.ts";
import { ConnackCode } from "../protocol/codes.ts";
import type { RetainedStore, SessionStore } from "../store/types.ts";
import { Delivery } from "./delivery.ts";
import type { Message } from "./message.ts";
import { Router, type Subscription } from "./router.ts";
import { type Outlet, Session } from "./session.ts";

/** setTimeout cannot wait longer than this; longer expiries are waited for in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export type OpenResult = { session: Session; present: boolean } | { refused: ConnackCode; reason: string };

export class Broker {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly sessions: SessionStore;
  readonly retained: RetainedStore;
  readonly delivery: Delivery;
  readonly #router = new Router();
  #publishSeq = 0;
  readonly #targets: Session[] = [];
  #retainedFullLogged = false;

  constructor(
    config: Config,
    log: Logger,
    metrics: Metrics,
    sessions: SessionStore,
    retained: RetainedStore,
  ) {
    this.config = config;
    this.log = log;
    this.metrics = metrics;
    this.sessions = sessions;
    this.retained = retained;
    this.delivery = new Delivery({
      maxInflight: config.limits.max_inflight_messages,
      maxQueued: config.limits.max_queued_messages,
      maxWriteBuffer: config.limits.max_write_buffer,
    }, metrics);
  }

  /**
   * Attaches a newly connected client to its session. An existing connection with the same client id is
   * closed first [MQTT-3.1.4-2]; clean session 1 discards any previous session [MQTT-3.1.2-6].
   */
  openSession(clientId: string, clean: boolean, outlet: Outlet): OpenResult {
    this.sessions.get(clientId)?.outlet?.takeOver();
    let session = this.sessions.get(clientId);
    if (session && clean) {
      this.#discard(session);
      session = undefined;
    }
    const present = session !== undefined;
    if (!session) {
      if (this.sessions.size >= this.config.limits.max_sessions) {
        return {
          refused: ConnackCode.serverUnavailable,
          reason: `session limit of ${this.config.limits.max_sessions} reached`,
        };
      }
      session = new Session(clientId, !clean);
      this.sessions.set(session);
    }
    clearTimeout(session.expiry);
    session.expiry = undefined;
    session.outlet = outlet;
    return { session, present };
  }

  /** The session's client has gone: keep a persistent session for later, discard any other. */
  detach(session: Session): void {
    session.outlet = null;
    if (!session.persistent) return this.#discard(session);
    const seconds = this.config.mqtt.session_expiry;
    if (seconds > 0) this.#scheduleExpiry(session, performance.now() + seconds * 1000);
  }

  #scheduleExpiry(session: Session, at: number): void {
    session.expiry = setTimeout(() => {
      if (performance.now() < at) return this.#scheduleExpiry(session, at);
      this.metrics.sessionsExpired++;
      this.log.info(
        `session ${quote(session.clientId)} expired after ${this.config.mqtt.session_expiry}s offline`,
      );
      this.#discard(session);
    }, Math.min(at - performance.now(), MAX_TIMER_MS));
  }

  #discard(session: Session): void {
    clearTimeout(session.expiry);
    session.expiry = undefined;
    for (const filter of session.subscriptions.keys()) this.#router.remove(filter, session);
    session.clear();
    if (this.sessions.get(session.clientId) === session) this.sessions.delete(session.clientId);
  }

  /** Adds or replaces a subscription; the caller sends SUBACK, then `sendRetained`. */
  subscribe(session: Session, filter: string, qos: QoS): void {
    const subscription: Subscription = { qos };
    session.setSubscription(filter, subscription);
    this.#router.add(filter, session, subscription);
  }

  /** Sends the retained messages matching `filter`, with RETAIN set [MQTT-3.3.1-8]. */
  sendRetained(session: Session, filter: string, granted: QoS): void {
    this.retained.match(filter, (message) => {
      this.delivery.deliver(session, message, Math.min(message.qos, granted) as QoS, true);
    });
  }

  unsubscribe(session: Session, filter: string): void {
    if (session.deleteSubscription(filter)) this.#router.remove(filter, session);
  }

  /**
   * Publishes a message: updates the retained store when RETAIN is set, then delivers it once to every
   * session with a matching subscription, at the highest QoS among that session's matches (capped by the
   * message's own QoS) and with RETAIN cleared [MQTT-3.3.1-9, MQTT-3.3.5-1].
   */
  publish(message: Message): void {
    if (message.retain) this.#retain(message);
    // Collected into a reused array by a visitor made once: no allocation per publish. Delivery never
    // publishes, so this cannot be re-entered while the array is in use.
    this.#publishSeq++;
    this.#router.match(message.topic, this.#collect);
    const targets = this.#targets;
    for (let i = 0; i < targets.length; i++) {
      const session = targets[i];
      this.delivery.deliver(session, message, Math.min(message.qos, session.matchQos) as QoS, false);
    }
    targets.length = 0;
  }

  /** Router visitor: each matching session once, at the highest QoS among its matching subscriptions. */
  readonly #collect = (session: Session, subscription: Subscription): void => {
    if (session.matchSeq !== this.#publishSeq) {
      session.matchSeq = this.#publishSeq;
      session.matchQos = subscription.qos;
      this.#targets.push(session);
    } else if (subscription.qos > session.matchQos) {
      session.matchQos = subscription.qos;
    }
  };

  #retain(message: Message): void {
    // An empty payload clears the topic and is not stored [MQTT-3.3.1-10, MQTT-3.3.1-11].
    if (message.payload.length === 0) return this.retained.delete(message.topic);
    if (this.retained.set(message)) return;
    this.metrics.retainedRefused++;
    if (!this.#retainedFullLogged) {
      this.#retainedFullLogged = true;
      this.log.warn(
        `retained message store is full (limits.max_retained_messages = ${this.config.limits.max_retained_messages}); ` +
          `new retained topics are refused and counted`,
      );
    }
  }

  /** Ends every session timer; the broker is stopping and in-memory sessions go with it. */
  stop(): void {
    for (const session of this.sessions.values()) clearTimeout(session.expiry);
  }
}
