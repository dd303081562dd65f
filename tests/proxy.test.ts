/**
 * The PROXY protocol in front of the listeners (src/transport/proxy.ts), with real peers over real sockets.
 * HAProxy (tests/helpers/haproxy.ts) sends v1 and v2 headers in front of tcp, tls (passthrough) and ws
 * listeners, and ends TLS itself for use_identity_as_username; mosquitto_pub/_sub and MQTT.js are the
 * clients. Without HAProxy, sockets write headers by hand: what a proxy may get wrong (garbage, an untrusted
 * source, a late header, a LOCAL health check), headers split over writes or sharing one with CONNECT, the
 * relay behind tls and ws listeners, config errors and connection limits.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { once } from "node:events";
import net from "node:net";
import tls from "node:tls";
import mqttPacket from "mqtt-packet";
import { formatConfigError, parseConfig } from "../src/config/load.ts";
import { type Config, listenerConfig } from "../src/config/schema.ts";
import { type ConfigOverrides, startBroker, type TestBroker } from "./helpers/broker.ts";
import { concat as concatBytes, u16 } from "./helpers/bytes.ts";
import { CLIENT_CN, type KeyPairFiles, type TlsFiles, tlsFiles, UNTRUSTED_CN } from "./helpers/certs.ts";
import { HAProxy, haproxyTest } from "./helpers/haproxy.ts";
import { mosquittoSkipped, MosquittoSub, runMosquittoTool } from "./helpers/mosquitto.ts";
import { connectMqttJs } from "./helpers/mqttjs.ts";
import { connectPacket, RawClient } from "./helpers/raw.ts";
import { delay, until, within } from "./helpers/wait.ts";

// --- Local helpers -----------------------------------------------------------------------------------

type Listener = Config["listeners"][number];
type TcpListener = Extract<Listener, { type: "tcp" }>;

/** A tcp listener on port 0 that expects a PROXY header; `options` override. */
function proxiedTcp(options: Partial<TcpListener> = {}): TcpListener {
  return listenerConfig("tcp", { port: 0, proxy_protocol: true, ...options });
}

/**
 * A broker whose first listener (`broker.port`) is `first`, with a plain TCP listener (`plainPort`) beside it
 * for subscribers and bystanders that come without a proxy.
 */
function brokerBehind(first: Listener, overrides: ConfigOverrides = {}): Promise<TestBroker> {
  return startBroker({ ...overrides, listeners: [first, listenerConfig("tcp", { port: 0 })] });
}

/** The port of the broker's second listener, plain TCP without a PROXY header. */
function plainPort(broker: TestBroker): number {
  const listener = broker.server.listeners[1];
  assert.equal(listener?.type, "tcp", "the second listener is the plain tcp one");
  return listener.port;
}

/** A test that needs HAProxy and mosquitto_pub/_sub: ignored where either is missing (and allowed to be). */
function haproxyMosquittoTest(name: string, fn: () => Promise<void>): void {
  haproxyTest(name, fn, mosquittoSkipped);
}

/** The broker's log line for `clientId` connecting; fails with the whole log if there is none. */
function connectedLine(broker: TestBroker, clientId: string): string {
  const line = broker.logs.find((l) => l.includes(`client "${clientId}" connected from `));
  assert.ok(line, `no connected line for ${clientId}; log:\n${broker.logs.join("\n")}`);
  return line;
}

/**
 * The client address, client port and proxy port of `clientId`'s connected line, which must name the
 * client `address` (as formatAddress writes it, IPv6 bracketed) via a proxy on 127.0.0.1 over `transport`.
 */
function viaProxy(
  broker: TestBroker,
  clientId: string,
  address: string,
  transport: string,
): { port: number; proxyPort: number } {
  const line = connectedLine(broker, clientId);
  const escaped = address.replace(/[.[\]]/g, "\\$&");
  const match = line.match(
    new RegExp(`connected from ${escaped}:(\\d+) via proxy 127\\.0\\.0\\.1:(\\d+) over ${transport} `),
  );
  assert.ok(
    match,
    `expected "connected from ${address}:PORT via proxy 127.0.0.1:PORT over ${transport}": ${line}`,
  );
  return { port: Number(match[1]), proxyPort: Number(match[2]) };
}

/** Log lines at `level` (INFO, DEBUG, ...) that contain `text`. */
function logged(broker: TestBroker, level: "INFO" | "DEBUG" | "WARN", text: string): string[] {
  return broker.logs.filter((l) => l.includes(` ${level} `) && l.includes(text));
}

/** Waits for a log line at `level` containing `text`; fails with the whole log. */
async function waitForLog(broker: TestBroker, level: "INFO" | "DEBUG" | "WARN", text: string): Promise<void> {
  await until(() => logged(broker, level, text).length > 0, `a ${level} line with "${text}"`).catch(
    (error: Error) => {
      throw new Error(`${error.message}; log:\n${broker.logs.join("\n")}`);
    },
  );
}

/** mosquitto_pub/_sub arguments for a TLS connection to `port`, trusting the test CA, offering `client`. */
function tlsArgs(port: number, files: TlsFiles, client?: KeyPairFiles): string[] {
  const args = ["-h", "127.0.0.1", "-p", String(port), "--cafile", files.ca.cert];
  if (client) args.push("--cert", client.cert, "--key", client.key);
  return args;
}

