/**
 * The broker: sessions by client id (creation, takeover, expiry, delayed wills), routing of published
 * messages to subscribers and shared groups, and retained messages. It never touches a socket: connected
 * clients reach it through `Client`, and deliveries leave through each session's outlet.
 */

import type { PasswordCheck } from "../auth/authenticate.ts";
import type { EnhancedAuthenticator } from "../auth/enhanced.ts";
import type { Config } from "../config/schema.ts";
import { type Logger, quote } from "../observe/log.ts";
import type { Metrics } from "../observe/metrics.ts";
import type { QoS } from "../protocol/codec.ts";
import type { Properties } from "../protocol/properties.ts";
import { announcedLimits } from "./limits.ts";
import { Delivery } from "./delivery.ts";
import { isExpired, type Message, storedCopy } from "./message.ts";
import { Router, type SharedGroup, type Subscription } from "./router.ts";
import { type Deadline, NEVER_EXPIRES, type Outlet, type PendingWill, Session } from "./session.ts";
import type { RetainedStore, SessionStore } from "../store/types.ts";

/** setTimeout cannot wait longer than this; longer waits are done in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Runs `then` after `seconds` of monotonic time, in steps when that is longer than one timer can wait; the
 * returned deadline always holds the current step's timer, so `cancel` stops it at any step.
 */
function after(seconds: number, then: () => void): Deadline {
  const at = performance.now() + seconds * 1000;
  const deadline: Deadline = { timer: undefined };
  const wait = () => {
    deadline.timer = setTimeout(
      () => performance.now() < at ? wait() : then(),
      Math.min(at - performance.now(), MAX_TIMER_MS),
    );
  };
  wait();
  return deadline;
}

function cancel(deadline: Deadline | undefined): void {
  clearTimeout(deadline?.timer);
}

export type OpenResult = { session: Session; present: boolean } | {
  refused: "session_limit";
  reason: string;
};

/** What `publish` did: how many sessions and shared groups it went to, or that it was refused ($SYS). */
export type PublishResult = number | "refused";

export class Broker {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly sessions: SessionStore;
  readonly retained: RetainedStore;
  readonly delivery: Delivery;
  readonly authenticators: readonly EnhancedAuthenticator[];
  /** The password file's users, when `auth.password_file` is set; replaced whole on a reload. */
  passwords: PasswordCheck | undefined;
  /** What every MQTT 5.0 CONNACK announces of the broker's limits (the config never changes). */
  readonly announcedLimits: Readonly<Properties>;
  readonly #router = new Router();
  #publishSeq = 0;
  /** Scratch for one publish: the message, its matching sessions and shared groups. */
  #current: Message | undefined;
  readonly #targets: Session[] = [];
  readonly #groups: SharedGroup[] = [];
  #retainedFullLogged = false;

  constructor(
    config: Config,
    log: Logger,
    metrics: Metrics,
    sessions: SessionStore,
    retained: RetainedStore,
    authenticators: readonly EnhancedAuthenticator[] = [],
    passwords?: PasswordCheck,
  ) {
    this.passwords = passwords;
    this.config = config;
    this.log = log;
    this.metrics = metrics;
    this.sessions = sessions;
    this.retained = retained;
    this.authenticators = authenticators;
    this.announcedLimits = announcedLimits(config);
    this.delivery = new Delivery({
      maxQueued: config.limits.max_queued_messages,
      maxWriteBuffer: config.limits.max_write_buffer,
    }, metrics);
  }

  /**
   * Attaches a newly connected client to its session. An existing connection with the same client id is
   * closed first [MQTT-3.1.4-2]; Clean Start discards any previous session [MQTT-3.1.2-6, MQTT-3.1.2-4 in
   * 5.0]; a resumed session's pending will is cancelled (MQTT 5.0 section 3.1.3.2.2).
   */
  openSession(clientId: string, cleanStart: boolean, expiryInterval: number, outlet: Outlet): OpenResult {
    this.sessions.get(clientId)?.outlet?.takeOver();
    let session = this.sessions.get(clientId);
    if (session && cleanStart) {
      this.#discard(session);
      session = undefined;
    }
    const present = session !== undefined;
    if (!session) {
      if (this.sessions.size >= this.config.limits.max_sessions) {
        return {
          refused: "session_limit",
          reason: `session limit of ${this.config.limits.max_sessions} reached`,
        };
      }
      session = new Session(clientId, expiryInterval);
      this.sessions.set(session);
    }
    cancel(session.expiry);
    session.expiry = undefined;
    this.#cancelWill(session);
    session.expiryInterval = expiryInterval;
    session.outlet = outlet;
    return { session, present };
  }

