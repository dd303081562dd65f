/**
 * MQTT over WebSocket (`ws`) and WebSocket over TLS (`wss`), served on node:net and node:tls sockets like the
 * tcp and tls listeners, with the opening handshake and the framing of RFC 6455 done here
 * (websocket_handshake.ts, websocket_frames.ts).
 *
 * Not `Deno.serve` with `Deno.upgradeWebSocket`, which the first version used: measured and tested, it cannot
 * set TCP_NODELAY on TLS sockets (wss moved 0.25-0.4x of tcp's messages, with 40 ms stalls of Nagle's
 * algorithm against delayed ACKs), cannot drop a peer that never answers a close frame (a stop waited for
 * it), cannot ask for client certificates, and cannot take a socket whose PROXY header has been read. On
 * sockets, each binary frame's payload goes to the protocol layer as it arrives, as a TCP read does: a
 * packet may span frames and a frame may hold several packets (MQTT 5.0 section 6).
 */

import net from "node:net";
import type { WebSocketListenerConfig } from "../config/schema.ts";
import { type Logger, oncePerKind } from "../observe/log.ts";
import { type Acceptor, formatAddress, type Listener } from "./connection.ts";
import { readPreamble } from "./preamble.ts";
import { type Closing, type Framing, serveSockets, type SocketListenerOptions } from "./tcp.ts";
import { tlsServer } from "./tls.ts";
import { CloseCode, closePayload, frameHeader, FrameReader, Opcode } from "./websocket_frames.ts";
import { readHandshake } from "./websocket_handshake.ts";

/** How long a refused upgrade waits for the client to close its side after the answer. */
const CLOSE_LINGER_MS = 1000;

export async function listenWebSocket(
  config: WebSocketListenerConfig,
  options: SocketListenerOptions,
  /** How long a connection has for its upgrade request, milliseconds (the connect timeout). */
  timeoutMs: number,
  accept: Acceptor,
  log: Logger,
): Promise<Listener> {
  const type = config.type;
  const sockets = type === "wss"
    ? await tlsServer(type, config, timeoutMs, log)
    : { create: (onSocket: (socket: net.Socket) => void) => net.createServer({ noDelay: true }, onSocket) };
  const refused = oncePerKind(log);
  return serveSockets(
    {
      type,
      ...sockets,
      handshake(socket, first, ready) {
        const from = formatAddress(socket.remoteAddress ?? "unknown", socket.remotePort ?? 0);
        socket.on("error", ignore);
        const parse = (bytes: Uint8Array, seen: number) => {
          const handshake = readHandshake(bytes, config.path, seen);
          return handshake.kind === "incomplete" ? undefined : handshake;
        };
        readPreamble(socket, first, timeoutMs, parse, (handshake, bytes) => {
          if (handshake.kind === "refuse") {
            // Any HTTP client can cause this: once per kind at info, then at debug.
            refused(handshake.reason, `${type} request from ${from} refused: ${handshake.why}`);
            socket.end(handshake.response);
            // A client that never closes its side would keep the socket half open; do not wait for it.
            const linger = setTimeout(() => socket.destroy(), CLOSE_LINGER_MS);
            return void socket.once("close", () => clearTimeout(linger));
          }
          socket.write(handshake.response);
          ready(new WebSocketFraming(socket), bytes.subarray(handshake.length));
        }, () => {
          refused(
            "late",
            `${type} connection from ${from} closed: no WebSocket upgrade within ${timeoutMs / 1000} s`,
          );
          socket.destroy();
        });
      },
    },
    options,
    accept,
    log,
  );
}

/** RFC 6455 frames around the MQTT bytes of one connection. */
class WebSocketFraming implements Framing {
  readonly #socket: net.Socket;
  readonly #reader = new FrameReader();
  #closeSent = false;

  constructor(socket: net.Socket) {
    this.#socket = socket;
  }

  send(bytes: Uint8Array): void {
    this.#frame(Opcode.binary, bytes);
  }

  receive(chunk: Uint8Array, data: (bytes: Uint8Array) => void): Closing | undefined {
    return this.#reader.read(chunk, data, (payload) => this.#frame(Opcode.pong, payload));
  }

  close(closing?: Closing): void {
    if (this.#closeSent) return;
    this.#closeSent = true;
    // The peer's own close is answered with a normal one; a refused frame with the code that says why.
    const code = !closing || closing.peer ? CloseCode.normal : closing.code;
    this.#frame(Opcode.close, closePayload(code, closing && !closing.peer ? closing.reason : ""));
  }

  /** One frame, header and payload in one write. */
  #frame(opcode: number, payload: Uint8Array): void {
    const socket = this.#socket;
    // Nothing may follow the close frame (a pong for a ping read in the same chunk, say).
    if (this.#closeSent && opcode !== Opcode.close) return;
    socket.cork();
    socket.write(frameHeader(opcode, payload.length));
    socket.write(payload);
    socket.uncork();
  }
}

/** A reset during the upgrade: the socket closes and nothing else needs to know. */
function ignore(): void {}