/**
 * The bind options of a frontend that ends TLS with the test server certificate (HAProxy wants certificate
 * and key in one file) and verifies client certificates against the test CA: `verify` optional or required,
 * and any further words (crt-ignore-err, ...).
 */
async function tlsBind(files: TlsFiles, verify: "optional" | "required", more = ""): Promise<string> {
  const bundle = await files.write("server-bundle.pem", files.pems.server.cert + files.pems.server.key);
  return `ssl crt ${bundle} ca-file ${files.ca.cert} verify ${verify}${more ? ` ${more}` : ""}`;
}

const encoder = new TextEncoder();

/** Byte runs, one after the other. */
function concat(...parts: Uint8Array[]): Uint8Array {
  return concatBytes(parts);
}

const V2_SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

/** A v1 header naming 203.0.113.7:40000 as the client. */
const V1_HEADER = encoder.encode("PROXY TCP4 203.0.113.7 127.0.0.1 40000 1883\r\n");

/** A v2 PROXY header (TCP over IPv6) naming [2001:db8::7]:40007 as the client, written out byte by byte. */
const V2_IPV6_HEADER = Uint8Array.from([
  ...V2_SIGNATURE,
  0x21, // version 2, PROXY
  0x21, // AF_INET6, STREAM
  ...u16(36),
  ...[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07], // source 2001:db8::7
  ...[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01], // destination ::1
  ...u16(40007),
  ...u16(1883),
]);

/** A v2 LOCAL header: the proxy's own connection (a health check), no address block. */
const V2_LOCAL_HEADER = Uint8Array.from([...V2_SIGNATURE, 0x20, 0x00, ...u16(0)]);

/** CONNECT (3.1.1, clean session) as bytes. */
function connectBytes(clientId: string): Uint8Array {
  return mqttPacket.generate(connectPacket({ clientId }));
}

/** A raw client on `port` that has sent `bytes` (a header, CONNECT, ...) in one write. */
async function rawSending(port: number, bytes: Uint8Array): Promise<RawClient> {
  const client = await RawClient.open(port);
  await client.sendBytes(bytes);
  return client;
}

/** Asserts `client`'s connection is closed by the broker without a single packet. */
async function assertClosedUnanswered(client: RawClient): Promise<void> {
  assert.deepEqual(await client.closedByBroker(), [], "the broker answered nothing");
}

/**
 * Asserts the broker still serves: a client on the plain listener gets its own message back (the broker
 * did not stop, crash or stall over whatever the test did).
 */
async function assertStillServes(broker: TestBroker, tag: string): Promise<void> {
  await using bystander = await RawClient.subscriber(plainPort(broker), { clientId: `bystander-${tag}` }, [
    [`still/${tag}`, 1],
  ]);
  await using publisher = await RawClient.connected(plainPort(broker), { clientId: `publisher-${tag}` });
  await publisher.publishAcked(`still/${tag}`, "still serving", { qos: 1 });
  await bystander.expectPublish(`still/${tag}`, "still serving", 1);
}

// --- Through HAProxy: client addresses -----------------------------------------------------------------

/**
 * mosquitto_pub through an HAProxy frontend on [::1] with `server` options reaches a watcher on the plain
 * listener, and the broker logs the client as [::1]:PORT, PORT being the client port HAProxy logged, via
 * the proxy 127.0.0.1 (HAProxy connects to the broker over IPv4): the address can only have come from the
 * header.
 */
async function assertClientAddressRelayed(server: string, tag: string): Promise<void> {
  await using broker = await brokerBehind(proxiedTcp());
  await using haproxy = await HAProxy.start([{ name: tag, host: "::1", to: broker.port, server }]);
  await using watcher = await RawClient.subscriber(plainPort(broker), { clientId: "watch" }, [[
    `pp/${tag}`,
    1,
  ]]);
  const result = await runMosquittoTool("mosquitto_pub", [
    ...["-h", "::1", "-p", String(haproxy.port(tag)), "-i", `pub-${tag}`],
    ...["-t", `pp/${tag}`, "-m", `through ${tag}`, "-q", "1"],
  ]);
  assert.equal(result.code, 0, `${result.stderr}\nhaproxy:\n${haproxy.output}`);
  await watcher.expectPublish(`pp/${tag}`, `through ${tag}`, 1);
  const { port, proxyPort } = viaProxy(broker, `pub-${tag}`, "[::1]", "tcp");
  assert.notEqual(port, proxyPort);
  await haproxy.accepted(tag, "::1", port);
  assert.ok(
    broker.logs.some((l) =>
      l.includes(`listening on tcp 127.0.0.1:${broker.port} behind a PROXY protocol proxy`)
    ),
    broker.logs.join("\n"),
  );
}

haproxyMosquittoTest(
  "proxy: haproxy send-proxy (v1): mosquitto_pub's message arrives; the broker logs the address HAProxy saw",
  () => assertClientAddressRelayed("send-proxy", "v1"),
);

haproxyMosquittoTest(
  "proxy: haproxy send-proxy-v2: mosquitto_pub's message arrives; the broker logs the address HAProxy saw",
  () => assertClientAddressRelayed("send-proxy-v2", "v2"),
);

