/**
 * How a client's bytes reach the broker. The engine sees a ByteStream whatever the transport: a TCP or TLS
 * connection is one as it is, so those paths call Deno's own read and write with nothing in between; MQTT
 * over WebSocket goes through WsConn.
 */

import type { Transport } from "./options.ts";
import { WsConn } from "./websocket.ts";

/** What the engine needs of a connection. Deno.TcpConn and Deno.TlsConn are ByteStreams. */
export interface ByteStream {
  /** Reads into `into` and resolves with the byte count; null at the end of the stream. */
  read(into: Uint8Array): Promise<number | null>;
  /** Writes some of `bytes` (at least one) and resolves with how many; `bytes` is the caller's again then. */
  write(bytes: Uint8Array): Promise<number>;
  close(): void;
}

export interface DialOptions {
  transport: Transport;
  host: string;
  port: number;
  /** PEM CA certificates trusted for tls and wss, beside the system's. */
  caCerts: readonly string[];
  /** Request path of the WebSocket handshake. */
  wsPath: string;
}

/** Opens connections of one transport; close() frees what it holds for them once every one is closed. */
export interface Dialer {
  /** A connection ready for MQTT: TCP_NODELAY set, TLS handshake done, WebSocket open with "mqtt". */
  dial(): Promise<ByteStream>;
  close(): void;
}

export function dialer(o: DialOptions): Dialer {
  switch (o.transport) {
    case "tcp":
      return { dial: () => connectTcp(o), close() {} };
    case "tls":
      return { dial: () => connectTls(o), close() {} };
    case "ws":
    case "wss": {
      const url = webSocketUrl(o);
      // WebSocket takes no CA certificates itself; an HTTP client with them can carry its handshake.
      const client = o.transport === "wss" && o.caCerts.length > 0
        ? Deno.createHttpClient({ caCerts: [...o.caCerts] })
        : undefined;
      return { dial: () => WsConn.open(url, client), close: () => client?.close() };
    }
  }
}

/** `ws://127.0.0.1:1883/mqtt`, `wss://[::1]:8884/mqtt`. */
export function webSocketUrl(o: Pick<DialOptions, "transport" | "host" | "port" | "wsPath">): string {
  const host = o.host.includes(":") ? `[${o.host}]` : o.host;
  return `${o.transport}://${host}:${o.port}${o.wsPath}`;
}

async function connectTcp(o: DialOptions): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: o.host, port: o.port });
  conn.setNoDelay(true);
  return conn;
}

/**
 * TLS over a TCP connection that has TCP_NODELAY (Deno.connectTls cannot set it, and without it small
 * writes wait for the peer's delayed ACK). The handshake is done here, so that a certificate the client
 * does not trust fails the connect rather than the first read.
 */
async function connectTls(o: DialOptions): Promise<Deno.TlsConn> {
  const tcp = await connectTcp(o);
  let conn: Deno.TlsConn;
  try {
    conn = await Deno.startTls(tcp, { hostname: o.host, caCerts: [...o.caCerts] });
  } catch (error) {
    closeQuietly(tcp);
    throw error;
  }
  try {
    await conn.handshake();
  } catch (error) {
    closeQuietly(conn);
    throw error;
  }
  return conn;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // startTls took it over, or it is closed already.
  }
}

/** The CA certificates of a PEM file, for DialOptions.caCerts; none for "". */
export async function readCaCerts(path: string): Promise<string[]> {
  if (path === "") return [];
  const pem = await Deno.readTextFile(path);
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) throw new Error(`${path}: no PEM certificate in it`);
  return [pem];
}
