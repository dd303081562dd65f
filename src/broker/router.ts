/**
 * Subscriptions in a trie by filter level. `+` and `#` are children named "+" and "#": topic names cannot
 * contain them, so they never collide with a literal level. A lookup walks only the branches that can
 * match, and allocates nothing for a topic seen recently: its split into levels is cached.
 */

import type { QoS } from "../protocol/codec.ts";
import type { Session } from "./session.ts";

/** What a subscription asked for; shared by the trie and the session's own list. */
export interface Subscription {
  qos: QoS;
}

export type SubscriberVisitor = (session: Session, subscription: Subscription) => void;

interface RouteNode {
  children: Map<string, RouteNode>;
  subscribers: Map<Session, Subscription>;
}

const newNode = (): RouteNode => ({ children: new Map(), subscribers: new Map() });

/**
 * How many topics keep their split levels. Brokers see the same topics again and again; a burst of distinct
 * topics just empties the cache, so it never holds more than this.
 */
const LEVELS_CACHE_SIZE = 8192;

export class Router {
  readonly #root = newNode();
  readonly #levels = new Map<string, string[]>();

  /** Adds or replaces `session`'s subscription on `filter`. */
  add(filter: string, session: Session, subscription: Subscription): void {
    let node = this.#root;
    for (const level of filter.split("/")) {
      let child = node.children.get(level);
      if (!child) node.children.set(level, child = newNode());
      node = child;
    }
    node.subscribers.set(session, subscription);
  }

  /** Removes `session`'s subscription on `filter`, pruning branches left empty. */
  remove(filter: string, session: Session): void {
    const levels = filter.split("/");
    const path: RouteNode[] = [this.#root];
    for (const level of levels) {
      const child = path[path.length - 1].children.get(level);
      if (!child) return;
      path.push(child);
    }
    path[levels.length].subscribers.delete(session);
    for (let i = levels.length; i > 0; i--) {
      const node = path[i];
      if (node.subscribers.size > 0 || node.children.size > 0) break;
      path[i - 1].children.delete(levels[i - 1]);
    }
  }

  /** Visits every subscription matching `topic`; a session with overlapping filters is visited once per filter. */
  match(topic: string, visit: SubscriberVisitor): void {
    let levels = this.#levels.get(topic);
    if (!levels) {
      if (this.#levels.size >= LEVELS_CACHE_SIZE) this.#levels.clear();
      this.#levels.set(topic, levels = topic.split("/"));
    }
    matchLevel(this.#root, levels, 0, topic.charCodeAt(0) === 0x24, /* $ */ visit);
  }
}

function matchLevel(node: RouteNode, levels: string[], i: number, dollar: boolean, visit: SubscriberVisitor) {
  // Wildcards at the first level do not match topics starting with "$" [MQTT-4.7.2-1].
  const wild = i > 0 || !dollar;
  if (wild) {
    // "#" matches this level and everything below, including the parent level itself [MQTT-4.7.1-2].
    const hash = node.children.get("#");
    if (hash) visitSubscribers(hash, visit);
  }
  if (i === levels.length) {
    visitSubscribers(node, visit);
    return;
  }
  if (wild) {
    const plus = node.children.get("+");
    if (plus) matchLevel(plus, levels, i + 1, dollar, visit);
  }
  const exact = node.children.get(levels[i]);
  if (exact) matchLevel(exact, levels, i + 1, dollar, visit);
}

function visitSubscribers(node: RouteNode, visit: SubscriberVisitor): void {
  for (const [session, subscription] of node.subscribers) visit(session, subscription);
}