haproxyTest(
  "proxy: haproxy send-proxy-v2 with crc32c, unique-id, authority and the SSL TLVs is accepted (MQTT.js, SNI)",
  async () => {
    await using files = await tlsFiles();
    await using broker = await brokerBehind(proxiedTcp({ use_identity_as_username: true }), {
      auth: { allow_anonymous: false },
    });
    await using haproxy = await HAProxy.start([{
      name: "tlvs",
      bind: await tlsBind(files, "required"),
      lines: [String.raw`unique-id-format %{+X}o\ %ci:%cp_%fi:%fp_%Ts_%rt`],
      to: broker.port,
      server:
        "send-proxy-v2 proxy-v2-options ssl,cert-cn,ssl-cipher,cert-sig,cert-key,authority,crc32c,unique-id",
    }]);
    await using client = await connectMqttJs(haproxy.port("tlvs"), {
      protocol: "mqtts",
      ca: files.pems.ca.cert,
      cert: files.pems.client.cert,
      key: files.pems.client.key,
      // SNI, which HAProxy passes on as the authority TLV.
      servername: "localhost",
      clientId: "js-tlvs",
    });
    await client.mqtt.subscribeAsync("tlv/x", { qos: 1 });
    await client.mqtt.publishAsync("tlv/x", "every TLV", { qos: 1 });
    const [message] = await client.received(1);
    assert.equal(message.payload, "every TLV");
    const { port } = viaProxy(broker, "js-tlvs", "127.0.0.1", "tcp");
    assert.ok(
      connectedLine(broker, "js-tlvs").includes(`user "${CLIENT_CN}"`),
      connectedLine(broker, "js-tlvs"),
    );
    await haproxy.accepted("tlvs", "127.0.0.1", port);
    await client.end();
    await broker.disconnected("js-tlvs");
  },
);

// --- Through HAProxy: TLS ended at the proxy, the client certificate's CN as username ------------------

/** A tcp listener taking the username from the CN HAProxy verified, on a broker with no anonymous access. */
function identityBroker(): Promise<TestBroker> {
  return brokerBehind(proxiedTcp({ use_identity_as_username: true }), { auth: { allow_anonymous: false } });
}

/** HAProxy ending TLS (client certificates `verify`) and sending send-proxy-v2-ssl-cn to `broker`. */
async function tlsEndingProxy(
  files: TlsFiles,
  broker: TestBroker,
  verify: "optional" | "required",
  more = "",
): Promise<HAProxy> {
  return HAProxy.start([{
    name: "tls",
    bind: await tlsBind(files, verify, more),
    to: broker.port,
    server: "send-proxy-v2-ssl-cn",
  }]);
}

haproxyMosquittoTest(
  "proxy: haproxy send-proxy-v2-ssl-cn: the CN of the certificate HAProxy verified is the username",
  async () => {
    await using files = await tlsFiles();
    await using broker = await identityBroker();
    await using haproxy = await tlsEndingProxy(files, broker, "required");
    const viaHAProxy = tlsArgs(haproxy.port("tls"), files, files.client);
    await using sub = new MosquittoSub([
      ...viaHAProxy,
      "-i",
      "cn-sub",
      "-t",
      "cn/#",
      "-q",
      "1",
      "-C",
      "1",
      "-v",
    ]);
    await broker.subscribed("cn-sub", "cn/#");
    const result = await runMosquittoTool("mosquitto_pub", [
      ...viaHAProxy,
      ...["-i", "cn-pub", "-t", "cn/reading", "-m", "21.5", "-q", "1", "-u", "claimed-name"],
    ]);
    assert.equal(result.code, 0, `${result.stderr}\nhaproxy:\n${haproxy.output}`);
    assert.deepEqual(await sub.lines(1), ["cn/reading 21.5"]);
    assert.equal((await sub.finished()).code, 0);
    for (const clientId of ["cn-sub", "cn-pub"]) {
      const line = connectedLine(broker, clientId);
      assert.ok(line.includes(`user "${CLIENT_CN}", certificate "CN=${CLIENT_CN}"`), line);
      const { port } = viaProxy(broker, clientId, "127.0.0.1", "tcp");
      await haproxy.accepted("tls", "127.0.0.1", port);
    }
    assert.ok(!broker.logs.some((l) => l.includes("claimed-name")), broker.logs.join("\n"));
  },
);

