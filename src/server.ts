/**
 * A running broker: the configured listeners feeding one Broker. `main.ts` starts it for `vyoma start`;
 * tests start it in-process on port 0.
 */

import type { EnhancedAuthenticator } from "./auth/enhanced.ts";
import { PasswordFileError, PasswordVerifier, readPasswordFile } from "./auth/password_file.ts";
import { Broker } from "./broker/broker.ts";
import { Client, type ClientIdentity } from "./broker/client.ts";
import type { Config, ListenerConfig } from "./config/schema.ts";
import type { Logger } from "./observe/log.ts";
import { createMetrics, type Metrics } from "./observe/metrics.ts";
import { MemoryRetainedStore, MemorySessionStore } from "./store/memory.ts";
import { type AddressRange, parseAddressRange } from "./transport/address_range.ts";
import { type Acceptor, type Connection, formatAddress, type Listener } from "./transport/connection.ts";
import { listenBehindProxy, type ProxyOptions } from "./transport/proxy.ts";
import { listenTcp } from "./transport/tcp.ts";
import { listenTls, TlsSetupError } from "./transport/tls.ts";
import { listenWebSocket } from "./transport/websocket.ts";

export interface Server {
  readonly broker: Broker;
  readonly metrics: Metrics;
  /** The listeners as bound (port 0 in the config becomes the real port here). */
  readonly listeners: readonly Listener[];
  /** Stops accepting, closes every client, and resolves once all connections have ended. */
  stop(): Promise<void>;
  /**
   * Reads the password file again (SIGHUP): connected clients stay; the next CONNECTs are checked against
   * the new users. A file that does not read keeps the previous users, and the log says why. False then.
   */
  reloadPasswords(): Promise<boolean>;
}

/** What a server is given besides its config. */
export interface ServerOptions {
  /** Handlers for MQTT 5.0 enhanced authentication, asked in order; none by default. */
  readonly authenticators?: readonly EnhancedAuthenticator[];
}

/** How often connection deadlines are checked. */
const SILENCE_SWEEP_MS = 250;

/** A listener could not be opened; `message` is the one line to show. */
export class StartError extends Error {}

export async function startServer(
  config: Config,
  log: Logger,
  options: ServerOptions = {},
): Promise<Server> {
  const passwords = await loadPasswords(config.auth.password_file);
  const metrics = createMetrics();
  const broker = new Broker(
    config,
    log,
    metrics,
    new MemorySessionStore(),
    new MemoryRetainedStore(config.limits.max_retained_messages),
    options.authenticators,
    passwords,
  );
  const clients = new Set<Client>();
  let refusedLogged = false;

  /** Logs the first refusal after a limit is reached, not one line per connection. */
  const refuse = (limit: string) => {
    metrics.connectionsRefused++;
    if (!refusedLogged) {
      refusedLogged = true;
      log.warn(`connection limit reached (${limit}); new connections are closed at once and counted`);
    }
    return null;
  };

  /** Accepts connections for one listener: its own cap, then the broker's; its way of identifying clients. */
  const acceptor = (listener: ListenerConfig, index: number) => {
    const identity: ClientIdentity = {
      certificateAsUsername: "use_identity_as_username" in listener && listener.use_identity_as_username,
    };
    let open = 0;
    const closed = (client: Client) => {
      open--;
      clients.delete(client);
    };
    return (conn: Connection) => {
      if (listener.max_connections > 0 && open >= listener.max_connections) {
        return refuse(`listeners[${index}].max_connections = ${listener.max_connections}`);
      }
      if (clients.size >= config.limits.max_connections) {
        return refuse(`limits.max_connections = ${config.limits.max_connections}`);
      }
      refusedLogged = false;
      metrics.connectionsAccepted++;
      open++;
      const client = new Client(broker, conn, closed, identity);
      clients.add(client);
      return client;
    };
  };

  const listeners: Listener[] = [];
  try {
    for (const [index, listener] of config.listeners.entries()) {
      const timeoutMs = config.mqtt.connect_timeout * 1000;
      const proxy = listener.proxy_protocol ? proxyOptions(listener, timeoutMs) : undefined;
      listeners.push(await openListener(listener, proxy, timeoutMs, acceptor(listener, index), log));
      const bound = listeners[listeners.length - 1];
      const behind = proxy
        ? ` behind a PROXY protocol proxy (${listener.proxy_trusted_sources.join(", ")})`
        : "";
      log.info(`listening on ${bound.type} ${formatAddress(bound.host, bound.port)}${behind}`);
    }
  } catch (error) {
    await Promise.all(listeners.map((l) => l.close()));
    throw error;
  }

  // One timer checks every connection's deadlines (connect timeout, keep-alive), instead of a timer per
  // connection: a quarter second of lateness, for less memory and less work per connection.
  const sweep = setInterval(() => {
    const now = performance.now();
    for (const client of clients) client.checkSilence(now);
  }, SILENCE_SWEEP_MS);

  let stopping: Promise<void> | undefined;
  return {
    broker,
    metrics,
    listeners,
    async reloadPasswords() {
      const path = config.auth.password_file;
      if (path === "") return true;
      const file = await readPasswordFile(path);
      if (file instanceof PasswordFileError) {
        log.warn(`password file not reloaded, the previous users stay: ${file.message}`);
        return false;
      }
      broker.passwords = new PasswordVerifier(file);
      log.info(`password file ${path} reloaded: ${file.users.size} user(s)`);
      return true;
    },
    stop() {
      return stopping ??= (async () => {
        await Promise.all(listeners.map((l) => l.close()));
        clearInterval(sweep);
        for (const client of [...clients]) client.shutdown();
        await Promise.all(listeners.map((l) => l.drained()));
        broker.stop();
      })();
    },
  };
}