  /**
   * The session's client has gone, leaving `will` (or none) behind: hand its shared-subscription messages to
   * other members, then keep the session until it expires or end it now.
   */
  detach(session: Session, will: PendingWill | undefined): void {
    session.outlet = null;
    this.#redistribute(session);
    session.will = will;
    const seconds = session.expiryInterval;
    if (seconds === 0) return this.#discard(session);
    // What it had queued or in flight now waits for a reconnect: keep its bytes, not network chunks.
    session.compactMessages(storedCopy);
    if (will) {
      if (will.delay === 0) {
        this.#publishWill(session);
      } else if (will.delay < seconds) {
        will.timer = after(will.delay, () => this.#publishWill(session));
      }
      // Otherwise the session ends first, and ending it publishes the will.
    }
    if (seconds !== NEVER_EXPIRES) {
      session.expiry = after(seconds, () => {
        this.metrics.sessionsExpired++;
        this.log.info(`session ${quote(session.clientId)} expired after ${seconds}s offline`);
        this.#discard(session);
      });
    }
  }

  #publishWill(session: Session): void {
    const will = session.will;
    if (!will) return;
    this.#cancelWill(session);
    const { message, expiryInterval } = will;
    this.publish(
      expiryInterval === undefined
        ? message
        : { ...message, expiresAt: performance.now() + expiryInterval * 1000 },
    );
  }

