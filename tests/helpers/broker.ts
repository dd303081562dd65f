/**
 * An in-process broker on a free port for one test. Its log lines are kept in `logs` (debug level) so a
 * test can check what was logged; `await using` stops it and waits for every connection to end, which
 * keeps Deno's resource and op sanitizers meaningful.
 */

import { type Config, DEFAULT_CONFIG, listenerConfig } from "../../src/config/schema.ts";
import { createLogger } from "../../src/observe/log.ts";
import { type Server, type ServerOptions, startServer } from "../../src/server.ts";
import { until } from "./wait.ts";

/** Config sections with every field optional, for overrides; `listeners` replaces the default list. */
export type ConfigOverrides = { [K in Exclude<keyof Config, "listeners">]?: Partial<Config[K]> } & {
  listeners?: Config["listeners"];
};

export interface TestBroker extends AsyncDisposable {
  readonly port: number;
  readonly server: Server;
  readonly logs: string[];
  stop(): Promise<void>;
  /**
   * Waits until the session `clientId` (any session, if null) holds a subscription to `filter`: the barrier
   * for clients that show no SUBACK, such as mosquitto_sub or a socket that never reads.
   */
  subscribed(clientId: string | null, filter: string): Promise<void>;
  /** Waits until the session `clientId` exists with no connection attached: it has gone offline. */
  offline(clientId: string): Promise<void>;
  /** Whether the broker holds a session, online or offline, for `clientId` (without waiting). */
  hasSession(clientId: string): boolean;
  /** Waits until the broker holds no session for `clientId`: it has ended or expired. */
  sessionEnded(clientId: string, ms?: number): Promise<void>;
  /** Whether the broker has logged that `clientId` disconnected (with `reason`, if given), without waiting. */
  loggedDisconnect(clientId: string, reason?: string): boolean;
  /**
   * Waits until the broker has logged that `clientId` disconnected (with `reason`, if given); that line is
   * written last, once the broker has finished with the connection.
   */
  disconnected(clientId: string, reason?: string): Promise<void>;
}

/** `options` reach startServer as they are (enhanced authenticators, for instance). */
export async function startBroker(
  overrides: ConfigOverrides = {},
  options: ServerOptions = {},
): Promise<TestBroker> {
  const config = structuredClone(DEFAULT_CONFIG) as Config;
  for (const [section, values] of Object.entries(overrides)) {
    if (section === "listeners") continue;
    Object.assign(config[section as keyof Config], values);
  }
  // One plain TCP listener on a free port unless the test names its own (use port 0 there too).
  config.listeners = overrides.listeners ?? [listenerConfig("tcp", { port: 0 })];
  const logs: string[] = [];
  const server = await startServer(config, createLogger("debug", (line) => logs.push(line)), options);
  const sessions = server.broker.sessions;
  const stop = () => server.stop();
  const loggedDisconnect = (clientId: string, reason?: string) =>
    logs.some((line) => line.includes(disconnectLine(clientId, reason)));
  return {
    port: server.listeners[0].port,
    server,
    logs,
    stop,
    [Symbol.asyncDispose]: stop,
    subscribed(clientId, filter) {
      const candidates = () => clientId === null ? [...sessions.values()] : [sessions.get(clientId)];
      return until(
        () => candidates().some((session) => session?.subscriptions.has(filter) === true),
        `${clientId ?? "a client"} to subscribe to ${filter}`,
      );
    },
    offline(clientId) {
      return until(() => sessions.get(clientId)?.outlet === null, `${clientId} to go offline`);
    },
    hasSession: (clientId) => sessions.get(clientId) !== undefined,
    sessionEnded(clientId, ms) {
      return until(() => sessions.get(clientId) === undefined, `the session of ${clientId} to end`, ms);
    },
    loggedDisconnect,
    disconnected(clientId, reason) {
      return until(
        () => loggedDisconnect(clientId, reason),
        `the log line '${disconnectLine(clientId, reason)}'`,
      );
    },
  };
}

/** The start of the broker's log line for the end of `clientId`'s connection. */
function disconnectLine(clientId: string, reason?: string): string {
  return `client "${clientId}" disconnected:${reason === undefined ? "" : ` ${reason}`}`;
}
