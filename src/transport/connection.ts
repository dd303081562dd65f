/**
 * What every transport gives the protocol layer: bytes in, bytes out, and facts about the peer. Nothing
 * here knows MQTT, and nothing in the protocol layer knows which transport it is on.
 */

import type net from "node:net";
import type { Logger } from "../observe/log.ts";

/** `host:port` as logs and messages show it, an IPv6 host in brackets. */
export function formatAddress(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Runs a handler callback. A bug in packet handling closes this connection only (the caller closes it when
 * this returns false), with one line that says where; never a crash.
 */
export function guard(log: Logger, connection: Connection, action: () => void): boolean {
  try {
    action();
    return true;
  } catch (error) {
    log.error(
      `internal error on connection ${formatAddress(connection.peer.address, connection.peer.port)}: ` +
        `${error instanceof Error ? error.stack : error}`,
    );
    return false;
  }
}

export interface PeerInfo {
  /** Listener type the connection arrived on, for logs. */
  readonly transport: "tcp" | "tls" | "ws" | "wss";
  /** The client's address: with a PROXY header, the one it names. */
  readonly address: string;
  readonly port: number;
  /** The proxy the client came through, when a PROXY header named the client; for logs. */
  readonly proxy?: { readonly address: string; readonly port: number };
  /**
   * The client certificate that was verified, if any: part of the client's identity. Verified in the TLS
   * handshake, or by a proxy that says so in its PROXY header (which gives the CN only).
   */
  readonly certificate?: { readonly subject: string; readonly commonName?: string };
}

export interface Connection {
  readonly peer: PeerInfo;
  /** Bytes accepted by `write` and not yet handed to the operating system. */
  readonly buffered: number;
  /** Queues bytes; everything queued in one event-loop turn goes out in one write. */
  write(bytes: Uint8Array): void;
  /**
   * Queues `bytes` to go out with the two bytes at `at` set to `value` (big-endian) and `flags` ORed into the
   * first byte. `bytes` itself is left as it is: it may be shared by many connections, and the edit is made in
   * the copy every queued chunk gets on its way to the socket, so it costs no allocation of its own.
   */
  writeEdited(bytes: Uint8Array, at: number, value: number, flags: number): void;
  /** Sends what is queued (waiting a short linger at most), then closes. Safe to call twice. */
  close(): void;
}

/** The protocol side of a connection: told about every chunk read and, exactly once, about the end. */
export interface ConnectionHandler {
  /**
   * Bytes read. The chunk is the handler's from then on: a transport never reuses its memory (one that reads
   * into a reused buffer hands over a copy), so protocol code may keep views into it instead of copying. It
   * may be a Node Buffer, whose slice() is a view: copy with `copyBytes` (src/protocol/fields.ts).
   */
  data(chunk: Uint8Array): void;
  closed(): void;
}

/** Called for each accepted connection; returning null refuses it (the transport closes it at once). */
export type Acceptor = (connection: Connection) => ConnectionHandler | null;

export interface Listener {
  readonly type: PeerInfo["transport"];
  readonly host: string;
  /** The bound port (differs from the configured one when that was 0). */
  readonly port: number;
  /** Stops accepting at once; open connections are the handler's to close (see `drained`). */
  close(): Promise<void>;
  /** Resolves once every connection accepted here has ended (after the handler closed them). */
  drained(): Promise<void>;
}

/**
 * After start-up, a server's errors are failed accepts (EMFILE, say): one line per kind, not one per
 * attempt, and never an unhandled error event.
 */
export function logAcceptFailures(
  server: net.Server,
  type: string,
  host: string,
  port: number,
  log: Logger,
): void {
  let lastError = "";
  server.on("error", (error: Error) => {
    if (error.message !== lastError) log.warn(`${type} ${host}:${port}: accept failed: ${error.message}`);
    lastError = error.message;
  });
}