  #cancelWill(session: Session): void {
    cancel(session.will?.timer);
    session.will = undefined;
  }

  /** Ends a session: its will goes out now if it was still waiting (the session ends first). */
  #discard(session: Session): void {
    cancel(session.expiry);
    session.expiry = undefined;
    this.#publishWill(session);
    for (const subscription of session.subscriptions.values()) this.#router.remove(session, subscription);
    session.clear();
    if (this.sessions.get(session.clientId) === session) this.sessions.delete(session.clientId);
  }

  /**
   * Adds or replaces a subscription under `key` (the filter as the client sent it, `$share/...` included);
   * returns whether one existed. The caller sends SUBACK, then `sendRetained`.
   */
  subscribe(session: Session, key: string, subscription: Subscription): boolean {
    const previous = session.subscriptions.get(key);
    if (previous) this.#router.remove(session, previous);
    session.setSubscription(key, subscription);
    this.#router.add(session, subscription);
    return previous !== undefined;
  }

  /**
   * Sends the retained messages matching the subscription, with RETAIN set [MQTT-3.3.1-8]; expired ones are
   * deleted instead.
   */
  sendRetained(session: Session, subscription: Subscription): void {
    const ids = subscription.id === undefined ? undefined : [subscription.id];
    const expired: string[] = [];
    const now = performance.now();
    this.retained.match(subscription.filter, (message) => {
      if (isExpired(message, now)) return void expired.push(message.topic);
      this.delivery.deliver(session, message, Math.min(message.qos, subscription.qos) as QoS, true, ids);
    });
    for (const topic of expired) this.retained.delete(topic);
  }

  /** Removes the subscription under `key`; false if there was none. */
  unsubscribe(session: Session, key: string): boolean {
    const subscription = session.subscriptions.get(key);
    if (!subscription) return false;
    session.deleteSubscription(key);
    this.#router.remove(session, subscription);
    return true;
  }

  /**
   * Publishes a message: updates the retained store when RETAIN is set, then delivers it once to every
   * session with a matching subscription, at the highest QoS among that session's matches (capped by the
   * message's own QoS) and with RETAIN cleared unless Retain As Published [MQTT-3.3.1-9, MQTT-3.3.5-1], and to
   * one member of each matching shared group. Only the broker publishes under $SYS: a client's message there
   * is refused and counted.
   */
  publish(message: Message): PublishResult {
    if (message.topic === "$SYS" || message.topic.startsWith("$SYS/")) {
      this.metrics.droppedSysTopic++;
      return "refused";
    }
    if (message.retain) this.#retain(message);
    // Collected into reused arrays by visitors made once: no allocation per publish. Delivery never
    // publishes, so this cannot be re-entered while the arrays are in use.
    this.#publishSeq++;
    this.#current = message;
    this.#router.match(message.topic, this.#collect, this.#collectGroup);
    const targets = this.#targets;
    const groups = this.#groups;
    const count = targets.length + groups.length;
    for (let i = 0; i < targets.length; i++) {
      const session = targets[i];
      const retain = session.matchRetain && message.retain;
      const qos = Math.min(message.qos, session.matchQos) as QoS;
      this.delivery.deliver(session, message, qos, retain, session.matchIds);
    }
    targets.length = 0;
    for (let i = 0; i < groups.length; i++) this.#deliverShared(groups[i], message, undefined);
    groups.length = 0;
    this.#current = undefined;
    return count;
  }

  /** Router visitor: each matching session once, merging its matching subscriptions. */
  readonly #collect = (session: Session, subscription: Subscription): void => {
    // No Local: not back to the session that published it [MQTT-3.8.3-3].
    if (subscription.noLocal && this.#current!.origin === session) return;
    if (session.matchSeq !== this.#publishSeq) {
      session.matchSeq = this.#publishSeq;
      session.matchQos = subscription.qos;
      session.matchRetain = subscription.retainAsPublished;
      session.matchIds = subscription.id === undefined ? undefined : [subscription.id];
      this.#targets.push(session);
      return;
    }
    if (subscription.qos > session.matchQos) session.matchQos = subscription.qos;
    if (subscription.retainAsPublished) session.matchRetain = true;
    if (subscription.id !== undefined) (session.matchIds ??= []).push(subscription.id);
  };

  readonly #collectGroup = (group: SharedGroup): void => {
    this.#groups.push(group);
  };

  /** Delivers `message` to one member of `group` other than `except`; false if there was none to take it. */
  #deliverShared(group: SharedGroup, message: Message, except: Session | undefined): boolean {
    const member = this.#pickMember(group, except);
    if (!member) return false;
    const subscription = group.members.get(member)!;
    const retain = subscription.retainAsPublished && message.retain;
    const ids = subscription.id === undefined ? undefined : [subscription.id];
    this.delivery.deliver(
      member,
      message,
      Math.min(message.qos, subscription.qos) as QoS,
      retain,
      ids,
      group,
    );
    return true;
  }

  /**
   * The member of a shared group that gets the next message: a connected one, by round robin or with the fewest
   * unacknowledged messages (`mqtt.shared_subscription_strategy`). With none connected, an offline session
   * (which queues QoS 1/2) takes it in turn, unless `except` is set: redistribution only moves to live members.
   */
  #pickMember(group: SharedGroup, except: Session | undefined): Session | undefined {
    const members = group.order;
    const n = members.length;
    const leastInflight = this.config.mqtt.shared_subscription_strategy === "least_inflight";
    let chosen: Session | undefined;
    let chosenAt = 0;
    let load = Infinity;
    for (let k = 0; k < n; k++) {
      const at = (group.next + k) % n;
      const session = members[at];
      if (!session.outlet || session === except) continue;
      const pending = leastInflight ? session.inflight.size + session.queued : 0;
      if (pending < load) {
        chosen = session;
        chosenAt = at;
        load = pending;
        if (!leastInflight) break;
      }
    }
    if (!chosen && !except && n > 0) {
      chosenAt = group.next % n;
      chosen = members[chosenAt];
    }
    if (chosen) group.next = chosenAt + 1;
    return chosen;
  }

  /**
   * A shared-subscription member lost its connection: the messages from shared groups it had queued, and its
   * unacknowledged QoS 1 ones, go to other connected members; those nobody can take stay with the session.
   */
  #redistribute(session: Session): void {
    for (const outbound of session.takeShared()) {
      if (!this.#deliverShared(outbound.share!, outbound.message, session)) {
        session.enqueue(outbound);
      }
    }
  }

  #retain(message: Message): void {
    // An empty payload clears the topic and is not stored [MQTT-3.3.1-10, MQTT-3.3.1-11].
    if (message.payload.length === 0) return this.retained.delete(message.topic);
    if (this.retained.set(storedCopy(message))) return;
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
    for (const session of this.sessions.values()) {
      cancel(session.expiry);
      cancel(session.will?.timer);
    }
  }
}