async function openListener(
  config: ListenerConfig,
  proxy: ProxyOptions | undefined,
  timeoutMs: number,
  accept: (conn: Connection) => Client | null,
  log: Logger,
): Promise<Listener> {
  const { host, port } = config;
  try {
    switch (config.type) {
      case "tcp":
        return await listenTcp({ host, port, proxy }, accept, log);
      case "ws":
        return await listenWebSocket(config, { host, port, proxy }, timeoutMs, accept, log);
      default: {
        // The PROXY header comes before the TLS handshake, which node:tls must read from the socket's first
        // byte: a front socket reads the header and relays the rest (proxy.ts).
        const open = (host: string, port: number, accept: Acceptor) =>
          config.type === "tls"
            ? listenTls(config, { host, port }, timeoutMs, accept, log)
            : listenWebSocket(config, { host, port }, timeoutMs, accept, log);
        return await (proxy ? listenBehindProxy(config, proxy, open, accept, log) : open(host, port, accept));
      }
    }
  } catch (error) {
    if (error instanceof TlsSetupError) {
      throw new StartError(
        `cannot listen on ${config.type} ${formatAddress(config.host, config.port)}: ${error.message}`,
      );
    }
    throw new StartError(
      `cannot listen on ${config.type} ${formatAddress(config.host, config.port)}: ${listenFailure(error)}`,
    );
  }
}

/** The password file's users, or undefined when none is configured; a bad file stops start-up. */
async function loadPasswords(path: string): Promise<PasswordVerifier | undefined> {
  if (path === "") return undefined;
  const file = await readPasswordFile(path);
  if (file instanceof PasswordFileError) throw new StartError(`password file: ${file.message}`);
  return new PasswordVerifier(file);
}

/** The listener's PROXY protocol settings; the header must come within the connect timeout. */
function proxyOptions(listener: ListenerConfig, timeoutMs: number): ProxyOptions {
  return {
    // Each entry was checked when the config was read.
    trusted: listener.proxy_trusted_sources.map((text) => parseAddressRange(text) as AddressRange),
    timeoutMs,
  };
}

/** node:net's reason for a failed bind, in words. */
function listenFailure(error: unknown): string {
  switch ((error as { code?: string }).code) {
    case "EADDRINUSE":
      return "address already in use";
    case "EADDRNOTAVAIL":
    case "EINVAL":
      return "address not available on this machine";
    case "EACCES":
      return "permission denied";
    case "ENOTFOUND":
      return "host name not found";
    default:
      return error instanceof Error ? error.message : String(error);
  }
}
