/**
 * MQTT over WebSocket (`ws`) and WebSocket over TLS (`wss`) through `Deno.serve` and `Deno.upgradeWebSocket`.
 *
 * Each binary message is a chunk of the MQTT byte stream, as a TCP read is: a packet may span messages and a
 * message may hold several packets (MQTT 5.0 section 6). Everything else an HTTP client can send gets an
 * HTTP answer that says what is wrong, and never reaches the protocol layer.
 */

import type { WebSocketListenerConfig } from "../config/schema.ts";
import { type Logger, oncePerKind } from "../observe/log.ts";
import {
  type Acceptor,
  type Connection,
  type ConnectionHandler,
  guard,
  type Listener,
  type PeerInfo,
} from "./connection.ts";
import { Outbox } from "./outbox.ts";
import { loadServerCertificate } from "./tls.ts";

/** The sub-protocols MQTT over WebSocket is registered under, in order of preference ("mqttv3.1" is 3.1's). */
const SUB_PROTOCOLS = ["mqtt", "mqttv3.1"];

/** How long close() waits for the peer's half of the closing handshake before the connection is dropped. */
const CLOSE_LINGER_MS = 1000;

/** WebSocket close codes (RFC 6455 section 7.4.1). */
const NORMAL_CLOSURE = 1000;
const UNSUPPORTED_DATA = 1003;
const INTERNAL_ERROR = 1011;

export async function listenWebSocket(
  config: WebSocketListenerConfig,
  accept: Acceptor,
  log: Logger,
): Promise<Listener> {
  const certificate = config.type === "wss" ? await loadServerCertificate(config) : undefined;
  const type = config.type;
  const refused = oncePerKind(log);
  let accepting = true;
  let open = 0;
  let drained: (() => void) | null = null;
  const ended = () => {
    if (--open === 0) drained?.();
  };

  /** An HTTP answer instead of an upgrade: logged once per kind, since any HTTP client can cause it. */
  const refuse = (status: number, why: string, from: Deno.NetAddr, headers?: HeadersInit) => {
    refused(why, `${type} request from ${from.hostname} refused: ${why}`);
    return new Response(`${why}\n`, { status, headers });
  };

  const handler = (request: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Response => {
    // Read now: Deno forgets the request's address once it has been upgraded.
    const from = info.remoteAddr;
    if (!accepting) return new Response("shutting down\n", { status: 503 });
    if (new URL(request.url).pathname !== config.path) {
      return refuse(404, `no MQTT endpoint at this path; it is ${config.path}`, from);
    }
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return refuse(426, `MQTT over WebSocket: ${config.path} needs a WebSocket upgrade`, from, {
        upgrade: "websocket",
      });
    }
    const offered = request.headers.get("sec-websocket-protocol")?.split(",").map((p) => p.trim()) ?? [];
    const protocol = SUB_PROTOCOLS.find((p) => offered.includes(p));
    if (!protocol) {
      return refuse(
        400,
        `WebSocket sub-protocol mqtt required (offered: ${offered.join(", ") || "none"})`,
        from,
      );
    }
    let upgraded: { socket: WebSocket; response: Response };
    try {
      // MQTT's keep-alive watches the connection; a WebSocket ping timer per connection would only cost.
      upgraded = Deno.upgradeWebSocket(request, { protocol, idleTimeout: 0 });
    } catch (error) {
      return refuse(400, `bad WebSocket upgrade: ${error instanceof Error ? error.message : error}`, from);
    }
    const { socket, response } = upgraded;
    const connection = new WebSocketConnection(socket, {
      transport: type,
      address: from.hostname,
      port: from.port,
    }, log);
    socket.onopen = () => {
      const handler = accept(connection);
      if (!handler) return socket.close(NORMAL_CLOSURE);
      open++;
      connection.start(handler, ended);
    };
    return response;
  };

  // Binds at once, and throws (AddrInUse and the like) if it cannot.
  const server = Deno.serve({
    hostname: config.host,
    port: config.port,
    ...certificate,
    onListen: () => {},
    onError: (error) => {
      refused("error", `${type} request failed: ${error instanceof Error ? error.message : error}`);
      return new Response("internal error\n", { status: 500 });
    },
  }, handler);

  return {
    type,
    host: config.host,
    port: server.addr.port,
    // Deno.serve's shutdown() would also drop the open WebSockets; they are the handler's to close, so
    // close() only turns new requests away and the server goes once they have ended.
    close() {
      accepting = false;
      return Promise.resolve();
    },
    async drained() {
      if (open > 0) await new Promise<void>((done) => drained = done);
      await server.shutdown();
    },
  };
}

class WebSocketConnection implements Connection {
  readonly peer: PeerInfo;
  readonly #socket: WebSocket;
  readonly #log: Logger;
  readonly #outbox: Outbox;
  #closing = false;

  constructor(socket: WebSocket, peer: PeerInfo, log: Logger) {
    this.peer = peer;
    this.#socket = socket;
    this.#log = log;
    socket.binaryType = "arraybuffer";
    this.#outbox = new Outbox((bytes) => {
      if (socket.readyState === WebSocket.OPEN) socket.send(bytes);
    });
  }

  get buffered(): number {
    return this.#outbox.queued + this.#socket.bufferedAmount;
  }

  write(bytes: Uint8Array): void {
    this.writeEdited(bytes, -1, 0, 0);
  }

  writeEdited(bytes: Uint8Array, at: number, value: number, flags: number): void {
    if (!this.#closing) this.#outbox.add(bytes, at, value, flags);
  }

  close(code = NORMAL_CLOSURE, reason?: string): void {
    if (this.#closing) return;
    this.#outbox.flush();
    this.#closing = true;
    this.#socket.close(code, reason);
    // A peer that never answers the close frame would keep the connection open; do not wait for it forever.
    const linger = setTimeout(() => this.#drop(), CLOSE_LINGER_MS);
    this.#socket.addEventListener("close", () => clearTimeout(linger));
  }

  /** Feeds the handler until the WebSocket closes, then tells it and `ended`, once. */
  start(handler: ConnectionHandler, ended: () => void): void {
    const socket = this.#socket;
    socket.onmessage = (event: MessageEvent<ArrayBuffer | string>) => {
      if (this.#closing) return;
      if (typeof event.data === "string") {
        // MQTT 5.0 section 6: a frame that is not binary closes the connection.
        return this.close(UNSUPPORTED_DATA, "MQTT needs binary frames");
      }
      // A fresh ArrayBuffer per message: the handler may keep views into it.
      if (!guard(this.#log, this, () => handler.data(new Uint8Array(event.data as ArrayBuffer)))) {
        this.close(INTERNAL_ERROR);
      }
    };
    socket.onerror = ignore;
    socket.addEventListener("close", () => {
      this.#closing = true;
      this.#outbox.discard();
      guard(this.#log, this, () => handler.closed());
      ended();
    }, { once: true });
  }

  /** Ends the connection without waiting for the peer: a close frame it does not answer. */
  #drop(): void {
    // Deno has no way to abort a WebSocket, but a second close() after the first was sent does not wait.
    if (this.#socket.readyState !== WebSocket.CLOSED) this.#socket.close();
  }
}

/** A reset or a failed send: the close event that follows is what the handler hears. */
function ignore(): void {}