haproxyMosquittoTest(
  "proxy: haproxy send-proxy-v2-ssl-cn: no client certificate (verify optional) is CONNACK 5, and 0x87 at MQTT 5",
  async () => {
    await using files = await tlsFiles();
    await using broker = await identityBroker();
    await using haproxy = await tlsEndingProxy(files, broker, "optional");
    for (const [version, said] of [["mqttv311", "not authorized"], ["mqttv5", "reason code 0x87"]]) {
      const clientId = `nameless-${version}`;
      const result = await runMosquittoTool("mosquitto_pub", [
        ...tlsArgs(haproxy.port("tls"), files),
        ...["-V", version, "-i", clientId, "-u", "claimed-name", "-t", "cn/x", "-m", "x"],
      ]);
      assert.notEqual(result.code, 0, `${version}: mosquitto_pub should fail`);
      assert.match(result.stderr, /not authori[sz]ed/i, `${version}: ${result.stderr}`);
      assert.equal(broker.hasSession(clientId), false);
      await waitForLog(broker, "INFO", `refused: ${said}: no verified client certificate`);
    }
    assert.ok(!broker.logs.some((l) => l.includes(" connected from ")), broker.logs.join("\n"));
    // With a certificate, the same frontend lets the client in.
    const result = await runMosquittoTool("mosquitto_pub", [
      ...tlsArgs(haproxy.port("tls"), files, files.client),
      ...["-i", "named", "-t", "cn/x", "-m", "x"],
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.ok(connectedLine(broker, "named").includes(`user "${CLIENT_CN}"`));
  },
);

haproxyMosquittoTest(
  "proxy: haproxy send-proxy-v2-ssl-cn: a certificate HAProxy let through unverified (crt-ignore-err) names no user",
  async () => {
    await using files = await tlsFiles();
    await using broker = await identityBroker();
    // HAProxy completes the handshake with a certificate it could not verify, sends its CN and a non-zero
    // verify result: the broker must not take that CN for an identity.
    await using haproxy = await tlsEndingProxy(
      files,
      broker,
      "optional",
      "ca-ignore-err all crt-ignore-err all",
    );
    const result = await runMosquittoTool("mosquitto_pub", [
      ...tlsArgs(haproxy.port("tls"), files, files.untrustedClient),
      ...["-i", "forged", "-t", "cn/x", "-m", "x"],
    ]);
    assert.notEqual(result.code, 0, "mosquitto_pub should fail");
    assert.match(result.stderr, /not authori[sz]ed/i, result.stderr);
    assert.equal(broker.hasSession("forged"), false);
    assert.ok(!broker.logs.some((l) => l.includes(UNTRUSTED_CN)), broker.logs.join("\n"));
    await waitForLog(broker, "INFO", "refused: not authorized: no verified client certificate");
  },
);

// --- Through HAProxy: the relay behind tls and ws listeners --------------------------------------------

haproxyMosquittoTest(
  "proxy: haproxy in TCP mode (TLS passthrough) with send-proxy-v2 in front of a tls listener",
  async () => {
    await using files = await tlsFiles();
    await using broker = await brokerBehind(listenerConfig("tls", {
      port: 0,
      cert_file: files.server.cert,
      key_file: files.server.key,
      proxy_protocol: true,
    }));
    assert.ok(
      broker.logs.some((l) =>
        l.endsWith(`listening on tls 127.0.0.1:${broker.port} behind a PROXY protocol proxy (127.0.0.1, ::1)`)
      ),
      broker.logs.join("\n"),
    );
    await using haproxy = await HAProxy.start([{ name: "pass", to: broker.port, server: "send-proxy-v2" }]);
    await using watcher = await RawClient.subscriber(plainPort(broker), { clientId: "watch" }, [[
      "pass/#",
      1,
    ]]);
    const result = await runMosquittoTool("mosquitto_pub", [
      ...tlsArgs(haproxy.port("pass"), files),
      ...["-i", "passthrough", "-t", "pass/x", "-m", "end to end TLS", "-q", "1"],
    ]);
    assert.equal(result.code, 0, `${result.stderr}\nhaproxy:\n${haproxy.output}`);
    await watcher.expectPublish("pass/x", "end to end TLS", 1);
    const { port } = viaProxy(broker, "passthrough", "127.0.0.1", "tls");
    await haproxy.accepted("pass", "127.0.0.1", port);
  },
);

haproxyTest("proxy: MQTT.js over WebSocket through haproxy send-proxy-v2 to a ws listener", async () => {
  await using broker = await brokerBehind(listenerConfig("ws", { port: 0, proxy_protocol: true }));
  await using haproxy = await HAProxy.start([{
    name: "ws",
    host: "::1",
    to: broker.port,
    server: "send-proxy-v2",
  }]);
  await using client = await connectMqttJs(haproxy.port("ws"), {
    protocol: "ws",
    // MQTT.js puts the host into a URL as it is.
    host: "[::1]",
    path: "/mqtt",
    clientId: "js-ws",
  });
  await using watcher = await RawClient.subscriber(plainPort(broker), { clientId: "watch" }, [["ws/#", 1]]);
  await client.mqtt.subscribeAsync("ws/x", { qos: 1 });
  await client.mqtt.publishAsync("ws/x", "over ws", { qos: 1 });
  const [message] = await client.received(1);
  assert.equal(message.payload, "over ws");
  await watcher.expectPublish("ws/x", "over ws", 1);
  const { port } = viaProxy(broker, "js-ws", "[::1]", "ws");
  await haproxy.accepted("ws", "::1", port);
  await client.end();
  await broker.disconnected("js-ws");
});

// --- Without HAProxy: what a peer may get wrong -------------------------------------------------------

Deno.test("proxy: bytes that are no PROXY header close the connection, logged at info once per address", async () => {
  await using broker = await brokerBehind(proxiedTcp());
  const garbage = [connectBytes("no-header"), encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n")];
  for (const [i, bytes] of garbage.entries()) {
    await using client = await rawSending(broker.port, bytes);
    await assertClosedUnanswered(client);
    await waitForLog(broker, i === 0 ? "INFO" : "DEBUG", "closed: bad PROXY header: ");
  }
  const info = logged(broker, "INFO", "closed: bad PROXY header: ");
  assert.equal(info.length, 1, broker.logs.join("\n"));
  assert.match(info[0], /tcp connection from 127\.0\.0\.1:\d+ closed: bad PROXY header: /);
  assert.equal(logged(broker, "DEBUG", "closed: bad PROXY header: ").length, 1, broker.logs.join("\n"));
  assert.equal(broker.hasSession("no-header"), false);
  await assertStillServes(broker, "after-garbage");
});

Deno.test("proxy: a connection from outside proxy_trusted_sources is closed, header or not", async () => {
  await using broker = await brokerBehind(proxiedTcp({ proxy_trusted_sources: ["10.0.0.0/8", "::1"] }));
  await using client = await rawSending(broker.port, concat(V1_HEADER, connectBytes("untrusted")));
  await assertClosedUnanswered(client);
  await waitForLog(broker, "INFO", "closed: not a trusted proxy");
  assert.match(
    logged(broker, "INFO", "not a trusted proxy")[0],
    /tcp connection from 127\.0\.0\.1:\d+ closed: not a trusted proxy/,
  );
  assert.equal(broker.hasSession("untrusted"), false);
  assert.ok(!broker.logs.some((l) => l.includes("203.0.113.7")), broker.logs.join("\n"));
  await assertStillServes(broker, "after-untrusted");
});

Deno.test("proxy: no complete header within connect_timeout closes the connection", async () => {
  await using broker = await brokerBehind(proxiedTcp(), { mqtt: { connect_timeout: 1 } });
  await using silent = await RawClient.open(broker.port);
  await using half = await rawSending(broker.port, V1_HEADER.subarray(0, 20));
  await assertClosedUnanswered(silent);
  await assertClosedUnanswered(half);
  await waitForLog(broker, "INFO", "closed: no PROXY header within 1 s");
  assert.equal(
    broker.logs.filter((l) => l.includes("closed: no PROXY header within 1 s")).length,
    2,
    broker.logs.join("\n"),
  );
});

Deno.test("proxy: a v2 LOCAL header (a health check) is closed quietly, even with a CONNECT after it", async () => {
  await using broker = await brokerBehind(proxiedTcp());
  await using client = await rawSending(broker.port, concat(V2_LOCAL_HEADER, connectBytes("health")));
  await assertClosedUnanswered(client);
  await waitForLog(broker, "DEBUG", "tcp health check from proxy 127.0.0.1:");
  assert.equal(broker.hasSession("health"), false);
  assert.deepEqual(broker.logs.filter((l) => l.includes(" INFO ") && !l.includes("listening on")), []);
});

// --- Without HAProxy: headers as a proxy may write them -----------------------------------------------

Deno.test("proxy: a v1 header and CONNECT in one write: CONNACK, and the client is the header's", async () => {
  await using broker = await brokerBehind(proxiedTcp());
  await using client = await rawSending(broker.port, concat(V1_HEADER, connectBytes("one-write")));
  assert.equal((await client.expect("connack")).returnCode, 0);
  viaProxy(broker, "one-write", "203.0.113.7", "tcp");
  assert.match(
    connectedLine(broker, "one-write"),
    /connected from 203\.0\.113\.7:40000 via proxy 127\.0\.0\.1:/,
  );
  await client.publishAcked("one/x", "served", { qos: 1 });
});

Deno.test("proxy: a v1 header written byte by byte, or ending in CONNECT's write, is read whole", async () => {
  await using broker = await brokerBehind(proxiedTcp());
  await using bytewise = await RawClient.open(broker.port);
  for (const byte of V1_HEADER) {
    await bytewise.sendBytes(Uint8Array.of(byte));
    await delay(2);
  }
  await bytewise.sendBytes(connectBytes("bytewise"));
  assert.equal((await bytewise.expect("connack")).returnCode, 0);
  assert.match(
    connectedLine(broker, "bytewise"),
    /connected from 203\.0\.113\.7:40000 via proxy 127\.0\.0\.1:/,
  );
  // Most of the header, then its last bytes and the CONNECT together.
  await using straddling = await rawSending(broker.port, V1_HEADER.subarray(0, V1_HEADER.length - 3));
  await delay(20);
  await straddling.sendBytes(concat(V1_HEADER.subarray(V1_HEADER.length - 3), connectBytes("straddling")));
  assert.equal((await straddling.expect("connack")).returnCode, 0);
  viaProxy(broker, "straddling", "203.0.113.7", "tcp");
});

Deno.test("proxy: a v2 header with an IPv6 client, in one write with CONNECT and byte by byte", async () => {
  await using broker = await brokerBehind(proxiedTcp());
  await using together = await rawSending(broker.port, concat(V2_IPV6_HEADER, connectBytes("v2-together")));
  assert.equal((await together.expect("connack")).returnCode, 0);
  assert.match(
    connectedLine(broker, "v2-together"),
    /connected from \[2001:db8::7\]:40007 via proxy 127\.0\.0\.1:\d+ over tcp/,
  );
  await using bytewise = await RawClient.open(broker.port);
  for (const byte of V2_IPV6_HEADER) {
    await bytewise.sendBytes(Uint8Array.of(byte));
    await delay(2);
  }
  await bytewise.sendBytes(connectBytes("v2-bytewise"));
  assert.equal((await bytewise.expect("connack")).returnCode, 0);
  viaProxy(broker, "v2-bytewise", "[2001:db8::7]", "tcp");
});

Deno.test("proxy: a header without an address (v1 UNKNOWN, v2 UNSPEC) leaves the proxy's own address", async () => {
  await using broker = await brokerBehind(proxiedTcp());
  const unknown = encoder.encode("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n");
  const unspec = Uint8Array.from([...V2_SIGNATURE, 0x21, 0x00, ...u16(0)]);
  for (const [clientId, header] of [["v1-unknown", unknown], ["v2-unspec", unspec]] as const) {
    await using client = await rawSending(broker.port, concat(header, connectBytes(clientId)));
    assert.equal((await client.expect("connack")).returnCode, 0);
    const line = connectedLine(broker, clientId);
    assert.match(line, /connected from 127\.0\.0\.1:\d+ over tcp /);
    assert.doesNotMatch(line, /via proxy/);
  }
});

// --- Without HAProxy: the relay behind tls and ws listeners -------------------------------------------

/**
 * The loopback ports this process listens on (Linux: /proc/net/tcp, filtered to this process's sockets
 * through /proc/self/fd); undefined where /proc cannot tell.
 */
function ownListeningPorts(): Set<number> | undefined {
  try {
    const inodes = new Set<string>();
    for (const entry of Deno.readDirSync("/proc/self/fd")) {
      try {
        const target = Deno.readLinkSync(`/proc/self/fd/${entry.name}`);
        const match = target.match(/^socket:\[(\d+)\]$/);
        if (match) inodes.add(match[1]);
      } catch {
        // closed in the meantime
      }
    }
    const ports = new Set<number>();
    for (const line of Deno.readTextFileSync("/proc/self/net/tcp").split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      // local_address 0100007F:PORT (127.0.0.1), state 0A (LISTEN), inode in column 10.
      if (fields.length < 10 || fields[3] !== "0A" || !inodes.has(fields[9])) continue;
      const [address, port] = fields[1].split(":");
      if (address === "0100007F") ports.add(parseInt(port, 16));
    }
    return ports;
  } catch {
    return undefined;
  }
}

/**
 * Starts `broker()` and finds the loopback port of its relay's inner listener: the one port this process
 * listens on afterwards that it did not before, and that no listener reports. Undefined where it cannot be
 * found (no /proc, or not exactly one candidate).
 */
async function withInnerPort(start: () => Promise<TestBroker>): Promise<[TestBroker, number | undefined]> {
  const before = ownListeningPorts();
  const broker = await start();
  const after = ownListeningPorts();
  if (!before || !after) return [broker, undefined];
  const reported = new Set(broker.server.listeners.map((l) => l.port));
  const candidates = [...after].filter((port) => !before.has(port) && !reported.has(port));
  return [broker, candidates.length === 1 ? candidates[0] : undefined];
}

/** Opens a TCP socket to `port`, writes `header` (if any), then runs TLS over it as a passthrough proxy would. */
async function tlsAfterHeader(
  port: number,
  header: Uint8Array | undefined,
  ca: string,
): Promise<tls.TLSSocket> {
  const socket = net.connect({ host: "127.0.0.1", port });
  await within(once(socket, "connect"), "the TCP connection");
  if (header) socket.write(header);
  const secure = tls.connect({ socket, ca, servername: "localhost" });
  try {
    await within(once(secure, "secureConnect"), "the TLS handshake");
  } catch (error) {
    secure.destroy();
    throw error;
  }
  return secure;
}

/** Everything `socket` receives until it closes (or `ms` pass), as one buffer. */
async function receivedUntilClosed(socket: net.Socket | tls.TLSSocket): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  socket.on("data", (chunk: Buffer) => chunks.push(chunk));
  socket.on("error", () => {});
  if (!socket.destroyed) await within(once(socket, "close"), "the broker to close the connection");
  return Buffer.concat(chunks);
}

/** Sends CONNECT over `socket` and waits for the 4-byte 3.1.1 CONNACK; returns it. */
async function connackOver(socket: net.Socket | tls.TLSSocket, clientId: string): Promise<Uint8Array> {
  const received: Buffer[] = [];
  const got = new Promise<void>((resolve) => {
    const onData = (chunk: Buffer) => {
      received.push(chunk);
      if (Buffer.concat(received).length >= 4) {
        socket.off("data", onData);
        resolve();
      }
    };
    socket.on("data", onData);
  });
  socket.write(connectBytes(clientId));
  await within(got, "CONNACK");
  return Buffer.concat(received).subarray(0, 4);
}

/** Closes `socket` and waits for it to be closed. */
async function closeSocket(socket: net.Socket | tls.TLSSocket): Promise<void> {
  if (socket.destroyed) return;
  const closed = once(socket, "close");
  socket.destroy();
  await closed;
}

Deno.test("proxy: a tls listener behind the PROXY relay: header, then TLS from the client (node:tls)", async () => {
  await using files = await tlsFiles();
  const [started, inner] = await withInnerPort(() =>
    brokerBehind(listenerConfig("tls", {
      port: 0,
      cert_file: files.server.cert,
      key_file: files.server.key,
      proxy_protocol: true,
    }))
  );
  await using broker = started;
  const secure = await tlsAfterHeader(broker.port, V1_HEADER, files.pems.ca.cert);
  try {
    assert.deepEqual([...await connackOver(secure, "tls-relay")], [0x20, 0x02, 0x00, 0x00]);
  } finally {
    await closeSocket(secure);
  }
  assert.match(
    connectedLine(broker, "tls-relay"),
    /connected from 203\.0\.113\.7:40000 via proxy 127\.0\.0\.1:\d+ over tls/,
  );
  await broker.disconnected("tls-relay");
  // The inner listener on loopback serves the relay only: a client that finds it directly is not served.
  if (inner === undefined) {
    console.warn("the tls listener's inner port could not be found (no /proc): that case is not checked");
    return;
  }
  const direct = await tlsAfterHeader(inner, undefined, files.pems.ca.cert).catch(() => undefined);
  if (direct) {
    direct.write(connectBytes("tls-direct"));
    const answer = await receivedUntilClosed(direct);
    assert.equal(answer.length, 0, `the inner listener answered ${[...answer]}`);
  }
  assert.equal(broker.hasSession("tls-direct"), false);
  assert.ok(!broker.logs.some((l) => l.includes(`"tls-direct" connected`)), broker.logs.join("\n"));
});

Deno.test("proxy: a tls listener takes identity from its own handshake, never from the header's SSL TLV", async () => {
  await using files = await tlsFiles();
  await using broker = await startBroker({
    auth: { allow_anonymous: false },
    listeners: [listenerConfig("tls", {
      port: 0,
      cert_file: files.server.cert,
      key_file: files.server.key,
      ca_file: files.ca.cert,
      use_identity_as_username: true,
      proxy_protocol: true,
    })],
  });
  // A v2 header whose SSL TLV claims a verified client certificate for "admin": true of a proxy that ended
  // TLS, but a tls listener does its own handshake, where this client shows no certificate.
  const cn = encoder.encode("admin");
  const ssl = [0x07, 0, 0, 0, 0, 0x22, ...u16(cn.length), ...cn];
  const header = Uint8Array.from([
    ...V2_SIGNATURE,
    0x21,
    0x11,
    ...u16(12 + 3 + ssl.length),
    ...[198, 51, 100, 9, 127, 0, 0, 1, 0xa0, 0x28, 0x22, 0xb3],
    0x20,
    ...u16(ssl.length),
    ...ssl,
  ]);
  const secure = await tlsAfterHeader(broker.port, header, files.pems.ca.cert);
  try {
    // CONNACK 5: not authorized, for want of a certificate of its own.
    assert.deepEqual([...await connackOver(secure, "claims-admin")], [0x20, 0x02, 0x00, 0x05]);
  } finally {
    await closeSocket(secure);
  }
  assert.ok(!broker.logs.some((l) => l.includes(`user "admin"`)), broker.logs.join("\n"));
});

/** The HTTP upgrade request for MQTT over WebSocket at /mqtt. */
const UPGRADE = encoder.encode(
  "GET /mqtt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
    "Sec-WebSocket-Protocol: mqtt\r\n\r\n",
);

/** `payload` as one masked binary WebSocket frame (a client's frames are masked), for payloads under 126. */
function maskedFrame(payload: Uint8Array): Uint8Array {
  const mask = [0x12, 0x34, 0x56, 0x78];
  return Uint8Array.from([0x82, 0x80 | payload.length, ...mask, ...payload.map((b, i) => b ^ mask[i % 4])]);
}

/**
 * Writes `header` (if any) and a WebSocket upgrade to `port`, then CONNECT in a frame; returns what came
 * back: the HTTP answer and, after a 101, the first frame's opcode and payload (binary, the CONNACK).
 */
async function webSocketConnect(
  port: number,
  header: Uint8Array | undefined,
  clientId: string,
): Promise<{ status: string; opcode?: number; payload?: Uint8Array }> {
  const socket = net.connect({ host: "127.0.0.1", port });
  try {
    await within(once(socket, "connect"), "the TCP connection");
    socket.on("error", () => {});
    let received = Buffer.alloc(0);
    let wake: () => void = () => {};
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      wake();
    });
    socket.on("close", () => wake());
    const waitFor = (ready: () => boolean, what: string) =>
      within(
        new Promise<void>((resolve) => {
          const check = () => {
            if (ready() || socket.destroyed) resolve();
            else wake = check;
          };
          check();
        }),
        what,
      );
    socket.write(header ? concat(header, UPGRADE) : UPGRADE);
    await waitFor(() => received.includes("\r\n\r\n"), "the HTTP answer");
    const end = received.indexOf("\r\n\r\n");
    if (end < 0) return { status: "closed" };
    const status = received.subarray(0, received.indexOf("\r\n")).toString();
    if (!status.includes(" 101 ")) return { status };
    socket.write(maskedFrame(connectBytes(clientId)));
    const frameAt = end + 4;
    await waitFor(() => received.length >= frameAt + 2 + 4, "a WebSocket frame with CONNACK");
    const frame = received.subarray(frameAt);
    if (frame.length < 2) return { status };
    return { status, opcode: frame[0] & 0x0f, payload: frame.subarray(2, 2 + (frame[1] & 0x7f)) };
  } finally {
    await closeSocket(socket);
  }
}

