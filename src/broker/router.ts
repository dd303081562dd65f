/**
 * Subscriptions in a trie by filter level. `+` and `#` are children named "+" and "#": topic names cannot
 * contain them, so they never collide with a literal level. A lookup walks only the branches that can
 * match, and allocates nothing for a topic seen recently: its split into levels is cached.
 */

import type { QoS } from "../protocol/codec.ts";
import type { Session } from "./session.ts";

/** What a subscription asked for; shared by the trie and the session's own list. */
export interface Subscription {
  /** The filter without any `$share/{group}/` prefix. */
  readonly filter: string;
  /** Granted QoS. */
  readonly qos: QoS;
  /** MQTT 5.0 options (all false / 0 for MQTT 3.1.1) [MQTT-3.8.3-3, 3.8.3-4]. */
  readonly noLocal: boolean;
  readonly retainAsPublished: boolean;
  readonly retainHandling: 0 | 1 | 2;
  /** Subscription Identifier, carried on every delivery through this subscription. */
  readonly id: number | undefined;
  /** Shared subscription group name (`$share/{group}/...`), if any. */
  readonly group: string | undefined;
}

/**
 * The members of one shared subscription group on one filter (MQTT 5.0 section 4.8.2): each matching message
 * goes to one of them. `next` is the round-robin position.
 */
export interface SharedGroup {
  readonly name: string;
  readonly filter: string;
  readonly members: Map<Session, Subscription>;
  /** The members in the order they joined, for round robin without allocating per message. */
  readonly order: Session[];
  next: number;
}

export type SubscriberVisitor = (session: Session, subscription: Subscription) => void;
export type GroupVisitor = (group: SharedGroup) => void;

interface RouteNode {
  children: Map<string, RouteNode>;
  subscribers: Map<Session, Subscription>;
  /** Shared groups on this node's filter, by group name; made on first use. */
  groups?: Map<string, SharedGroup>;
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

  /** Adds or replaces `session`'s subscription (on its filter, in its shared group if it has one). */
  add(session: Session, subscription: Subscription): void {
    let node = this.#root;
    for (const level of subscription.filter.split("/")) {
      let child = node.children.get(level);
      if (!child) node.children.set(level, child = newNode());
      node = child;
    }
    const name = subscription.group;
    if (name === undefined) {
      node.subscribers.set(session, subscription);
      return;
    }
    const groups = node.groups ??= new Map();
    let group = groups.get(name);
    if (!group) {
      group = { name, filter: subscription.filter, members: new Map(), order: [], next: 0 };
      groups.set(name, group);
    }
    if (!group.members.has(session)) group.order.push(session);
    group.members.set(session, subscription);
  }

  /** Removes `session`'s subscription, pruning branches left empty. */
  remove(session: Session, subscription: Subscription): void {
    const levels = subscription.filter.split("/");
    const path: RouteNode[] = [this.#root];
    for (const level of levels) {
      const child = path[path.length - 1].children.get(level);
      if (!child) return;
      path.push(child);
    }
    const leaf = path[levels.length];
    if (subscription.group === undefined) {
      leaf.subscribers.delete(session);
    } else {
      const group = leaf.groups?.get(subscription.group);
      if (group?.members.delete(session)) group.order.splice(group.order.indexOf(session), 1);
      if (group?.members.size === 0) leaf.groups!.delete(group.name);
      if (leaf.groups?.size === 0) leaf.groups = undefined;
    }
    for (let i = levels.length; i > 0; i--) {
      const node = path[i];
      if (node.subscribers.size > 0 || node.children.size > 0 || node.groups) break;
      path[i - 1].children.delete(levels[i - 1]);
    }
  }

  /**
   * Visits every non-shared subscription matching `topic` (a session with overlapping filters is visited once
   * per filter), and every shared group whose filter matches it, once each.
   */
  match(topic: string, visit: SubscriberVisitor, visitGroup: GroupVisitor): void {
    let levels = this.#levels.get(topic);
    if (!levels) {
      if (this.#levels.size >= LEVELS_CACHE_SIZE) this.#levels.clear();
      this.#levels.set(topic, levels = topic.split("/"));
    }
    matchLevel(this.#root, levels, 0, topic.charCodeAt(0) === 0x24, /* $ */ visit, visitGroup);
  }
}

function matchLevel(
  node: RouteNode,
  levels: string[],
  i: number,
  dollar: boolean,
  visit: SubscriberVisitor,
  visitGroup: GroupVisitor,
) {
  // Wildcards at the first level do not match topics starting with "$" [MQTT-4.7.2-1].
  const wild = i > 0 || !dollar;
  if (wild) {
    // "#" matches this level and everything below, including the parent level itself [MQTT-4.7.1-2].
    const hash = node.children.get("#");
    if (hash) visitNode(hash, visit, visitGroup);
  }
  if (i === levels.length) {
    visitNode(node, visit, visitGroup);
    return;
  }
  if (wild) {
    const plus = node.children.get("+");
    if (plus) matchLevel(plus, levels, i + 1, dollar, visit, visitGroup);
  }
  const exact = node.children.get(levels[i]);
  if (exact) matchLevel(exact, levels, i + 1, dollar, visit, visitGroup);
}

function visitNode(node: RouteNode, visit: SubscriberVisitor, visitGroup: GroupVisitor): void {
  for (const [session, subscription] of node.subscribers) visit(session, subscription);
  if (node.groups) { for (const group of node.groups.values()) visitGroup(group); }
}
