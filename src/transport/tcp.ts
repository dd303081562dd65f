/**
 * Plain TCP through `node:net`.
 *
 * Deno offers two TCP paths, and this one was chosen by measurement (docs/performance.md): `Deno.listen`
 * needs a read buffer held by every connection's pending read, so 10,000 idle clients cost 16 KiB each with a
 * 16 KiB buffer (and, even at 512 bytes, 7.6 KB each for a bare echo server against 4.7 KB on node:net),
 * while node:net under Deno allocates only when data arrives, accepted connections at 21k/s against 8.8k/s,
 * and moved QoS 0 messages 1.5-2.4x faster through the same broker.
 */

import net from "node:net";
import type { Logger } from "../observe/log.ts";
import {
  type Acceptor,
  type Connection,
  type ConnectionHandler,
  guard,
  type Listener,
  type PeerInfo,
} from "./connection.ts";
import { Outbox } from "./outbox.ts";
import { type ProxiedPeer, ProxyHeaderReader, type ProxyOptions } from "./proxy.ts";

/** How long close() waits for queued bytes to reach a peer that is not reading. */
const CLOSE_LINGER_MS = 1000;

/** Where a socket listener binds, and whether a PROXY header comes first. */
export interface SocketListenerOptions {
  readonly host: string;
  readonly port: number;
  readonly proxy?: ProxyOptions;
}

/** Binds and resolves once listening; rejects with node's error (its `code` says why: EADDRINUSE, ...). */
export function listenTcp(options: SocketListenerOptions, accept: Acceptor, log: Logger): Promise<Listener> {
  return serveSockets(
    "tcp",
    options,
    accept,
    log,
    (onSocket) => net.createServer({ noDelay: true }, onSocket),
  );
}

/**
 * Serves the sockets of a node:net (or node:tls) server: `create` makes the server, calling `onSocket` for
 * each connection ready to carry MQTT (for TLS, after the handshake). Shared by every socket transport.
 */
export function serveSockets(
  type: PeerInfo["transport"],
  { host, port, proxy }: SocketListenerOptions,
  accept: Acceptor,
  log: Logger,
  create: (onSocket: (socket: net.Socket) => void) => net.Server,
  describe: (socket: net.Socket) => Partial<PeerInfo> = () => ({}),
): Promise<Listener> {
  let open = 0;
  let drained: (() => void) | null = null;
  let lastError = "";
  // One callback per listener, not per connection.
  const ended = () => {
    if (--open === 0) drained?.();
  };
  const serve = (socket: net.Socket, proxied?: ProxiedPeer, rest?: Uint8Array) => {
    const connection = new SocketConnection(socket, type, describe, log, proxied);
    const handler = accept(connection);
    if (!handler) return void socket.destroy();
    open++;
    connection.start(handler, ended, rest);
  };
  const reader = proxy ? new ProxyHeaderReader(proxy, type, log, serve) : undefined;
  const server = create(reader ? (socket) => reader.read(socket) : (socket) => serve(socket));
  // node calls back from close() only once every connection has ended, so close() just stops accepting
  // and drained() waits for that callback.
  let closed: Promise<void> | undefined;
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port }, () => {
      server.off("error", reject);
      // After start-up, errors are failed accepts (EMFILE, say): one line per kind, not one per attempt.
      server.on("error", (error: Error) => {
        if (error.message !== lastError) log.warn(`${type} ${host}:${port}: accept failed: ${error.message}`);
        lastError = error.message;
      });
      resolve({
        type,
        host,
        port: (server.address() as net.AddressInfo).port,
        close() {
          closed ??= new Promise((done) => server.close(() => done()));
          reader?.dropPending();
          return Promise.resolve();
        },
        async drained() {
          if (open > 0) await new Promise<void>((done) => drained = done);
          await closed;
        },
      });
    });
  });
}

class SocketConnection implements Connection {
  #peer: PeerInfo | undefined;
  readonly #socket: net.Socket;
  readonly #type: PeerInfo["transport"];
  readonly #describe: (socket: net.Socket) => Partial<PeerInfo>;
  readonly #proxied: ProxiedPeer | undefined;
  readonly #log: Logger;
  readonly #outbox: Outbox;
  #closing = false;

  constructor(
    socket: net.Socket,
    type: PeerInfo["transport"],
    describe: (socket: net.Socket) => Partial<PeerInfo>,
    log: Logger,
    proxied?: ProxiedPeer,
  ) {
    this.#socket = socket;
    this.#type = type;
    this.#describe = describe;
    this.#proxied = proxied;
    this.#log = log;
    this.#outbox = new Outbox((bytes) => {
      if (!socket.destroyed) socket.write(bytes);
    });
    // Read on demand (a getpeername call and two strings per connection otherwise), except where debug lines
    // may want it after the socket is gone, when node no longer knows it.
    if (log.debugEnabled) void this.peer;
  }

  get peer(): PeerInfo {
    return this.#peer ??= {
      transport: this.#type,
      address: this.#socket.remoteAddress ?? "unknown",
      port: this.#socket.remotePort ?? 0,
      ...this.#describe(this.#socket),
      ...this.#proxied,
    };
  }

  get buffered(): number {
    return this.#outbox.queued + this.#socket.writableLength;
  }

  write(bytes: Uint8Array): void {
    this.writeEdited(bytes, -1, 0, 0);
  }

  writeEdited(bytes: Uint8Array, at: number, value: number, flags: number): void {
    if (!this.#closing) this.#outbox.add(bytes, at, value, flags);
  }

  close(): void {
    if (this.#closing) return;
    this.#outbox.flush();
    this.#closing = true;
    this.#socket.end();
    // A peer that does not read never lets `end` finish; do not wait for it forever.
    const linger = setTimeout(() => this.#socket.destroy(), CLOSE_LINGER_MS);
    this.#socket.once("close", () => clearTimeout(linger));
  }

  /** Feeds the handler (`first`, then what the socket reads) until it closes, then tells it and `ended`, once. */
  start(handler: ConnectionHandler, ended: () => void, first?: Uint8Array): void {
    const socket = this.#socket;
    const data = (chunk: Uint8Array) => {
      // node:net reads each chunk into fresh memory (measured), so it is handed over as it is, a Buffer. (A
      // plain Uint8Array view of it cost fan-in QoS 0 about a quarter of its throughput in Deno 2.9.)
      if (!guard(this.#log, this, () => handler.data(chunk))) socket.destroy();
    };
    socket.on("data", data);
    socket.on("error", ignore);
    socket.once("close", () => {
      this.#closing = true;
      this.#outbox.discard();
      guard(this.#log, this, () => handler.closed());
      ended();
    });
    // What arrived with a PROXY header, past it.
    if (first !== undefined && first.length > 0) data(first);
  }
}

/** A reset or a write to a closed peer: the close event that follows is what the handler hears. */
function ignore(): void {}
