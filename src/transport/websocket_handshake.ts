/**
 * The WebSocket opening handshake (RFC 6455 section 4.2), server side: an HTTP/1.1 upgrade request in, the
 * 101 answer or an HTTP refusal that says what is wrong out. Pure: no I/O.
 */

import { createHash } from "node:crypto";

/** The sub-protocols MQTT over WebSocket is registered under, in order of preference ("mqttv3.1" is 3.1's). */
const SUB_PROTOCOLS = ["mqtt", "mqttv3.1"];

/** A request head longer than this is refused: an upgrade request is a few hundred bytes. */
const MAX_REQUEST = 8192;

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

export type Handshake =
  | { readonly kind: "incomplete" }
  /** Answer with `response` (an HTTP refusal), then close; `why` is for the log. */
  | {
    readonly kind: "refuse";
    readonly response: Uint8Array;
    readonly why: string;
    /** The kind of refusal, for logging each kind once: `why` may quote what the client sent. */
    readonly reason: string;
  }
  /** Answer with `response` (101); the connection carries WebSocket frames from byte `length` on. */
  | { readonly kind: "upgrade"; readonly response: Uint8Array; readonly length: number };

/**
 * Reads the request head at the start of `bytes`, for the endpoint at `path`; the first `seen` bytes were
 * searched for the head's end before (a request that comes in pieces is searched once, not once a piece).
 */
export function readHandshake(bytes: Uint8Array, path: string, seen = 0): Handshake {
  const end = headEnd(bytes, Math.max(0, seen - 3));
  if (end < 0) {
    return bytes.length < MAX_REQUEST
      ? { kind: "incomplete" }
      : refuse(431, "Request Header Fields Too Large", "request head over 8 KiB");
  }
  const lines = new TextDecoder("latin1").decode(bytes.subarray(0, end)).split("\r\n");
  const [method, target, version] = lines[0].split(" ");
  // RFC 6455 section 4.1: an upgrade is an HTTP/1.1 GET with a Host header.
  if (!target || version !== "HTTP/1.1") return refuse(400, "Bad Request", "not an HTTP/1.1 request");
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0) return refuse(400, "Bad Request", "malformed header line");
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    // Repeated headers are one comma-separated list (RFC 9110 section 5.3).
    headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
  }
  const requestPath = target.split("?")[0];
  if (requestPath !== path) {
    return refuse(404, "Not Found", `no MQTT endpoint at this path; it is ${path}`);
  }
  if (!tokens(headers.get("upgrade")).includes("websocket")) {
    return refuse(426, "Upgrade Required", `MQTT over WebSocket: ${path} needs a WebSocket upgrade`, [
      "Upgrade: websocket",
      "Connection: Upgrade",
    ]);
  }
  if (method !== "GET") {
    const what = `a WebSocket upgrade is a GET, not ${clip(method, 20)}`;
    return refuse(405, "Method Not Allowed", what, ["Allow: GET"], "not a GET");
  }
  if (!headers.has("host")) return refuse(400, "Bad Request", "no Host header");
  if (!tokens(headers.get("connection")).includes("upgrade")) {
    return refuse(400, "Bad Request", "Connection header without upgrade");
  }
  if (headers.get("sec-websocket-version") !== "13") {
    return refuse(426, "Upgrade Required", "WebSocket version 13 required", ["Sec-WebSocket-Version: 13"]);
  }
  const key = headers.get("sec-websocket-key") ?? "";
  if (!/^[A-Za-z0-9+/]{22}==$/.test(key)) return refuse(400, "Bad Request", "bad Sec-WebSocket-Key");
  const offered = headers.get("sec-websocket-protocol")?.split(",").map((p) => p.trim()) ?? [];
  const protocol = SUB_PROTOCOLS.find((p) => offered.includes(p));
  if (!protocol) {
    const list = clip(offered.filter((p) => p !== "").join(", ") || "none", 100);
    const why = `WebSocket sub-protocol mqtt required (offered: ${list})`;
    return refuse(400, "Bad Request", why, [], "no mqtt sub-protocol");
  }
  const accept = createHash("sha1").update(key + GUID).digest("base64");
  const response = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
    `Sec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: ${protocol}\r\n\r\n`;
  return { kind: "upgrade", response: new TextEncoder().encode(response), length: end + 4 };
}

/** Where the blank line ending the head starts (searching from `from`), or -1. */
function headEnd(bytes: Uint8Array, from: number): number {
  for (let i = from; i + 3 < bytes.length && i < MAX_REQUEST; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) return i;
  }
  return -1;
}

/** A header's comma-separated tokens, lower-cased. */
function tokens(value: string | undefined): string[] {
  return value?.toLowerCase().split(",").map((t) => t.trim()) ?? [];
}

/** What the client sent, cut short for a log line and a response body. */
function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}...` : text;
}

/** An HTTP refusal whose body is the reason, one line, so curl or a browser shows it. */
function refuse(
  status: number,
  phrase: string,
  why: string,
  headers: string[] = [],
  reason = why,
): Handshake {
  const body = new TextEncoder().encode(`${why}\n`);
  const head = [
    `HTTP/1.1 ${status} ${phrase}`,
    "Content-Type: text/plain; charset=utf-8",
    `Content-Length: ${body.length}`,
    "Connection: close",
    ...headers,
  ].join("\r\n") + "\r\n\r\n";
  const head8 = new TextEncoder().encode(head);
  const response = new Uint8Array(head8.length + body.length);
  response.set(head8);
  response.set(body, head8.length);
  return { kind: "refuse", response, why, reason };
}