Deno.test("proxy: a ws listener reads the header, then the WebSocket upgrade and MQTT, on one socket", async () => {
  await using broker = await brokerBehind(listenerConfig("ws", { port: 0, proxy_protocol: true }));
  const { status, opcode, payload } = await webSocketConnect(broker.port, V2_IPV6_HEADER, "ws-proxied");
  assert.match(status, /^HTTP\/1\.1 101 /);
  assert.equal(opcode, 0x2, "a binary frame");
  assert.deepEqual([...payload ?? []], [0x20, 0x02, 0x00, 0x00]);
  assert.match(
    connectedLine(broker, "ws-proxied"),
    /connected from \[2001:db8::7\]:40007 via proxy 127\.0\.0\.1:\d+ over ws/,
  );
  await broker.disconnected("ws-proxied");
});

Deno.test("proxy: stopping the broker closes connections still sending their header, tcp and ws alike", async () => {
  // connect_timeout (10 s by default) would close them too, but later than the wait below allows.
  const broker = await startBroker({
    listeners: [proxiedTcp(), listenerConfig("ws", { port: 0, proxy_protocol: true })],
  });
  try {
    const [tcp, ws] = broker.server.listeners;
    await using halfTcp = await rawSending(tcp.port, V1_HEADER.subarray(0, 20));
    await using halfWs = await rawSending(ws.port, V2_IPV6_HEADER.subarray(0, 20));
    await using silent = await RawClient.open(tcp.port);
    // The broker has the three sockets before it stops: a v1 header with CONNECT is served on a fourth.
    await using served = await rawSending(tcp.port, concat(V1_HEADER, connectBytes("served")));
    assert.equal((await served.expect("connack")).returnCode, 0);
    await within(broker.stop(), "the broker to stop with connections still sending their header");
    for (const client of [halfTcp, halfWs, silent]) await assertClosedUnanswered(client);
    assert.ok(!broker.logs.some((l) => l.includes("no PROXY header within")), broker.logs.join("\n"));
  } finally {
    await broker.stop();
  }
});

