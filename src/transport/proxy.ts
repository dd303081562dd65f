/**
 * The PROXY protocol (v1 and v2, as HAProxy sends it) in front of any listener. The header names the client
 * behind the proxy; that address, and a client certificate the proxy verified, replace the proxy's in the
 * connection's PeerInfo, so logs, auth and metrics see the client and no protocol code changes.
 *
 * On tcp and ws listeners the header is read off the socket, and the WebSocket upgrade or MQTT follows on the
 * same socket. A TLS listener (tls, wss) cannot be handed a socket that has been read from (Deno's node:tls
 * loses the bytes read ahead), so for it a front socket reads the header and relays the rest to the real
 * listener, bound to a free loopback port; the relay's port tells whose connection it is.
 */

import net from "node:net";
import { type Logger, oncePerKind } from "../observe/log.ts";
import { type AddressRange, inRange } from "./address_range.ts";
import {
  type Acceptor,
  type Connection,
  formatAddress,
  type Listener,
  logAcceptFailures,
  type PeerInfo,
} from "./connection.ts";
import { readPreamble } from "./preamble.ts";
import { parseProxyHeader, verifiedCommonName } from "./proxy_protocol.ts";

/** How long a relay waits for its client to take the last bytes once the listener has closed. */
const CLOSE_LINGER_MS = 1000;

export interface ProxyOptions {
  /** The proxies: only these may connect. */
  readonly trusted: readonly AddressRange[];
  /** How long a connection has to send its header, milliseconds. */
  readonly timeoutMs: number;
}

/** What a PROXY header says about the connection: the fields of PeerInfo it replaces. */
export type ProxiedPeer = Pick<PeerInfo, "address" | "port" | "proxy" | "certificate">;

/** Called with the client a header named and the bytes that followed the header. */
export type ProxiedSocket = (socket: net.Socket, peer: ProxiedPeer, rest: Uint8Array) => void;

/**
 * Reads the PROXY header of each socket given to `read`, then hands the socket to `serve` with what was read
 * past the header. A socket from an untrusted address, or whose header is missing, malformed or late, is
 * closed with one log line (per reason and address: a misconfigured client retrying must not flood the log).
 * A LOCAL header, a proxy's health check, is closed quietly.
 */
export class ProxyHeaderReader {
  readonly #options: ProxyOptions;
  readonly #type: PeerInfo["transport"];
  readonly #log: Logger;
  readonly #serve: ProxiedSocket;
  readonly #refused: (kind: string, line: string) => void;

  constructor(options: ProxyOptions, type: PeerInfo["transport"], log: Logger, serve: ProxiedSocket) {
    this.#options = options;
    this.#type = type;
    this.#log = log;
    this.#serve = serve;
    this.#refused = oncePerKind(log);
  }

  read(socket: net.Socket): void {
    const from = socket.remoteAddress ?? "unknown";
    const fromPort = socket.remotePort ?? 0;
    const refuse = (why: string) => {
      this.#refused(
        `${why} ${from}`,
        `${this.#type} connection from ${formatAddress(from, fromPort)} closed: ${why}`,
      );
      socket.destroy();
    };
    socket.on("error", ignore);
    if (!this.#options.trusted.some((range) => inRange(range, from))) {
      return refuse("not a trusted proxy (listener's proxy_trusted_sources)");
    }
    const parse = (bytes: Uint8Array) => {
      const parsed = parseProxyHeader(bytes);
      return parsed.kind === "incomplete" ? undefined : parsed;
    };
    const timeoutMs = this.#options.timeoutMs;
    readPreamble(socket, undefined, timeoutMs, parse, (parsed, bytes) => {
      if (parsed.kind === "invalid") return refuse(`bad PROXY header: ${parsed.reason}`);
      const header = parsed.header;
      if (header.command === "local") {
        if (this.#log.debugEnabled) {
          this.#log.debug(`${this.#type} health check from proxy ${formatAddress(from, fromPort)}`);
        }
        return void socket.destroy();
      }
      const proxy = { address: from, port: fromPort };
      const commonName = verifiedCommonName(header);
      // A header without an address (v1 UNKNOWN, v2 UNSPEC or unix) leaves the proxy's own in place.
      const peer: ProxiedPeer = {
        ...(header.source ? { ...header.source, proxy } : proxy),
        ...(commonName !== undefined ? { certificate: { subject: `CN=${commonName}`, commonName } } : {}),
      };
      this.#serve(socket, peer, bytes.subarray(parsed.length));
    }, () => refuse(`no PROXY header within ${timeoutMs / 1000} s`));
  }
}

