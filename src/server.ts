/**
 * A running broker: the configured listeners feeding one Broker. `main.ts` starts it for `vyoma start`;
 * tests start it in-process on port 0.
 */

import { Broker } from "./broker/broker.ts";
import { Client } from "./broker/client.ts";
import type { Config, ListenerConfig } from "./config/schema.ts";
import type { Logger } from "./observe/log.ts";
import { createMetrics, type Metrics } from "./observe/metrics.ts";
import { MemoryRetainedStore, MemorySessionStore } from "./store/memory.ts";
import type { Connection, Listener } from "./transport/connection.ts";
import { listenTcp } from "./transport/tcp.ts";

export interface Server {
  readonly broker: Broker;
  readonly metrics: Metrics;
  /** The listeners as bound (port 0 in the config becomes the real port here). */
  readonly listeners: readonly Listener[];
  /** Stops accepting, closes every client, and resolves once all connections have ended. */
  stop(): Promise<void>;
}

/** A listener could not be opened; `message` is the one line to show. */
export class StartError extends Error {}

export function startServer(config: Config, log: Logger): Server {
  const metrics = createMetrics();
  const broker = new Broker(
    config,
    log,
    metrics,
    new MemorySessionStore(),
    new MemoryRetainedStore(config.limits.max_retained_messages),
  );
  const clients = new Set<Client>();
  let refusedLogged = false;

  const accept = (conn: Connection) => {
    if (clients.size >= config.limits.max_connections) {
      metrics.connectionsRefused++;
      if (!refusedLogged) {
        refusedLogged = true;
        log.warn(
          `connection limit reached (limits.max_connections = ${config.limits.max_connections}); ` +
            `new connections are closed at once and counted`,
        );
      }
      return null;
    }
    refusedLogged = false;
    metrics.connectionsAccepted++;
    const client = new Client(broker, conn, (c) => clients.delete(c));
    clients.add(client);
    return client;
  };

  const listeners: Listener[] = [];
  try {
    for (const listener of config.listeners) {
      listeners.push(openListener(listener, accept, log));
      const bound = listeners[listeners.length - 1];
      log.info(`listening on ${bound.type} ${formatHost(bound.host)}:${bound.port}`);
    }
  } catch (error) {
    for (const listener of listeners) listener.close();
    throw error;
  }

  let stopping: Promise<void> | undefined;
  return {
    broker,
    metrics,
    listeners,
    stop() {
      return stopping ??= (async () => {
        await Promise.all(listeners.map((l) => l.close()));
        for (const client of [...clients]) client.shutdown();
        await Promise.all(listeners.map((l) => l.drained()));
        broker.stop();
      })();
    },
  };
}

function openListener(
  config: ListenerConfig,
  accept: (conn: Connection) => Client | null,
  log: Logger,
): Listener {
  try {
    return listenTcp(config.host, config.port, accept, log);
  } catch (error) {
    const reason = error instanceof Deno.errors.AddrInUse
      ? "address already in use"
      : error instanceof Deno.errors.AddrNotAvailable
      ? "address not available on this machine"
      : error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : error instanceof Error
      ? error.message
      : String(error);
    throw new StartError(
      `cannot listen on ${config.type} ${formatHost(config.host)}:${config.port}: ${reason}`,
    );
  }
}

function formatHost(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}