// --- Limits and configuration -------------------------------------------------------------------------

Deno.test("proxy: max_connections on a proxied listener counts its connections", async () => {
  await using broker = await brokerBehind(proxiedTcp({ max_connections: 1 }));
  await using first = await rawSending(broker.port, concat(V1_HEADER, connectBytes("first")));
  assert.equal((await first.expect("connack")).returnCode, 0);
  await using second = await rawSending(broker.port, concat(V2_IPV6_HEADER, connectBytes("second")));
  await assertClosedUnanswered(second);
  await waitForLog(broker, "WARN", "connection limit reached (listeners[0].max_connections = 1)");
  assert.equal(broker.server.metrics.connectionsRefused, 1);
  assert.equal(broker.hasSession("second"), false);
  await first.disconnect();
  await broker.disconnected("first");
  await using third = await rawSending(broker.port, concat(V1_HEADER, connectBytes("third")));
  assert.equal((await third.expect("connack")).returnCode, 0);
});

Deno.test("proxy: a bad proxy_trusted_sources entry is a config error naming its line and field", () => {
  const cases: [string, RegExp][] = [
    [
      "10.0.0.1/8",
      /^cfg\.yaml:5: listeners\[0\]\.proxy_trusted_sources\[1\]: .*10\.0\.0\.1\/8.*10\.0\.0\.0\/8/,
    ],
    [
      "nonsense",
      /^cfg\.yaml:5: listeners\[0\]\.proxy_trusted_sources\[1\]: .*"nonsense" is not an IPv4 or IPv6/,
    ],
    ["10.0.0.0/33", /^cfg\.yaml:5: listeners\[0\]\.proxy_trusted_sources\[1\]: .*prefix length "33"/],
  ];
  for (const [entry, expected] of cases) {
    const text = [
      "listeners:",
      "  - proxy_protocol: true",
      "    proxy_trusted_sources:",
      "      - 127.0.0.1",
      `      - ${JSON.stringify(entry)}`,
      "",
    ].join("\n");
    const result = parseConfig(text, "cfg.yaml");
    assert.ok(!result.ok, `${entry} was accepted`);
    const message = formatConfigError(result.error);
    assert.equal(message.split("\n").length, 1, message);
    assert.match(message, expected);
  }
});

Deno.test("proxy: cli: check-config reports a bad proxy_trusted_sources entry in one line, exit 2", async () => {
  const path = await Deno.makeTempFile({ prefix: "vyoma-proxy-", suffix: ".yaml" });
  try {
    await Deno.writeTextFile(
      path,
      "listeners:\n  - type: ws\n    proxy_protocol: true\n    proxy_trusted_sources: [10.0.0.1/8]\n",
    );
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", "--allow-env", "main.ts", "check-config", path],
      stdin: "null",
      env: { NO_COLOR: "1" },
    }).output();
    const stderr = new TextDecoder().decode(output.stderr).trim();
    assert.equal(output.code, 2, stderr);
    assert.equal(stderr.split("\n").length, 1, stderr);
    assert.ok(stderr.includes(`${path}:4: listeners[0].proxy_trusted_sources[0]: `), stderr);
    assert.ok(stderr.includes("10.0.0.1/8"), stderr);
  } finally {
    await Deno.remove(path);
  }
});