/**
 * Serves a TLS listener (tls or wss) behind a PROXY front: `open` starts the real listener on `127.0.0.1`
 * with the acceptor it is given, and `config`'s host and port are the front's.
 */
export async function listenBehindProxy(
  front: { readonly type: PeerInfo["transport"]; readonly host: string; readonly port: number },
  options: ProxyOptions,
  open: (host: string, port: number, accept: Acceptor) => Promise<Listener>,
  accept: Acceptor,
  log: Logger,
): Promise<Listener> {
  /** The client behind each relay, by the relay's local address and port. */
  const relays = new Map<string, ProxiedPeer>();
  const inner = await open("127.0.0.1", 0, (connection) => {
    const { address, port, certificate } = connection.peer;
    const peer = relays.get(formatAddress(address, port));
    // Anyone else who finds the loopback port is no client of this listener.
    if (!peer) return null;
    // The identity is the TLS handshake's own: a certificate name in the header counts only where the proxy
    // ended TLS, which is not the case in front of a TLS listener.
    const { address: clientAddress, port: clientPort, proxy } = peer;
    return accept(
      new ProxiedConnection(connection, {
        transport: connection.peer.transport,
        address: clientAddress,
        port: clientPort,
        ...(proxy ? { proxy } : {}),
        ...(certificate ? { certificate } : {}),
      }),
    );
  });
  /** Front sockets still sending their header: a stopping listener closes them rather than wait for them. */
  const pending = new Set<net.Socket>();
  const relay: ProxiedSocket = (socket, peer, rest) => {
    pending.delete(socket);
    const upstream = net.connect({ host: "127.0.0.1", port: inner.port, noDelay: true });
    let local: string | undefined;
    upstream.once("connect", () => {
      local = formatAddress(upstream.localAddress ?? "", upstream.localPort ?? 0);
      relays.set(local, peer);
    });
    socket.setNoDelay(true);
    if (rest.length > 0) upstream.write(rest);
    // pipe() passes each end on, so what the listener sent before it closed still reaches the client.
    socket.pipe(upstream);
    upstream.pipe(socket);
    socket.on("error", ignore);
    upstream.on("error", ignore);
    socket.once("close", () => upstream.destroy());
    upstream.once("close", () => {
      if (local !== undefined) relays.delete(local);
      if (socket.destroyed) return;
      // A client that does not read never lets the end finish; do not wait for it forever.
      const linger = setTimeout(() => socket.destroy(), CLOSE_LINGER_MS);
      socket.once("close", () => clearTimeout(linger));
    });
  };
  const reader = new ProxyHeaderReader(options, front.type, log, relay);
  const server = net.createServer({ noDelay: true }, (socket) => {
    pending.add(socket);
    socket.once("close", () => pending.delete(socket));
    reader.read(socket);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: front.host, port: front.port }, () => {
        server.off("error", reject);
        logAcceptFailures(server, front.type, front.host, front.port, log);
        resolve();
      });
    });
  } catch (error) {
    await inner.close();
    await inner.drained();
    throw error;
  }
  let closed: Promise<void> | undefined;
  return {
    type: front.type,
    host: front.host,
    port: (server.address() as net.AddressInfo).port,
    close() {
      closed ??= new Promise((done) => server.close(() => done()));
      for (const socket of pending) socket.destroy();
      return inner.close();
    },
    async drained() {
      await inner.drained();
      await closed;
    },
  };
}

/** A connection of the real listener, as its client: the proxied peer in place of the relay's address. */
class ProxiedConnection implements Connection {
  readonly peer: PeerInfo;
  readonly #relayed: Connection;

  constructor(relayed: Connection, peer: PeerInfo) {
    this.#relayed = relayed;
    this.peer = peer;
  }

  get buffered(): number {
    return this.#relayed.buffered;
  }

  write(bytes: Uint8Array): void {
    this.#relayed.write(bytes);
  }

  writeEdited(bytes: Uint8Array, at: number, value: number, flags: number): void {
    this.#relayed.writeEdited(bytes, at, value, flags);
  }

  close(): void {
    this.#relayed.close();
  }
}

/** A reset before or during the header: the socket is closed and nothing else needs to know. */
function ignore(): void {}
