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
  logAcceptFailures,
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

/** What differs between the transports that serve node:net (or node:tls) sockets. */
export interface SocketTransport {
  readonly type: PeerInfo["transport"];
  /** Makes the server, calling `onSocket` for each connection ready to carry bytes (TLS: after its handshake). */
  create(onSocket: (socket: net.Socket) => void): net.Server;
  /** What the socket knows of the peer beyond its address: a verified certificate. */
  describe?(socket: net.Socket): Partial<PeerInfo>;
  /**
   * An exchange of the transport's own before MQTT flows (the WebSocket upgrade): reads `first` and what the
   * socket reads after it, then calls `ready` with the framing to use and the bytes past the exchange, or
   * answers and closes the socket itself.
   */
  handshake?(
    socket: net.Socket,
    first: Uint8Array | undefined,
    ready: (framing: Framing, rest: Uint8Array) => void,
  ): void;
  /** Closes what the transport holds before `create`'s callback: sockets in their TLS handshake. */
  stop?(): void;
}

/** A stream's own framing around MQTT bytes (WebSocket frames), between the socket and the connection. */
export interface Framing {
  /** Wraps MQTT bytes for the wire and writes them. */
  send(bytes: Uint8Array): void;
  /** Unwraps a read, giving the MQTT bytes in it to `data`; returns why to close, if it must. */
  receive(chunk: Uint8Array, data: (bytes: Uint8Array) => void): Closing | undefined;
  /** Writes what announces a close (a close frame); `closing` says why, when it is not a normal close. */
  close(closing?: Closing): void;
}

/** A framing's reason to close: its code and words, and whether the peer asked for it. */
export interface Closing {
  readonly code: number;
  readonly reason: string;
  readonly peer: boolean;
}

/** Binds and resolves once listening; rejects with node's error (its `code` says why: EADDRINUSE, ...). */
export function listenTcp(options: SocketListenerOptions, accept: Acceptor, log: Logger): Promise<Listener> {
  return serveSockets(
    { type: "tcp", create: (onSocket) => net.createServer({ noDelay: true }, onSocket) },
    options,
    accept,
    log,
  );
}

/**
 * Serves the sockets of a node:net (or node:tls) server as `transport` says. Shared by every socket
 * transport: the PROXY header, the connection count, and a stop that waits for every connection.
 */
export function serveSockets(
  transport: SocketTransport,
  { host, port, proxy }: SocketListenerOptions,
  accept: Acceptor,
  log: Logger,
): Promise<Listener> {
  const { type } = transport;
  const describe = transport.describe ?? (() => ({}));
  let open = 0;
  let drained: (() => void) | null = null;
  /** Sockets not yet connections (sending a PROXY header or a WebSocket upgrade): close() drops them. */
  const pending = new Set<net.Socket>();
  // One callback per listener, not per connection.
  const ended = () => {
    if (--open === 0) drained?.();
  };
  const start = (socket: net.Socket, proxied?: ProxiedPeer, first?: Uint8Array, framing?: Framing) => {
    pending.delete(socket);
    const connection = new SocketConnection(socket, type, describe, log, proxied, framing);
    const handler = accept(connection);
    // Refused: a WebSocket client gets a close frame (its upgrade has been answered already).
    if (!handler) return framing ? connection.close() : void socket.destroy();
    open++;
    connection.start(handler, ended, first);
  };
  const wait = (socket: net.Socket) => {
    pending.add(socket);
    socket.once("close", () => pending.delete(socket));
  };
  const serve = (socket: net.Socket, proxied?: ProxiedPeer, first?: Uint8Array) => {
    if (!transport.handshake) return start(socket, proxied, first);
    wait(socket);
    transport.handshake(socket, first, (framing, rest) => start(socket, proxied, rest, framing));
  };
  const reader = proxy ? new ProxyHeaderReader(proxy, type, log, serve) : undefined;
  const server = transport.create((socket) => {
    if (!reader) return serve(socket);
    wait(socket);
    reader.read(socket);
  });
  // node calls back from close() only once every connection has ended, so close() just stops accepting
  // and drained() waits for that callback.
  let closed: Promise<void> | undefined;
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port }, () => {
      server.off("error", reject);
      logAcceptFailures(server, type, host, port, log);
      resolve({
        type,
        host,
        port: (server.address() as net.AddressInfo).port,
        close() {
          closed ??= new Promise((done) => server.close(() => done()));
          for (const socket of pending) socket.destroy();
          transport.stop?.();
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
  readonly #framing: Framing | undefined;
  readonly #outbox: Outbox;
  #closing = false;

  constructor(
    socket: net.Socket,
    type: PeerInfo["transport"],
    describe: (socket: net.Socket) => Partial<PeerInfo>,
    log: Logger,
    proxied?: ProxiedPeer,
    framing?: Framing,
  ) {
    this.#socket = socket;
    this.#type = type;
    this.#describe = describe;
    this.#proxied = proxied;
    this.#framing = framing;
    this.#log = log;
    this.#outbox = new Outbox(
      framing
        ? (bytes) => {
          if (!socket.destroyed) framing.send(bytes);
        }
        : (bytes) => {
          if (!socket.destroyed) socket.write(bytes);
        },
    );
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
    this.#close();
  }

  /** Sends what is queued, then the framing's close (`closing` says why, if not a normal close), then ends. */
  #close(closing?: Closing): void {
    if (this.#closing) return;
    this.#outbox.flush();
    this.#closing = true;
    if (!this.#socket.destroyed) this.#framing?.close(closing);
    this.#socket.end();
    // A peer that does not read never lets `end` finish; do not wait for it forever.
    const linger = setTimeout(() => this.#socket.destroy(), CLOSE_LINGER_MS);
    this.#socket.once("close", () => clearTimeout(linger));
  }

  /** Feeds the handler (`first`, then what the socket reads) until it closes, then tells it and `ended`, once. */
  start(handler: ConnectionHandler, ended: () => void, first?: Uint8Array): void {
    const socket = this.#socket;
    const framing = this.#framing;
    const deliver = (chunk: Uint8Array) => {
      // node:net reads each chunk into fresh memory (measured), so it is handed over as it is, a Buffer. (A
      // plain Uint8Array view of it cost fan-in QoS 0 about a quarter of its throughput in Deno 2.9.)
      if (!guard(this.#log, this, () => handler.data(chunk))) socket.destroy();
    };
    const data = framing
      ? (chunk: Uint8Array) => {
        if (this.#closing) return;
        const closing = framing.receive(chunk, deliver);
        if (closing) this.#close(closing);
      }
      : deliver;
    socket.on("data", data);
    socket.on("error", ignore);
    socket.once("close", () => {
      this.#closing = true;
      this.#outbox.discard();
      guard(this.#log, this, () => handler.closed());
      ended();
    });
    // What arrived with a PROXY header or a WebSocket upgrade, past it.
    if (first !== undefined && first.length > 0) data(first);
  }
}

/** A reset or a write to a closed peer: the close event that follows is what the handler hears. */
function ignore(): void {}
