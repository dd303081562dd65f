/**
 * MQTT over WebSocket written by hand, for the ws and wss listeners: a byte-level MQTT client on Deno's own
 * `WebSocket` (each `sendBytes` one binary message, so a test decides exactly how the MQTT stream is cut),
 * a WebSocket opened on a raw TCP socket (an HTTP upgrade written by hand, masked frames built here) for a
 * peer that misbehaves below the WebSocket API, and a plain HTTP exchange for what the listener answers
 * instead of an upgrade.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import mqttPacket from "mqtt-packet";
import type * as MP from "mqtt-packet";
import { concat } from "./bytes.ts";
import { connectPacket, type Packet, summary } from "./raw.ts";
import { within } from "./wait.ts";

/** `ws://127.0.0.1:PORT/path` (or wss). */
export function wsUrl(port: number, path = "/mqtt", scheme: "ws" | "wss" = "ws"): string {
  return `${scheme}://127.0.0.1:${port}${path}`;
}

/** How a WebSocket ended: the close event's code and reason, and whether an error event came first. */
export interface WsEnd {
  code: number;
  reason: string;
  wasClean: boolean;
  errored: boolean;
  /** Whether the socket was ever open (false: the upgrade was refused). */
  opened: boolean;
}

/**
 * An MQTT client on Deno's `WebSocket`: binary messages in are fed to mqtt-packet's parser as one byte
 * stream; `sendBytes` sends one binary message. Disposing closes the socket and waits for its close event,
 * so nothing outlives the test.
 */
export class WsClient implements AsyncDisposable {
  readonly socket: WebSocket;
  readonly #packets: Packet[] = [];
  // deno-lint-ignore no-explicit-any -- mqtt-packet's Parser typings omit its event payloads
  readonly #parser: any;
  readonly #ended: Promise<WsEnd>;
  #end: WsEnd | null = null;
  #opened = false;
  #parseError: Error | null = null;
  #wake: (() => void) | null = null;
  /** Every binary message's length, in order. */
  readonly messageSizes: number[] = [];

