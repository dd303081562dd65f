/**
 * The WebSocket opening handshake, server side (src/transport/websocket_handshake.ts): every refusal with
 * its status line, headers and reason, the 101 answer (Sec-WebSocket-Accept checked against RFC 6455's own
 * example and against SHA-1 computed here with WebCrypto), the sub-protocol chosen, where the frames start,
 * and requests that have not fully arrived.
 */

import assert from "node:assert/strict";
import { type Handshake, readHandshake } from "../../src/transport/websocket_handshake.ts";

const encoder = new TextEncoder();

/** RFC 6455 section 1.3's example key and the accept value it gives. */
const RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ==";
const RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/** A request head: the request line, then `headers` (null drops a default one), then the blank line. */
function request(
  headers: Record<string, string | null> = {},
  line = "GET /mqtt HTTP/1.1",
): string {
  const all: Record<string, string | null> = {
    Host: "broker.example:8080",
    Upgrade: "websocket",
    Connection: "Upgrade",
    "Sec-WebSocket-Key": RFC_KEY,
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Protocol": "mqtt",
    ...headers,
  };
  const lines = Object.entries(all).filter(([, v]) => v !== null).map(([k, v]) => `${k}: ${v}`);
  return [line, ...lines, "", ""].join("\r\n");
}

function read(text: string | Uint8Array, path = "/mqtt"): Handshake {
  return readHandshake(typeof text === "string" ? encoder.encode(text) : text, path);
}

/** A parsed HTTP response: status line, headers (lower-case names), body. */
interface Response {
  statusLine: string;
  headers: Map<string, string>;
  body: string;
}

function parse(bytes: Uint8Array): Response {
  const text = new TextDecoder().decode(bytes);
  const end = text.indexOf("\r\n\r\n");
  assert.ok(end > 0, `a complete head: ${JSON.stringify(text)}`);
  const [statusLine, ...lines] = text.slice(0, end).split("\r\n");
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(": ");
    assert.ok(colon > 0, `header line ${JSON.stringify(line)}`);
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 2);
    // A repeated header is one list (RFC 9110 section 5.3).
    headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
  }
  return { statusLine, headers, body: text.slice(end + 4) };
}

/** Asserts `handshake` is a refusal with `statusLine` and `why`, a well-formed response, `extra` headers. */
function assertRefusal(
  handshake: Handshake,
  statusLine: string,
  why: string,
  extra: Record<string, string> = {},
): void {
  assert.equal(handshake.kind, "refuse", JSON.stringify(handshake));
  if (handshake.kind !== "refuse") return;
  assert.equal(handshake.why, why);
  const response = parse(handshake.response);
  assert.equal(response.statusLine, statusLine);
  assert.equal(response.body, `${why}\n`);
  assert.equal(response.headers.get("content-length"), String(encoder.encode(response.body).length));
  assert.equal(response.headers.get("content-type"), "text/plain; charset=utf-8");
  assert.equal(response.headers.get("connection"), extra.connection ?? "close");
  for (const [name, value] of Object.entries(extra)) assert.equal(response.headers.get(name), value, name);
  assert.equal(response.headers.has("sec-websocket-accept"), false);
}

/** Asserts `handshake` is an upgrade answering `key` with `protocol`; returns it. */
async function assertUpgrade(
  handshake: Handshake,
  protocol: string,
  key = RFC_KEY,
): Promise<Extract<Handshake, { kind: "upgrade" }>> {
  assert.equal(handshake.kind, "upgrade", JSON.stringify(handshake));
  if (handshake.kind !== "upgrade") throw new Error("unreachable");
  const response = parse(handshake.response);
  assert.equal(response.statusLine, "HTTP/1.1 101 Switching Protocols");
  assert.equal(response.headers.get("upgrade"), "websocket");
  assert.equal(response.headers.get("connection"), "Upgrade");
  assert.equal(response.headers.get("sec-websocket-accept"), await acceptFor(key));
  assert.equal(response.headers.get("sec-websocket-protocol"), protocol);
  assert.equal(response.body, "", "nothing after the 101 head");
  return handshake;
}

