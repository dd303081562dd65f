/** In-memory stores: the default, and the live state a durable backend will sit behind. */

import type { Message } from "../broker/message.ts";
import type { Session } from "../broker/session.ts";
import type { RetainedStore, SessionStore } from "./types.ts";

export class MemorySessionStore implements SessionStore {
  readonly #sessions = new Map<string, Session>();

  get(clientId: string): Session | undefined {
    return this.#sessions.get(clientId);
  }
  set(session: Session): void {
    this.#sessions.set(session.clientId, session);
  }
  delete(clientId: string): void {
    this.#sessions.delete(clientId);
  }
  get size(): number {
    return this.#sessions.size;
  }
  values(): IterableIterator<Session> {
    return this.#sessions.values();
  }
}

interface RetainNode {
  children: Map<string, RetainNode>;
  message: Message | undefined;
}

const newNode = (): RetainNode => ({ children: new Map(), message: undefined });

/** Retained messages in a trie by topic level, so a wildcard subscribe walks only matching branches. */
export class MemoryRetainedStore implements RetainedStore {
  readonly #root = newNode();
  readonly #limit: number;
  #size = 0;

  constructor(limit: number) {
    this.#limit = limit;
  }

  get size(): number {
    return this.#size;
  }

  set(message: Message): boolean {
    const levels = message.topic.split("/");
    let node = this.#root;
    for (const level of levels) {
      const child = node.children.get(level);
      if (!child) return this.#insert(message, levels);
      node = child;
    }
    if (!node.message) {
      if (this.#size >= this.#limit) return false;
      this.#size++;
    }
    node.message = message;
    return true;
  }

  #insert(message: Message, levels: string[]): boolean {
    if (this.#size >= this.#limit) return false;
    let node = this.#root;
    for (const level of levels) {
      let child = node.children.get(level);
      if (!child) node.children.set(level, child = newNode());
      node = child;
    }
    node.message = message;
    this.#size++;
    return true;
  }

  delete(topic: string): void {
    const path: RetainNode[] = [this.#root];
    const levels = topic.split("/");
    for (const level of levels) {
      const child = path[path.length - 1].children.get(level);
      if (!child) return;
      path.push(child);
    }
    const node = path[path.length - 1];
    if (!node.message) return;
    node.message = undefined;
    this.#size--;
    // Prune now-empty branches so deleted topics do not hold memory.
    for (let i = levels.length; i > 0; i--) {
      const n = path[i];
      if (n.message || n.children.size > 0) break;
      path[i - 1].children.delete(levels[i - 1]);
    }
  }

  match(filter: string, visit: (message: Message) => void): void {
    walk(this.#root, filter.split("/"), 0, visit);
  }
}

function walk(node: RetainNode, levels: string[], i: number, visit: (m: Message) => void): void {
  if (i === levels.length) {
    if (node.message) visit(node.message);
    return;
  }
  const level = levels[i];
  if (level === "#") {
    // "a/#" also matches "a" itself [MQTT-4.7.1-2]; at the root there is no message to visit.
    visitAll(node, i === 0, visit);
  } else if (level === "+") {
    for (const [name, child] of node.children) {
      if (i === 0 && name.startsWith("$")) continue;
      walk(child, levels, i + 1, visit);
    }
  } else {
    const child = node.children.get(level);
    if (child) walk(child, levels, i + 1, visit);
  }
}

function visitAll(node: RetainNode, skipDollar: boolean, visit: (m: Message) => void): void {
  if (node.message) visit(node.message);
  for (const [name, child] of node.children) {
    if (skipDollar && name.startsWith("$")) continue;
    visitAll(child, false, visit);
  }
}