  /** Starts opening `url`, offering `protocols`; `version` tells the decoder how to read the broker. */
  constructor(url: string, protocols?: string | string[], version: 3 | 4 | 5 = 4) {
    this.socket = protocols === undefined ? new WebSocket(url) : new WebSocket(url, protocols);
    this.socket.binaryType = "arraybuffer";
    this.#parser = mqttPacket.parser({ protocolVersion: version });
    this.#parser.on("packet", (packet: Packet) => {
      this.#packets.push(packet);
      this.#wake?.();
    });
    this.#parser.on("error", (error: Error) => {
      this.#parseError = new Error(`the broker sent bytes the test client cannot parse: ${error.message}`);
      this.#wake?.();
    });
    let errored = false;
    this.socket.onopen = () => this.#opened = true;
    this.socket.onerror = () => errored = true;
    this.socket.onmessage = (event: MessageEvent<ArrayBuffer | string>) => {
      if (typeof event.data === "string") {
        this.#parseError = new Error(`the broker sent a text message: ${JSON.stringify(event.data)}`);
      } else {
        this.messageSizes.push(event.data.byteLength);
        this.#parser.parse(Buffer.from(event.data));
      }
      this.#wake?.();
    };
    this.#ended = new Promise((resolve) => {
      this.socket.onclose = (event) => {
        this.#end = {
          code: event.code,
          reason: event.reason,
          wasClean: event.wasClean,
          errored,
          opened: this.#opened,
        };
        resolve(this.#end);
        this.#wake?.();
      };
    });
  }

  /** Opens `url` and waits until the socket is open; rejects (after the socket has closed) if it is refused. */
  static async open(url: string, protocols?: string | string[], version: 3 | 4 | 5 = 4): Promise<WsClient> {
    const client = new WsClient(url, protocols, version);
    const opened = new Promise<void>((resolve) => client.socket.addEventListener("open", () => resolve()));
    const outcome = await within(Promise.race([opened, client.#ended]), `the WebSocket ${url} to open`);
    if (outcome !== undefined) {
      throw new Error(`the WebSocket ${url} closed before it opened: ${JSON.stringify(outcome)}`);
    }
    return client;
  }

  /** Opens `url` offering "mqtt" and completes CONNECT/CONNACK (accepted) with `fields`. */
  static async connected(url: string, fields: Partial<MP.IConnectPacket> = {}): Promise<WsClient> {
    const version = fields.protocolVersion ?? 4;
    const client = await WsClient.open(url, "mqtt", version);
    try {
      const connack = await client.connect(fields);
      const code = version === 5 ? connack.reasonCode : connack.returnCode;
      assert.equal(code, 0, `CONNECT refused: ${JSON.stringify(connack)}`);
    } catch (error) {
      await client.close();
      throw error;
    }
    return client;
  }

  /** Opens a WebSocket the broker is expected to refuse; returns how it ended (`opened` false if refused). */
  static async refused(url: string, protocols?: string | string[]): Promise<WsEnd> {
    const client = new WsClient(url, protocols);
    // Let in after all: close it, so the caller sees `opened` true rather than a timeout.
    client.socket.addEventListener("open", () => client.socket.close());
    return await within(client.#ended, `the WebSocket ${url} to close`);
  }

  /** The sub-protocol the broker chose. */
  get protocol(): string {
    return this.socket.protocol;
  }

  /** The close, once it has happened (without waiting). */
  get end(): WsEnd | null {
    return this.#end;
  }

  /** Sends `bytes` as one binary message. */
  sendBytes(bytes: Uint8Array): void {
    this.socket.send(bytes);
  }

  /** Sends one packet, encoded by mqtt-packet, as one binary message. */
  send(packet: Packet, version: 3 | 4 | 5 = 4): void {
    this.sendBytes(encode(packet, version));
  }

  /** Sends CONNECT (3.1.1 clean session unless overridden) and returns the CONNACK. */
  async connect(fields: Partial<MP.IConnectPacket> = {}): Promise<MP.IConnackPacket> {
    this.send(connectPacket(fields), fields.protocolVersion ?? 4);
    return await this.expect("connack");
  }

  /** The next packet from the broker; rejects if the socket closes first or nothing comes in time. */
  async next(ms?: number): Promise<Packet> {
    await within(
      new Promise<void>((resolve) => {
        const check = () => {
          if (this.#packets.length === 0 && this.#end === null && this.#parseError === null) return;
          this.#wake = null;
          resolve();
        };
        this.#wake = check;
        check();
      }),
      "a packet from the broker over WebSocket",
      ms,
    );
    if (this.#parseError) throw this.#parseError;
    const packet = this.#packets.shift();
    if (!packet) {
      throw new Error(
        `the broker closed the WebSocket instead of sending a packet: ${JSON.stringify(this.#end)}`,
      );
    }
    return packet;
  }

  /** The next packet, asserting its type. */
  async expect<C extends Packet["cmd"]>(cmd: C, ms?: number): Promise<Extract<Packet, { cmd: C }>> {
    const packet = await this.next(ms);
    if (packet.cmd !== cmd) throw new Error(`expected ${cmd}, got ${JSON.stringify(summary(packet))}`);
    return packet as Extract<Packet, { cmd: C }>;
  }

  /** Waits for the broker to close the WebSocket; returns how, and the packets it sent first. */
  async closedByBroker(ms?: number): Promise<WsEnd & { packets: Packet[] }> {
    const end = await within(this.#ended, "the broker to close the WebSocket", ms);
    return { ...end, packets: this.#packets.splice(0) };
  }

  /** Closes from our side (if still open) and waits for the close event. */
  async close(): Promise<WsEnd> {
    if (this.socket.readyState === WebSocket.CONNECTING || this.socket.readyState === WebSocket.OPEN) {
      this.socket.close();
    }
    return await this.#ended;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** One MQTT packet's bytes, as mqtt-packet encodes it at `version`. */
export function encode(packet: Packet, version: 3 | 4 | 5 = 4): Uint8Array<ArrayBuffer> {
  return new Uint8Array(mqttPacket.generate(packet, { protocolVersion: version }));
}

// --- A WebSocket on a raw TCP socket --------------------------------------------------------------------

/** WebSocket opcodes (RFC 6455 section 5.2). */
export const Opcode = {
  continuation: 0x0,
  text: 0x1,
  binary: 0x2,
  close: 0x8,
  ping: 0x9,
  pong: 0xa,
} as const;

/** One client frame, masked as RFC 6455 requires of a client: FIN unless `fin` is false. */
export function maskedFrame(opcode: number, payload: Uint8Array, fin = true): Uint8Array {
  const n = payload.length;
  const length = n < 126 ? [0x80 | n] : n < 0x10000 ? [0x80 | 126, n >> 8, n & 0xff] : [
    0x80 | 127,
    ...[0, 0, 0, 0],
    (n >>> 24) & 0xff,
    (n >>> 16) & 0xff,
    (n >>> 8) & 0xff,
    n & 0xff,
  ];
  const header = [(fin ? 0x80 : 0) | opcode, ...length];
  const mask = crypto.getRandomValues(new Uint8Array(4));
  const out = new Uint8Array(header.length + 4 + n);
  out.set(header);
  out.set(mask, header.length);
  const body = header.length + 4;
  for (let i = 0; i < n; i++) out[body + i] = payload[i] ^ mask[i & 3];
  return out;
}

/** The HTTP request that upgrades `path` to a WebSocket offering `protocol` (none if null). */
export function upgradeRequest(path = "/mqtt", protocol: string | null = "mqtt"): string {
  return [
    `GET ${path} HTTP/1.1`,
    "Host: 127.0.0.1",
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))))}`,
    "Sec-WebSocket-Version: 13",
    ...(protocol === null ? [] : [`Sec-WebSocket-Protocol: ${protocol}`]),
    "",
    "",
  ].join("\r\n");
}

/**
 * A TCP connection upgraded to a WebSocket by hand: the broker's 101 response has been read (and nothing
 * after it). The test then writes frames with `maskedFrame` and reads, or never reads, as it likes.
 */
export async function rawWebSocket(port: number, protocol = "mqtt"): Promise<Deno.TcpConn> {
  return await upgraded(await Deno.connect({ hostname: "127.0.0.1", port }), protocol);
}

/** TLS options for {@linkcode rawSecureWebSocket}: the CA to trust, and a client certificate to offer. */
export interface RawTlsOptions {
  /** PEM of the CA that signed the server's certificate. */
  ca: string;
  /** PEM certificate and key to offer as the client's, if any. */
  cert?: string;
  key?: string;
}

/**
 * {@linkcode rawWebSocket} over TLS (a wss listener): Deno's own TLS client, trusting `tls.ca` and offering
 * `tls.cert`/`tls.key` if given. Rejects if the TLS handshake or the upgrade fails.
 */
export async function rawSecureWebSocket(
  port: number,
  tls: RawTlsOptions,
  protocol = "mqtt",
): Promise<Deno.TlsConn> {
  const conn = await Deno.connectTls({
    hostname: "127.0.0.1",
    port,
    caCerts: [tls.ca],
    ...(tls.cert && tls.key ? { cert: tls.cert, key: tls.key } : {}),
  });
  return await upgraded(conn, protocol);
}

/**
 * Upgrades `conn` (plain, or TLS already started on it) to a WebSocket at /mqtt offering `protocol`: the
 * broker's 101 response has been read, and nothing after it. Closes `conn` if that fails.
 */
export async function upgraded<C extends Deno.Conn>(conn: C, protocol = "mqtt"): Promise<C> {
  try {
    await writeAll(conn, new TextEncoder().encode(upgradeRequest("/mqtt", protocol)));
    const { head, rest } = await readHead(conn);
    assert.match(head, /^HTTP\/1\.1 101 /, `the upgrade was refused: ${head}`);
    assert.equal(rest.length, 0, "nothing after the 101 response");
    return conn;
  } catch (error) {
    conn.close();
    throw error;
  }
}

/** One frame from the broker: server frames are unmasked. */
export interface ServerFrame {
  fin: boolean;
  opcode: number;
  payload: Uint8Array;
}

/** A close frame's payload: its code (1005, "no status", if it has none) and reason. */
export function closeOf(frame: ServerFrame): { code: number; reason: string } {
  assert.equal(frame.opcode, Opcode.close, `a close frame, not opcode ${frame.opcode}`);
  const code = frame.payload.length >= 2 ? (frame.payload[0] << 8) | frame.payload[1] : 1005;
  return { code, reason: new TextDecoder().decode(frame.payload.subarray(2)) };
}

/**
 * Reads the broker's frames on a raw WebSocket connection until `done` says so or the connection ends
 * (`eof`: closed or reset by the broker), starting with `options.initial` (bytes already read off `conn`).
 * Frames are kept whole; a partial one at the end is dropped.
 */
export async function readServerFrames(
  conn: Deno.Conn,
  done: (frames: ServerFrame[]) => boolean,
  what = "frames from the broker",
  options: { ms?: number; initial?: Uint8Array } = {},
): Promise<{ frames: ServerFrame[]; eof: boolean }> {
  const frames: ServerFrame[] = [];
  let bytes: Uint8Array = options.initial ?? new Uint8Array(0);
  const buffer = new Uint8Array(16 * 1024);
  /** Moves every whole frame in `bytes` to `frames`. */
  const parse = () => {
    while (bytes.length >= 2) {
      assert.equal(bytes[1] & 0x80, 0, "a server frame is not masked");
      let length = bytes[1] & 0x7f;
      let at = 2;
      if (length === 126) {
        if (bytes.length < 4) break;
        length = (bytes[2] << 8) | bytes[3];
        at = 4;
      } else if (length === 127) {
        if (bytes.length < 10) break;
        length = Number(new DataView(bytes.buffer, bytes.byteOffset + 2, 8).getBigUint64(0));
        at = 10;
      }
      if (bytes.length < at + length) break;
      frames.push({
        fin: (bytes[0] & 0x80) !== 0,
        opcode: bytes[0] & 0x0f,
        payload: bytes.slice(at, at + length),
      });
      bytes = bytes.slice(at + length);
    }
  };
  return await within(
    (async () => {
      while (true) {
        parse();
        if (done(frames)) return { frames, eof: false };
        let n: number | null;
        try {
          n = await conn.read(buffer);
        } catch {
          n = null; // reset by the broker
        }
        if (n === null) return { frames, eof: true };
        bytes = concat([bytes, buffer.subarray(0, n)]);
      }
    })(),
    what,
    options.ms,
  );
}

/** An HTTP response as read off the socket. */
export interface HttpAnswer {
  status: number;
  headers: Headers;
  body: string;
}

/**
 * Sends `request` (written by hand) on a fresh TCP connection and reads the response: head, then
 * content-length bytes of body. The connection is closed on return.
 */
export async function httpExchange(port: number, request: string): Promise<HttpAnswer> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await writeAll(conn, new TextEncoder().encode(request));
    const { head, rest } = await readHead(conn);
    const [statusLine, ...lines] = head.split("\r\n");
    const headers = new Headers();
    for (const line of lines) {
      const colon = line.indexOf(":");
      headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
    }
    const length = Number(headers.get("content-length") ?? 0);
    let body: Uint8Array = rest;
    while (body.length < length) {
      const more = await readSome(conn);
      if (more === null) break;
      body = concat([body, more]);
    }
    return { status: Number(statusLine.split(" ")[1]), headers, body: new TextDecoder().decode(body) };
  } finally {
    conn.close();
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

async function readSome(conn: Deno.Conn): Promise<Uint8Array | null> {
  const buffer = new Uint8Array(16 * 1024);
  const n = await within(conn.read(buffer), "bytes from the broker");
  return n === null ? null : buffer.slice(0, n);
}

/** Reads up to the blank line that ends an HTTP head; returns the head and any bytes read past it. */
export async function readHead(conn: Deno.Conn): Promise<{ head: string; rest: Uint8Array }> {
  let bytes: Uint8Array = new Uint8Array(0);
  while (true) {
    const text = new TextDecoder().decode(bytes);
    const end = text.indexOf("\r\n\r\n");
    if (end >= 0) {
      const headLength = new TextEncoder().encode(text.slice(0, end + 4)).length;
      return { head: text.slice(0, end), rest: bytes.slice(headLength) };
    }
    const more = await readSome(conn);
    if (more === null) throw new Error(`the broker closed the connection mid-response: ${text}`);
    bytes = concat([bytes, more]);
  }
}
