/**
 * Storage interfaces. The broker keeps live state in memory and talks to storage only through these, so a
 * durable backend (a later issue) replaces the memory one without touching protocol code. A store knows
 * sessions and messages, never packets or sockets.
 */

import type { Message } from "../broker/message.ts";
import type { Session } from "../broker/session.ts";

/** Sessions by client id, online and offline. */
export interface SessionStore {
  get(clientId: string): Session | undefined;
  set(session: Session): void;
  delete(clientId: string): void;
  readonly size: number;
  values(): IterableIterator<Session>;
}

/** Retained messages by topic, looked up by topic filter. */
export interface RetainedStore {
  /** Stores or replaces the message for its topic; false when a new topic would exceed the limit. */
  set(message: Message): boolean;
  delete(topic: string): void;
  /** Visits every retained message whose topic matches `filter` (with the `$` rule of MQTT-4.7.2-1). */
  match(filter: string, visit: (message: Message) => void): void;
  readonly size: number;
}