/** base64(SHA-1(key + GUID)), by WebCrypto: independent of the module's node:crypto. */
async function acceptFor(key: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-1",
    encoder.encode(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"),
  );
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

// --- The upgrade -----------------------------------------------------------------------------------------

Deno.test("handshake: RFC 6455's example key gets 101 with accept s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", async () => {
  assert.equal(await acceptFor(RFC_KEY), RFC_ACCEPT, "the test's own SHA-1 agrees with the RFC");
  const text = request();
  const handshake = await assertUpgrade(read(text), "mqtt");
  assert.ok(
    new TextDecoder().decode(handshake.response).includes(`\r\nSec-WebSocket-Accept: ${RFC_ACCEPT}\r\n`),
  );
  assert.equal(handshake.length, encoder.encode(text).length);
});

Deno.test("handshake: other keys get their own accept value", async () => {
  for (let i = 0; i < 20; i++) {
    const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
    await assertUpgrade(read(request({ "Sec-WebSocket-Key": key })), "mqtt", key);
  }
});

Deno.test("handshake: length points just past the blank line; what follows is frames, left alone", async () => {
  const head = encoder.encode(request());
  const frames = Uint8Array.from([0x82, 0x84, 1, 2, 3, 4, 0x21, 0x02, 0x03, 0x04, 0x88, 0x80, 0, 0, 0, 0]);
  const bytes = new Uint8Array(head.length + frames.length);
  bytes.set(head);
  bytes.set(frames, head.length);
  const handshake = await assertUpgrade(read(bytes), "mqtt");
  assert.equal(handshake.length, head.length);
  assert.deepEqual(bytes.subarray(handshake.length), frames);
  // Frames that look like a second blank line do not move it.
  const tricky = new Uint8Array([...head, 13, 10, 13, 10, 0x82]);
  assert.equal((await assertUpgrade(read(tricky), "mqtt")).length, head.length);
});

Deno.test("handshake: mqtt is chosen over mqttv3.1 whatever the order; mqttv3.1 alone is accepted", async () => {
  for (
    const offered of ["mqtt", "mqtt, mqttv3.1", "mqttv3.1, mqtt", "foo, mqtt", "mqttv3.1,mqtt", " mqtt "]
  ) {
    await assertUpgrade(read(request({ "Sec-WebSocket-Protocol": offered })), "mqtt");
  }
  for (const offered of ["mqttv3.1", "foo, mqttv3.1", "mqttv3.1, bar"]) {
    await assertUpgrade(read(request({ "Sec-WebSocket-Protocol": offered })), "mqttv3.1");
  }
});

Deno.test("handshake: repeated Sec-WebSocket-Protocol headers are one list", async () => {
  const base = request({ "Sec-WebSocket-Protocol": null });
  const withHeaders = (...values: string[]) =>
    base.replace("\r\n\r\n", values.map((v) => `\r\nSec-WebSocket-Protocol: ${v}`).join("") + "\r\n\r\n");
  await assertUpgrade(read(withHeaders("foo", "mqtt")), "mqtt");
  await assertUpgrade(read(withHeaders("mqttv3.1", "mqtt")), "mqtt");
  await assertUpgrade(read(withHeaders("foo", "mqttv3.1")), "mqttv3.1");
  assertRefusal(
    read(withHeaders("foo", "bar, baz")),
    "HTTP/1.1 400 Bad Request",
    "WebSocket sub-protocol mqtt required (offered: foo, bar, baz)",
  );
});

Deno.test("handshake: header names are case-insensitive; Upgrade and Connection values too, as lists", async () => {
  const lower = [
    "GET /mqtt HTTP/1.1",
    "host: x",
    "upgrade: WebSocket",
    "connection: keep-alive, UPGRADE",
    `sec-websocket-key: ${RFC_KEY}`,
    "SEC-WEBSOCKET-VERSION: 13",
    "sEc-WeBsOcKeT-pRoToCoL: mqtt",
    "",
    "",
  ].join("\r\n");
  await assertUpgrade(read(lower), "mqtt");
  // Spaces around a value, and none after the colon.
  await assertUpgrade(
    read(request({ Upgrade: "  websocket  ", Connection: "Upgrade", "Sec-WebSocket-Version": "13 " })),
    "mqtt",
  );
  await assertUpgrade(
    read(request().replace("Sec-WebSocket-Protocol: mqtt", "Sec-WebSocket-Protocol:mqtt")),
    "mqtt",
  );
});

Deno.test("handshake: a query string is ignored; the path alone is compared", async () => {
  await assertUpgrade(read(request({}, "GET /mqtt?token=abc&x=1 HTTP/1.1")), "mqtt");
  await assertUpgrade(read(request({}, "GET /mqtt? HTTP/1.1")), "mqtt");
  await assertUpgrade(read(request({}, "GET /broker/v1?q HTTP/1.1"), "/broker/v1"), "mqtt");
  assertRefusal(
    read(request({}, "GET /other?/mqtt HTTP/1.1")),
    "HTTP/1.1 404 Not Found",
    "no MQTT endpoint at this path; it is /mqtt",
  );
});

Deno.test("handshake: an upgrade is HTTP/1.1 with a Host header (RFC 6455 section 4.1)", () => {
  assertRefusal(
    read(request({}, "GET /mqtt HTTP/1.0")),
    "HTTP/1.1 400 Bad Request",
    "not an HTTP/1.1 request",
  );
  assertRefusal(read(request({ Host: null })), "HTTP/1.1 400 Bad Request", "no Host header");
});

Deno.test("handshake: a refusal's reason, for logging once per kind, does not quote what the client sent", () => {
  const a = read(request({ "Sec-WebSocket-Protocol": "foo" }));
  const b = read(request({ "Sec-WebSocket-Protocol": "x".repeat(500) }));
  assert.ok(a.kind === "refuse" && b.kind === "refuse");
  assert.equal(a.reason, b.reason);
  assert.notEqual(a.why, b.why);
  assert.ok(b.why.length < 200, b.why);
  const post = read(request({}, `${"P".repeat(300)} /mqtt HTTP/1.1`));
  assert.ok(post.kind === "refuse" && post.why.length < 100, JSON.stringify(post));
});

Deno.test("handshake: other headers are no matter", async () => {
  await assertUpgrade(
    read(
      request({
        Origin: "https://app.example",
        "Sec-WebSocket-Extensions": "permessage-deflate",
        "X-A": "b:c",
      }),
    ),
    "mqtt",
  );
  // No extension is agreed to.
  const handshake = read(request({ "Sec-WebSocket-Extensions": "permessage-deflate" }));
  assert.equal(handshake.kind, "upgrade");
  if (handshake.kind === "upgrade") {
    assert.equal(parse(handshake.response).headers.has("sec-websocket-extensions"), false);
  }
});

// --- Not yet complete ---------------------------------------------------------------------------------

Deno.test("handshake: every strict prefix of a valid request is incomplete", () => {
  const bytes = encoder.encode(request());
  for (let n = 0; n < bytes.length; n++) {
    assert.deepEqual(read(bytes.subarray(0, n)), { kind: "incomplete" }, `prefix of ${n} bytes`);
  }
  assert.equal(read(bytes).kind, "upgrade");
});

Deno.test("handshake: prefixes of a refused request are incomplete too, until the blank line", () => {
  const bytes = encoder.encode(request({}, "GET /elsewhere HTTP/1.1"));
  for (let n = 0; n < bytes.length; n++) assert.equal(read(bytes.subarray(0, n)).kind, "incomplete", `${n}`);
  assert.equal(read(bytes).kind, "refuse");
});

// --- Refusals --------------------------------------------------------------------------------------

Deno.test("handshake: a head over 8 KiB without its blank line is 431", () => {
  const long = encoder.encode(`GET /mqtt HTTP/1.1\r\nX-Padding: ${"a".repeat(9000)}`);
  assertRefusal(read(long), "HTTP/1.1 431 Request Header Fields Too Large", "request head over 8 KiB");
  // Exactly 8192 bytes and no end yet: refused; one byte fewer: still incomplete.
  const padded = (n: number) => encoder.encode(`GET /mqtt HTTP/1.1\r\nX: ${"b".repeat(n - 23)}`);
  assert.equal(padded(8192).length, 8192);
  assertRefusal(
    read(padded(8192)),
    "HTTP/1.1 431 Request Header Fields Too Large",
    "request head over 8 KiB",
  );
  assert.equal(read(padded(8191)).kind, "incomplete");
  // A complete request under the limit, padded with a long header, is served.
  const big = request({ "X-Padding": "c".repeat(7000) });
  assert.ok(big.length < 8192 && big.length > 7000);
  assert.equal(read(big).kind, "upgrade");
});

Deno.test("handshake: a request line that is not HTTP/1.x is 400", () => {
  for (
    const line of [
      "GET /mqtt HTTP/2.0",
      "GET /mqtt",
      "GET",
      "",
      "GET /mqtt FTP/1.1",
      "\u0016\u0003\u0001 hello",
    ]
  ) {
    assertRefusal(read(request({}, line)), "HTTP/1.1 400 Bad Request", "not an HTTP/1.1 request");
  }
});

Deno.test("handshake: a malformed header line (no colon, or a colon first) is 400", () => {
  for (const bad of ["NoColonHere", ": no name"]) {
    const text = request().replace("\r\n\r\n", `\r\n${bad}\r\n\r\n`);
    assertRefusal(read(text), "HTTP/1.1 400 Bad Request", "malformed header line");
  }
});

Deno.test("handshake: another path is 404 naming the endpoint's, for an upgrade or a plain GET", () => {
  for (const path of ["/", "/mqtt/", "/MQTT", "/mqtt/x", "/mqttx", "*"]) {
    assertRefusal(
      read(request({}, `GET ${path} HTTP/1.1`)),
      "HTTP/1.1 404 Not Found",
      "no MQTT endpoint at this path; it is /mqtt",
    );
  }
  assertRefusal(
    read("GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n", "/ws"),
    "HTTP/1.1 404 Not Found",
    "no MQTT endpoint at this path; it is /ws",
  );
});

Deno.test("handshake: a request that is not an upgrade is 426 with Upgrade: websocket and Connection: Upgrade", () => {
  const why = "MQTT over WebSocket: /mqtt needs a WebSocket upgrade";
  // Connection: close as every refusal, and Connection: Upgrade as a 426 says what it wants: one list.
  const extra = { upgrade: "websocket", connection: "close, Upgrade" };
  for (
    const text of [
      "GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n",
      request({ Upgrade: null }),
      request({ Upgrade: "h2c" }),
      // Not an upgrade, so not a 405: any method gets told what the endpoint needs.
      request({ Upgrade: null }, "POST /mqtt HTTP/1.1"),
    ]
  ) {
    assertRefusal(read(text), "HTTP/1.1 426 Upgrade Required", why, extra);
  }
});

Deno.test("handshake: an upgrade that is not a GET is 405 with Allow: GET", () => {
  for (const method of ["POST", "PUT", "HEAD", "get"]) {
    assertRefusal(
      read(request({}, `${method} /mqtt HTTP/1.1`)),
      "HTTP/1.1 405 Method Not Allowed",
      `a WebSocket upgrade is a GET, not ${method}`,
      { allow: "GET" },
    );
  }
});

Deno.test("handshake: a Connection header without upgrade (or none) is 400", () => {
  for (const connection of [null, "keep-alive", "close", "upgraded"]) {
    assertRefusal(
      read(request({ Connection: connection })),
      "HTTP/1.1 400 Bad Request",
      "Connection header without upgrade",
    );
  }
});

Deno.test("handshake: a WebSocket version other than 13 is 426 with Sec-WebSocket-Version: 13", () => {
  for (const version of [null, "8", "12", "14", "13, 8", ""]) {
    assertRefusal(
      read(request({ "Sec-WebSocket-Version": version })),
      "HTTP/1.1 426 Upgrade Required",
      "WebSocket version 13 required",
      { "sec-websocket-version": "13" },
    );
  }
});

Deno.test("handshake: a Sec-WebSocket-Key that is not base64 of 16 bytes is 400", () => {
  const b64 = (n: number) => btoa(String.fromCharCode(...new Uint8Array(n).fill(0x41)));
  for (
    const key of [
      null,
      "",
      b64(15),
      b64(17),
      b64(32),
      "dGhlIHNhbXBsZSBub25jZQ", // no padding
      "dGhlIHNhbXBsZSBub25jZQ=",
      "dGhlIHNhbXBsZSBub25j*Q==",
      "dGhlIHNhbXBsZSBub25jZQ==x",
      `${RFC_KEY}, ${RFC_KEY}`,
    ]
  ) {
    assertRefusal(
      read(request({ "Sec-WebSocket-Key": key })),
      "HTTP/1.1 400 Bad Request",
      "bad Sec-WebSocket-Key",
    );
  }
  assert.equal(b64(16).length, 24);
  assert.equal(read(request({ "Sec-WebSocket-Key": b64(16) })).kind, "upgrade");
});

Deno.test("handshake: no mqtt or mqttv3.1 sub-protocol is 400 naming what was offered", () => {
  const cases: [string | null, string][] = [
    [null, "none"],
    ["", "none"],
    ["foo", "foo"],
    ["foo, bar", "foo, bar"],
    ["mqtt5", "mqtt5"],
    ["mqttv3", "mqttv3"],
    ["mqttv3.1.1", "mqttv3.1.1"],
  ];
  for (const [offered, named] of cases) {
    assertRefusal(
      read(request({ "Sec-WebSocket-Protocol": offered })),
      "HTTP/1.1 400 Bad Request",
      `WebSocket sub-protocol mqtt required (offered: ${named})`,
    );
  }
});

Deno.test("handshake: the checks come in order: path, upgrade, method, connection, version, key, protocol", () => {
  // Everything wrong at once: each fix uncovers the next refusal.
  const fields: Record<string, string | null> = {
    Upgrade: null,
    Connection: "keep-alive",
    "Sec-WebSocket-Version": "8",
    "Sec-WebSocket-Key": "short",
    "Sec-WebSocket-Protocol": "foo",
  };
  let line = "POST /nope HTTP/1.1";
  const steps: [string, () => void][] = [
    ["HTTP/1.1 404 Not Found", () => line = "POST /mqtt HTTP/1.1"],
    ["HTTP/1.1 426 Upgrade Required", () => fields.Upgrade = "websocket"],
    ["HTTP/1.1 405 Method Not Allowed", () => line = "GET /mqtt HTTP/1.1"],
    ["HTTP/1.1 400 Bad Request", () => fields.Connection = "Upgrade"],
    ["HTTP/1.1 426 Upgrade Required", () => fields["Sec-WebSocket-Version"] = "13"],
    ["HTTP/1.1 400 Bad Request", () => fields["Sec-WebSocket-Key"] = RFC_KEY],
    ["HTTP/1.1 400 Bad Request", () => fields["Sec-WebSocket-Protocol"] = "mqtt"],
  ];
  for (const [status, fix] of steps) {
    const handshake = read(request(fields, line));
    assert.equal(handshake.kind, "refuse");
    if (handshake.kind === "refuse") assert.equal(parse(handshake.response).statusLine, status);
    fix();
  }
  assert.equal(read(request(fields, line)).kind, "upgrade");
});
