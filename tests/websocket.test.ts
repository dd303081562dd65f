/**
 * The `ws` and `wss` listeners: MQTT over WebSocket (and over TLS) beside a plain TCP listener, with real
 * peers on real sockets: MQTT.js (the npm `ws` package underneath), Python paho with
 * `transport="websockets"`, mosquitto_pub/_sub on the TCP side, Deno's own `WebSocket` sending MQTT bytes
 * cut as the test likes, and a WebSocket written by hand on a raw TCP socket for a peer that misbehaves
 * below the WebSocket API. Covered: messages crossing transports, how the MQTT stream may be cut into
 * messages and frames, the sub-protocol, what plain HTTP gets, text frames and garbage, the per-listener
 * connection cap, keep-alive and shutdown, and the log and start-up lines.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import mqttPacket from "mqtt-packet";
import type * as MP from "mqtt-packet";
import { type Config, DEFAULT_CONFIG, listenerConfig } from "../src/config/schema.ts";
import { StartError, startServer } from "../src/server.ts";
import { createLogger } from "../src/observe/log.ts";
import { startBroker, type TestBroker } from "./helpers/broker.ts";
import { concat, pattern } from "./helpers/bytes.ts";
import { CLIENT_CN, type TlsFiles, tlsFiles, UNTRUSTED_CN } from "./helpers/certs.ts";
import { at, MosquittoSub, mosquittoTest, runMosquittoTool } from "./helpers/mosquitto.ts";
import { connectMqttJs } from "./helpers/mqttjs.ts";
import { PahoScript, pahoTest } from "./helpers/paho.ts";
import { connectPacket, publishPacket, RawClient, summary } from "./helpers/raw.ts";
import { until, within } from "./helpers/wait.ts";
import {
  closeOf,
  encode,
  httpExchange,
  maskedFrame,
  Opcode,
  rawSecureWebSocket,
  rawWebSocket,
  readHead,
  readServerFrames,
  type ServerFrame,
  upgraded,
  upgradeRequest,
  WsClient,
  wsUrl,
} from "./helpers/websocket.ts";

// --- Local helpers -----------------------------------------------------------------------------------

type WsListener = Extract<Config["listeners"][number], { type: "ws" }>;
type WssListener = Extract<Config["listeners"][number], { type: "wss" }>;

/** A ws listener entry on 127.0.0.1, port 0, path /mqtt; `options` override. */
function wsListener(options: Partial<WsListener> = {}): WsListener {
  return listenerConfig("ws", { port: 0, ...options });
}

/** A wss listener entry on 127.0.0.1, port 0, serving the generated server certificate. */
function wssListener(files: TlsFiles, options: Partial<WssListener> = {}): WssListener {
  return listenerConfig("wss", {
    port: 0,
    cert_file: files.server.cert,
    key_file: files.server.key,
    ...options,
  });
}

/** A broker whose first listener (`broker.port`) is ws as `options` say, with a plain TCP listener beside it. */
function wsBroker(options: Partial<WsListener> = {}): Promise<TestBroker> {
  return startBroker({ listeners: [wsListener(options), listenerConfig("tcp", { port: 0 })] });
}

/** The port of the broker's first listener of `type`. */
function portOf(broker: TestBroker, type: "tcp" | "ws" | "wss"): number {
  const listener = broker.server.listeners.find((l) => l.type === type);
  assert.ok(listener, `the broker has a ${type} listener`);
  return listener.port;
}

/** MQTT.js options for the ws listener at /mqtt. */
const WS = { protocol: "ws", path: "/mqtt" } as const;

/** The broker's log line for `clientId` connecting, if there is one. */
function connectedLine(broker: TestBroker, clientId: string): string | undefined {
  return broker.logs.find((l) => l.includes(`client "${clientId}" connected from 127.0.0.1:`));
}

/** Asserts `clientId`'s connected line names `transport` and `protocol` ("MQTT 3.1.1", ...). */
function assertConnectedOver(
  broker: TestBroker,
  clientId: string,
  transport: string,
  protocol: string,
): void {
  const line = connectedLine(broker, clientId);
  assert.ok(line, `no connected line for ${clientId}:\n${broker.logs.join("\n")}`);
  assert.match(line, new RegExp(`connected from 127\\.0\\.0\\.1:\\d+ over ${transport} \\(${protocol}, `));
}

/** The log lines of one HTTP refusal (`why`) at `level`. */
function refusalLines(broker: TestBroker, level: "INFO" | "DEBUG", why: string): string[] {
  return broker.logs.filter((l) =>
    l.includes(` ${level} `) && /ws request from 127\.0\.0\.1:\d+ refused: /.test(l) &&
    l.endsWith(` refused: ${why}`)
  );
}

/** `bytes` cut into messages of `size` bytes (the last may be shorter). */
function chunks(bytes: Uint8Array, size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += size) out.push(bytes.subarray(at, at + size));
  return out;
}

/** The MQTT packets in `bytes` (the broker's stream), parsed at `version`; a partial one at the end is left. */
function mqttPackets(bytes: number[], version: 3 | 4 | 5): MP.Packet[] {
  const packets: MP.Packet[] = [];
  const parser = mqttPacket.parser({ protocolVersion: version });
  parser.on("packet", (packet: MP.Packet) => packets.push(packet));
  parser.on("error", (error: Error) => {
    throw error;
  });
  parser.parse(Buffer.from(bytes));
  return packets;
}

// --- MQTT.js over ws, with clients on the TCP listener ---------------------------------------------

for (const [version, name] of [[4, "MQTT 3.1.1"], [5, "MQTT 5.0"]] as const) {
  Deno.test(`ws: MQTT.js ${name} over ws and over tcp exchange QoS 0, 1 and 2 messages both ways`, async () => {
    await using broker = await wsBroker();
    assert.ok(
      broker.logs.some((l) => l.endsWith(`listening on ws 127.0.0.1:${broker.port}`)),
      broker.logs.join("\n"),
    );
    await using web = await connectMqttJs(broker.port, { ...WS, protocolVersion: version, clientId: "web" });
    await using tcp = await connectMqttJs(portOf(broker, "tcp"), {
      protocolVersion: version,
      clientId: "tcp",
    });
    await web.mqtt.subscribeAsync("to-web/#", { qos: 2 });
    await tcp.mqtt.subscribeAsync("to-tcp/#", { qos: 2 });
    for (const qos of [0, 1, 2] as const) {
      await tcp.mqtt.publishAsync(`to-web/q${qos}`, `from tcp at ${qos}`, { qos });
      await web.mqtt.publishAsync(`to-tcp/q${qos}`, `from ws at ${qos}`, { qos });
    }
    const seen = (messages: { topic: string; payload: string; qos: number }[]) =>
      messages.map((m) => [m.topic, m.payload, m.qos]).sort();
    assert.deepEqual(seen(await web.received(3)), [
      ["to-web/q0", "from tcp at 0", 0],
      ["to-web/q1", "from tcp at 1", 1],
      ["to-web/q2", "from tcp at 2", 2],
    ]);
    assert.deepEqual(seen(await tcp.received(3)), [
      ["to-tcp/q0", "from ws at 0", 0],
      ["to-tcp/q1", "from ws at 1", 1],
      ["to-tcp/q2", "from ws at 2", 2],
    ]);
    assertConnectedOver(broker, "web", "ws", name);
    assertConnectedOver(broker, "tcp", "tcp", name);
    await web.end();
    await broker.disconnected("web", "client sent DISCONNECT");
  });
}

mosquittoTest(
  "ws: retained messages cross transports: mosquitto_pub -r on tcp to MQTT.js on ws, and back",
  async () => {
    await using broker = await wsBroker();
    const tcp = at({ port: portOf(broker, "tcp") });
    const published = await runMosquittoTool("mosquitto_pub", [
      ...[...tcp, "-i", "mq-pub", "-t", "kept/from-tcp", "-m", "retained over tcp", "-q", "1", "-r"],
    ]);
    assert.equal(published.code, 0, published.stderr);
    await using web = await connectMqttJs(broker.port, { ...WS, protocolVersion: 5, clientId: "web-late" });
    await web.mqtt.subscribeAsync("kept/from-tcp", { qos: 1 });
    const [message] = await web.received(1);
    assert.deepEqual(
      [message.topic, message.payload, message.qos, message.retain],
      ["kept/from-tcp", "retained over tcp", 1, true],
    );

    await web.mqtt.publishAsync("kept/from-ws", "retained over ws", { qos: 1, retain: true });
    await using sub = new MosquittoSub([
      ...tcp,
      "-i",
      "mq-sub",
      "-t",
      "kept/from-ws",
      "-C",
      "1",
      "-v",
      "-F",
      "%r %t %p",
    ]);
    assert.deepEqual(await sub.lines(1), ["1 kept/from-ws retained over ws"]);
    assert.equal((await sub.finished()).code, 0);
  },
);

// --- wss ---------------------------------------------------------------------------------------------

Deno.test("wss: MQTT.js over wss, trusting the CA, exchanges messages with a tcp client", async () => {
  await using files = await tlsFiles();
  await using broker = await startBroker({
    listeners: [wssListener(files), listenerConfig("tcp", { port: 0 })],
  });
  assert.ok(
    broker.logs.some((l) => l.endsWith(`listening on wss 127.0.0.1:${broker.port}`)),
    broker.logs.join("\n"),
  );
  await using secure = await connectMqttJs(broker.port, {
    protocol: "wss",
    path: "/mqtt",
    ca: files.pems.ca.cert,
    rejectUnauthorized: true,
    clientId: "secure",
  });
  await secure.mqtt.subscribeAsync("to-wss", { qos: 1 });
  await using tcp = await RawClient.subscriber(portOf(broker, "tcp"), { clientId: "plain" }, [["to-tcp", 1]]);
  await tcp.publishAcked("to-wss", "through TLS", { qos: 1 });
  const [message] = await secure.received(1);
  assert.deepEqual([message.topic, message.payload, message.qos], ["to-wss", "through TLS", 1]);
  await secure.mqtt.publishAsync("to-tcp", "out of TLS", { qos: 1 });
  await tcp.expectPublish("to-tcp", "out of TLS", 1);
  assertConnectedOver(broker, "secure", "wss", "MQTT 3.1.1");
  await secure.end();
  await broker.disconnected("secure");
});

Deno.test("wss: a client that does not trust the CA fails the handshake; the broker keeps serving wss", async () => {
  await using files = await tlsFiles();
  await using broker = await startBroker({ listeners: [wssListener(files)] });
  const outcome = await connectMqttJs(broker.port, {
    protocol: "wss",
    path: "/mqtt",
    rejectUnauthorized: true,
    clientId: "distrustful",
  }).then(
    async (client) => {
      await client.end(true);
      return null;
    },
    (error: Error) => error,
  );
  assert.ok(outcome, "MQTT.js connected over wss without trusting the CA");
  assert.match(outcome.message, /certificate/i);
  assert.equal(broker.hasSession("distrustful"), false);
  assert.equal(connectedLine(broker, "distrustful"), undefined);

  await using trusting = await connectMqttJs(broker.port, {
    protocol: "wss",
    path: "/mqtt",
    ca: files.pems.ca.cert,
    clientId: "trusting",
  });
  await trusting.mqtt.subscribeAsync("after", { qos: 1 });
  await trusting.mqtt.publishAsync("after", "still serving", { qos: 1 });
  assert.equal((await trusting.received(1))[0].payload, "still serving");
});

// --- wss with client certificates -----------------------------------------------------------------------

/** Client certificates verified against the generated CA and required (as tests/tls.test.ts's MUTUAL). */
const MUTUAL = (files: TlsFiles): Partial<WssListener> => ({
  ca_file: files.ca.cert,
  require_client_certificate: true,
});

/** MQTT.js options for the wss listener at /mqtt, trusting the CA, offering the valid client certificate. */
const wssWithCert = (files: TlsFiles) =>
  ({
    protocol: "wss",
    path: "/mqtt",
    ca: files.pems.ca.cert,
    cert: files.pems.client.cert,
    key: files.pems.client.key,
    rejectUnauthorized: true,
  }) as const;

/** A broker whose first listener is wss as `options` say, with a plain TCP listener beside it. */
function wssBroker(files: TlsFiles, options: Partial<WssListener> = {}, auth?: { allow_anonymous: boolean }) {
  return startBroker({
    ...(auth ? { auth } : {}),
    listeners: [wssListener(files, options), listenerConfig("tcp", { port: 0 })],
  });
}

/** The payloads of frames as MQTT bytes, for mqtt-packet: the binary frames' payloads joined. */
function binaryPayloads(frames: ServerFrame[]): number[] {
  return frames.filter((f) => f.opcode === Opcode.binary).flatMap((f) => [...f.payload]);
}

Deno.test("wss: mutual TLS: MQTT.js with a client certificate is served when one is required", async () => {
  await using files = await tlsFiles();
  await using broker = await wssBroker(files, MUTUAL(files));
  await using client = await connectMqttJs(broker.port, { ...wssWithCert(files), clientId: "wss-mtls" });
  await client.mqtt.subscribeAsync("wss/mtls", { qos: 1 });
  await client.mqtt.publishAsync("wss/mtls", "mutual over wss", { qos: 1 });
  assert.equal((await client.received(1))[0].payload, "mutual over wss");
  await using tcp = await RawClient.subscriber(portOf(broker, "tcp"), { clientId: "tcp-watch" }, [[
    "wss/#",
    1,
  ]]);
  await client.mqtt.publishAsync("wss/to-tcp", "crossed", { qos: 1 });
  await tcp.expectPublish("wss/to-tcp", "crossed", 1);
  // Without use_identity_as_username the certificate makes no username, but it is logged.
  assertConnectedOver(broker, "wss-mtls", "wss", "MQTT 3.1.1");
  const line = connectedLine(broker, "wss-mtls")!;
  assert.doesNotMatch(line, /user /);
  assert.match(line, new RegExp(`certificate "[^"]*CN=${CLIENT_CN}"`));
  await client.end();
  await broker.disconnected("wss-mtls", "client sent DISCONNECT");
});

Deno.test("wss: mutual TLS: no client certificate, or one from another CA, fails the TLS handshake", async () => {
  await using files = await tlsFiles();
  await using broker = await wssBroker(files, MUTUAL(files));
  const noCert = {
    protocol: "wss",
    path: "/mqtt",
    ca: files.pems.ca.cert,
    rejectUnauthorized: true,
  } as const;
  const attempts = [
    ["wss-no-cert", noCert],
    ["wss-wrong-ca", {
      ...noCert,
      cert: files.pems.untrustedClient.cert,
      key: files.pems.untrustedClient.key,
    }],
  ] as const;
  for (const [clientId, options] of attempts) {
    const outcome = await connectMqttJs(broker.port, { ...options, clientId }).then(
      async (client) => {
        await client.end(true);
        return null;
      },
      (error: Error) => error,
    );
    assert.ok(outcome, `${clientId}: MQTT.js connected over wss`);
    assert.equal(broker.hasSession(clientId), false);
    assert.equal(connectedLine(broker, clientId), undefined);
  }
  // Deno's own TLS client, on a raw socket: the handshake (or the first read after it) fails too.
  const raw = await rawSecureWebSocket(broker.port, { ca: files.pems.ca.cert }).then(
    (conn) => {
      conn.close();
      return null;
    },
    (error: Error) => error,
  );
  assert.ok(raw, "a raw TLS client without a certificate got through the upgrade");
  await until(
    () => broker.logs.some((l) => /wss handshake( from \S+)? failed: /.test(l)),
    `a failed handshake line in:\n${broker.logs.join("\n")}`,
  );
  assert.ok(!broker.logs.some((l) => l.includes(UNTRUSTED_CN)), broker.logs.join("\n"));
  // And a client with a good certificate is still served.
  await using _good = await connectMqttJs(broker.port, { ...wssWithCert(files), clientId: "wss-after" });
  assertConnectedOver(broker, "wss-after", "wss", "MQTT 3.1.1");
});

Deno.test("wss: use_identity_as_username: the certificate's CN is the user, and gets in with allow_anonymous false", async () => {
  await using files = await tlsFiles();
  await using broker = await wssBroker(
    files,
    { ...MUTUAL(files), use_identity_as_username: true },
    { allow_anonymous: false },
  );
  for (const [clientId, version] of [["wss-id-4", 4], ["wss-id-5", 5]] as const) {
    await using client = await connectMqttJs(broker.port, {
      ...wssWithCert(files),
      protocolVersion: version,
      clientId,
      // CONNECT's own username and password are ignored.
      username: "claimed-name",
      password: "claimed-password",
    });
    await client.mqtt.subscribeAsync(`id/${clientId}`, { qos: 1 });
    await client.mqtt.publishAsync(`id/${clientId}`, "as the certificate", { qos: 1 });
    assert.equal((await client.received(1))[0].payload, "as the certificate");
    const line = connectedLine(broker, clientId);
    assert.ok(line, broker.logs.join("\n"));
    assert.ok(line.includes(` over wss (`), line);
    assert.ok(line.includes(`user "${CLIENT_CN}"`), line);
    assert.match(line, new RegExp(`certificate "[^"]*CN=${CLIENT_CN}"`));
    assert.ok(!broker.logs.some((l) => l.includes("claimed-name")), broker.logs.join("\n"));
    assert.equal(broker.hasSession(CLIENT_CN), false, "no session is named after the CN");
    await client.end();
    await broker.disconnected(clientId, "client sent DISCONNECT");
  }
});

Deno.test("wss: use_identity_as_username with no client certificate: CONNACK 5 (3.1.1), 0x87 (5.0)", async () => {
  await using files = await tlsFiles();
  // A CA but no requirement: the handshake succeeds without a certificate, and then there is no identity.
  await using broker = await wssBroker(files, { ca_file: files.ca.cert, use_identity_as_username: true });
  for (const [clientId, version] of [["nameless-4", 4], ["nameless-5", 5]] as const) {
    const conn = await rawSecureWebSocket(broker.port, { ca: files.pems.ca.cert });
    try {
      const connect = connectPacket({ clientId, protocolVersion: version, username: "claimed-name" });
      await conn.write(maskedFrame(Opcode.binary, encode(connect, version)));
      const { frames, eof } = await readServerFrames(conn, () => false, "the CONNACK and the close");
      assert.ok(eof);
      const [packet] = mqttPackets(binaryPayloads(frames), version);
      assert.equal(packet?.cmd, "connack", JSON.stringify(frames));
      const connack = packet as MP.IConnackPacket;
      if (version === 5) assert.equal(connack.reasonCode, 0x87);
      else assert.equal(connack.returnCode, 5);
      assert.equal(frames.at(-1)?.opcode, Opcode.close, "the connection ends with a close frame");
    } finally {
      conn.close();
    }
    assert.equal(broker.hasSession(clientId), false);
    assert.equal(connectedLine(broker, clientId), undefined);
  }
  // With the certificate, the same listener lets the client in as its CN.
  const conn = await rawSecureWebSocket(broker.port, {
    ca: files.pems.ca.cert,
    cert: files.pems.client.cert,
    key: files.pems.client.key,
  });
  try {
    await conn.write(maskedFrame(Opcode.binary, encode(connectPacket({ clientId: "named" }))));
    const { frames } = await readServerFrames(conn, (frames) => frames.length > 0, "the CONNACK");
    assert.deepEqual(binaryPayloads(frames), [0x20, 0x02, 0x00, 0x00]);
    assert.ok(connectedLine(broker, "named")?.includes(`user "${CLIENT_CN}"`), broker.logs.join("\n"));
  } finally {
    conn.close();
  }
  await broker.disconnected("named");
});

/** A v2 PROXY header (TCP over IPv4) naming 198.51.100.9:41000 as the client. */
const V2_IPV4_HEADER = Uint8Array.from([
  ...[0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a],
  0x21, // version 2, PROXY
  0x11, // AF_INET, STREAM
  0x00,
  12,
  ...[198, 51, 100, 9], // source
  ...[127, 0, 0, 1], // destination
  41000 >> 8,
  41000 & 0xff,
  0x22,
  0xb3, // 8883
]);

Deno.test("wss: behind a PROXY v2 header (the relay): header, then TLS, the upgrade and MQTT", async () => {
  await using files = await tlsFiles();
  await using broker = await wssBroker(files, { proxy_protocol: true });
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: broker.port });
  let conn: Deno.Conn = tcp;
  try {
    await tcp.write(V2_IPV4_HEADER);
    const secure = await Deno.startTls(tcp, { hostname: "localhost", caCerts: [files.pems.ca.cert] });
    conn = secure;
    await upgraded(secure);
    await secure.write(maskedFrame(Opcode.binary, encode(connectPacket({ clientId: "wss-proxied" }))));
    const { frames } = await readServerFrames(secure, (frames) => frames.length > 0, "the CONNACK");
    assert.deepEqual(binaryPayloads(frames), [0x20, 0x02, 0x00, 0x00]);
  } finally {
    conn.close();
  }
  const line = broker.logs.find((l) => l.includes(`client "wss-proxied" connected from `));
  assert.ok(line, broker.logs.join("\n"));
  assert.match(line, /connected from 198\.51\.100\.9:41000 via proxy 127\.0\.0\.1:\d+ over wss \(/);
  await broker.disconnected("wss-proxied");
});

// --- Python paho over websockets -----------------------------------------------------------------------

/**
 * Arguments: client id, topic. Connects over websockets to /mqtt (MQTT 5.0), publishes "paho at QoS n" at
 * QoS 1 and 2, waits for both to complete, disconnects; prints {"published": [...]}.
 */
const PAHO_WS_PUBLISHER = `
CLIENT_ID, TOPIC = sys.argv[2], sys.argv[3]
if hasattr(mqtt, "CallbackAPIVersion"):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=CLIENT_ID, protocol=mqtt.MQTTv5, transport="websockets")
else:
    c = mqtt.Client(client_id=CLIENT_ID, protocol=mqtt.MQTTv5, transport="websockets")
c.ws_set_options(path="/mqtt")
c.connect("127.0.0.1", PORT, clean_start=True)
c.loop_start()
infos = [c.publish(TOPIC, "paho at QoS %d" % q, qos=q) for q in (1, 2)]
for info in infos:
    info.wait_for_publish(5)
out({"published": [info.is_published() for info in infos]})
c.disconnect()
c.loop_stop()
`;

pahoTest("ws: paho over websockets publishes QoS 1 and 2 to an MQTT.js subscriber on ws", async () => {
  await using broker = await wsBroker();
  await using web = await connectMqttJs(broker.port, { ...WS, protocolVersion: 5, clientId: "js-sub" });
  await web.mqtt.subscribeAsync("paho/ws", { qos: 2 });
  await using paho = new PahoScript(broker.port, PAHO_WS_PUBLISHER, ["paho-ws", "paho/ws"]);
  assert.deepEqual(await paho.finished(), [{ published: [true, true] }]);
  const messages = (await web.received(2)).map((m) => [m.payload, m.qos]).sort();
  assert.deepEqual(messages, [["paho at QoS 1", 1], ["paho at QoS 2", 2]]);
  assertConnectedOver(broker, "paho-ws", "ws", "MQTT 5.0");
  await broker.disconnected("paho-ws", "client sent DISCONNECT");
});

// --- How the MQTT stream is cut into WebSocket messages and frames ------------------------------------

Deno.test("ws: a CONNECT sent one byte per message gets its CONNACK", async () => {
  await using broker = await wsBroker();
  await using client = await WsClient.open(wsUrl(broker.port), "mqtt");
  const connect = encode(connectPacket({
    clientId: "bytewise",
    username: "user",
    password: Buffer.from("secret"),
    will: { topic: "bytewise/will", payload: Buffer.from("gone"), qos: 1, retain: false },
  }));
  assert.ok(connect.length > 40);
  for (const byte of connect) client.sendBytes(new Uint8Array([byte]));
  const connack = await client.expect("connack");
  assert.equal(connack.returnCode, 0);
  assertConnectedOver(broker, "bytewise", "ws", "MQTT 3.1.1");
  // And the next packet, cut the same way, is read as well.
  for (const byte of encode({ cmd: "pingreq" })) client.sendBytes(new Uint8Array([byte]));
  await client.expect("pingresp");
});

Deno.test("ws: CONNECT, SUBSCRIBE and PUBLISH in one message are all processed", async () => {
  await using broker = await wsBroker();
  await using client = await WsClient.open(wsUrl(broker.port), "mqtt");
  client.sendBytes(concat([
    encode(connectPacket({ clientId: "all-at-once" })),
    encode({ cmd: "subscribe", messageId: 7, subscriptions: [{ topic: "once/#", qos: 1 }] }),
    encode(publishPacket("once/here", "in the same message", { qos: 1, messageId: 8 })),
  ]));
  assert.equal((await client.expect("connack")).returnCode, 0);
  const suback = await client.expect("suback");
  assert.deepEqual([suback.messageId, suback.granted], [7, [1]]);
  // The PUBACK and the delivery may come in either order.
  const packets = [await client.next(), await client.next()];
  const puback = packets.find((p) => p.cmd === "puback");
  const publish = packets.find((p) => p.cmd === "publish");
  assert.ok(puback && publish, JSON.stringify(packets.map(summary)));
  assert.equal(puback.messageId, 8);
  assert.deepEqual([publish.topic, publish.payload.toString(), publish.qos], [
    "once/here",
    "in the same message",
    1,
  ]);
});

Deno.test("ws: packets cut at arbitrary points across messages are reassembled in order", async () => {
  await using broker = await wsBroker();
  await using client = await WsClient.open(wsUrl(broker.port), "mqtt");
  const stream = concat([
    encode(connectPacket({ clientId: "cut-up" })),
    encode({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "cut/#", qos: 0 }] }),
    ...Array.from({ length: 5 }, (_, i) => encode(publishPacket(`cut/${i}`, `message ${i} `.repeat(i + 1)))),
  ]);
  // 7 does not divide any packet's length here: every boundary falls inside some packet.
  for (const piece of chunks(stream, 7)) client.sendBytes(piece);
  assert.equal((await client.expect("connack")).returnCode, 0);
  await client.expect("suback");
  for (let i = 0; i < 5; i++) {
    const publish = await client.expect("publish");
    assert.deepEqual([publish.topic, publish.payload.toString()], [
      `cut/${i}`,
      `message ${i} `.repeat(i + 1),
    ]);
  }
});

Deno.test("ws: a 300 KB PUBLISH sent in 64 KB messages arrives intact over ws and over tcp", async () => {
  await using broker = await wsBroker();
  const payload = pattern(300_000);
  await using receiver = await WsClient.connected(wsUrl(broker.port), { clientId: "big-receiver" });
  receiver.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "big", qos: 1 }] });
  await receiver.expect("suback");
  await using watcher = await RawClient.subscriber(portOf(broker, "tcp"), { clientId: "big-watcher" }, [[
    "big",
    1,
  ]]);
  await using sender = await WsClient.connected(wsUrl(broker.port), { clientId: "big-sender" });
  const publish = encode(publishPacket("big", payload, { qos: 1, messageId: 42 }));
  const pieces = chunks(publish, 64 * 1024);
  assert.equal(pieces.length, 5);
  for (const piece of pieces) sender.sendBytes(piece);
  assert.equal((await sender.expect("puback")).messageId, 42);

  const overWs = await receiver.expect("publish");
  assert.equal(overWs.payload.length, payload.length);
  assert.ok(Buffer.from(payload).equals(overWs.payload as Buffer), "the payload arrived unchanged over ws");
  receiver.send({ cmd: "puback", messageId: overWs.messageId });
  const overTcp = await watcher.expect("publish");
  assert.ok(Buffer.from(payload).equals(overTcp.payload as Buffer), "the payload arrived unchanged over tcp");
});

Deno.test("ws: a message fragmented into continuation frames is one chunk of the stream", async () => {
  await using broker = await wsBroker();
  const conn = await rawWebSocket(broker.port);
  try {
    const connect = encode(connectPacket({ clientId: "fragmented", keepalive: 30 }));
    const [a, b, c] = [connect.subarray(0, 3), connect.subarray(3, 10), connect.subarray(10)];
    await conn.write(concat([
      maskedFrame(Opcode.binary, a, false),
      maskedFrame(Opcode.continuation, b, false),
      maskedFrame(Opcode.continuation, c),
    ]));
    const { frames } = await readServerFrames(conn, (frames) => frames.length > 0, "the CONNACK frame");
    assert.equal(frames[0].opcode, Opcode.binary);
    assert.deepEqual([...frames[0].payload], [0x20, 0x02, 0x00, 0x00]);
    assertConnectedOver(broker, "fragmented", "ws", "MQTT 3.1.1");
  } finally {
    conn.close();
  }
  await broker.disconnected("fragmented", "connection lost");
});

// --- Control frames and protocol errors, on a raw socket ---------------------------------------------

/** A raw WebSocket whose CONNECT (3.1.1, `fields`) has been answered with CONNACK 0. */
async function rawConnected(broker: TestBroker, fields: Partial<MP.IConnectPacket>): Promise<Deno.TcpConn> {
  const conn = await rawWebSocket(broker.port);
  try {
    await conn.write(maskedFrame(Opcode.binary, encode(connectPacket(fields))));
    const { frames } = await readServerFrames(conn, (frames) => frames.length > 0, "the CONNACK");
    assert.deepEqual(binaryPayloads(frames), [0x20, 0x02, 0x00, 0x00]);
    return conn;
  } catch (error) {
    conn.close();
    throw error;
  }
}

/** `payload` as one unmasked (server-style) frame, which a client must not send. */
function unmaskedFrame(opcode: number, payload: Uint8Array): Uint8Array {
  assert.ok(payload.length < 126);
  return Uint8Array.from([0x80 | opcode, payload.length, ...payload]);
}

Deno.test("ws: frames in the same write as the upgrade request are read; so is a request sent byte by byte", async () => {
  await using broker = await wsBroker();
  // The request, CONNECT and PINGREQ in one write: what follows the blank line is already frames.
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: broker.port });
  try {
    await conn.write(concat([
      new TextEncoder().encode(upgradeRequest()),
      maskedFrame(Opcode.binary, encode(connectPacket({ clientId: "eager" }))),
      maskedFrame(Opcode.binary, encode({ cmd: "pingreq" })),
    ]));
    const { head, rest } = await readHead(conn);
    assert.match(head, /^HTTP\/1\.1 101 /);
    const { frames } = await readServerFrames(
      conn,
      (frames) => binaryPayloads(frames).length >= 6,
      "the CONNACK and the PINGRESP",
      { initial: rest },
    );
    assert.deepEqual(binaryPayloads(frames), [0x20, 0x02, 0x00, 0x00, 0xd0, 0x00]);
  } finally {
    conn.close();
  }
  await broker.disconnected("eager");
  // The request one byte per write, then CONNECT cut in two frames of which the first shares a write with
  // the request's last byte.
  const slow = await Deno.connect({ hostname: "127.0.0.1", port: broker.port });
  try {
    const request = new TextEncoder().encode(upgradeRequest());
    for (const byte of request.subarray(0, -1)) await slow.write(Uint8Array.of(byte));
    const connect = encode(connectPacket({ clientId: "slow" }));
    await slow.write(
      concat([request.subarray(-1), maskedFrame(Opcode.binary, connect.subarray(0, 2), false)]),
    );
    await slow.write(maskedFrame(Opcode.continuation, connect.subarray(2)));
    const { head, rest } = await readHead(slow);
    assert.match(head, /^HTTP\/1\.1 101 /);
    const { frames } = await readServerFrames(slow, (frames) => frames.length > 0, "the CONNACK", {
      initial: rest,
    });
    assert.deepEqual(binaryPayloads(frames), [0x20, 0x02, 0x00, 0x00]);
  } finally {
    slow.close();
  }
  await broker.disconnected("slow");
});

Deno.test("ws: an unmasked frame from the client is answered with close 1002, and the will is published", async () => {
  await using broker = await wsBroker();
  await using watcher = await RawClient.subscriber(portOf(broker, "tcp"), { clientId: "watcher" }, [[
    "will/#",
    1,
  ]]);
  const conn = await rawConnected(broker, {
    clientId: "unmasked",
    will: { topic: "will/unmasked", payload: Buffer.from("unmasked is gone"), qos: 1, retain: false },
  });
  try {
    await conn.write(unmaskedFrame(Opcode.binary, encode(publishPacket("will/x", "in clear"))));
    const { frames, eof } = await readServerFrames(conn, () => false, "the close frame and the end");
    assert.ok(eof);
    assert.deepEqual(frames.map((f) => f.opcode), [Opcode.close]);
    assert.deepEqual(closeOf(frames[0]), { code: 1002, reason: "client frame not masked" });
  } finally {
    conn.close();
  }
  await watcher.expectPublish("will/unmasked", "unmasked is gone", 1);
  await broker.disconnected("unmasked", "connection lost");
});

Deno.test({
  // Bug (websocket_frames.ts): the reader counts a 4-byte masking key in every header whatever the mask bit
  // says, so an unmasked frame with a payload under 4 bytes is not refused until 4 more bytes come: an
  // unmasked PINGREQ gets neither a PINGRESP nor a close, and the connection hangs until the keep-alive.
  name: "ws: an unmasked 2-byte frame (PINGREQ) is answered with close 1002 at once",
  // A regression test: found by review, fixed in websocket_frames.ts.
  async fn() {
    await using broker = await wsBroker();
    const conn = await rawConnected(broker, { clientId: "unmasked-short" });
    try {
      await conn.write(unmaskedFrame(Opcode.binary, encode({ cmd: "pingreq" })));
      const { frames, eof } = await readServerFrames(conn, () => false, "the close frame and the end");
      assert.ok(eof);
      assert.deepEqual(frames.map((f) => f.opcode), [Opcode.close]);
      assert.equal(closeOf(frames[0]).code, 1002);
    } finally {
      conn.close();
    }
  },
});

Deno.test("ws: a ping gets a pong with the same payload, before and after CONNECT and inside a fragmented message", async () => {
  await using broker = await wsBroker();
  const conn = await rawWebSocket(broker.port);
  try {
    // Before CONNECT.
    await conn.write(maskedFrame(Opcode.ping, new TextEncoder().encode("early")));
    let read = await readServerFrames(conn, (frames) => frames.length > 0, "the first pong");
    assert.deepEqual(read.frames.map((f) => [f.fin, f.opcode, new TextDecoder().decode(f.payload)]), [
      [true, Opcode.pong, "early"],
    ]);
    // A ping between the frames of a fragmented CONNECT: the pong comes, and so does the CONNACK.
    const connect = encode(connectPacket({ clientId: "pinger" }));
    const payload = Uint8Array.from({ length: 125 }, (_, i) => (i * 37) & 0xff);
    await conn.write(concat([
      maskedFrame(Opcode.binary, connect.subarray(0, 5), false),
      maskedFrame(Opcode.ping, payload),
      maskedFrame(Opcode.continuation, connect.subarray(5)),
    ]));
    read = await readServerFrames(conn, (frames) => frames.length >= 2, "the pong and the CONNACK");
    assert.deepEqual(read.frames.map((f) => f.opcode), [Opcode.pong, Opcode.binary]);
    assert.deepEqual(read.frames[0].payload, payload);
    assert.deepEqual([...read.frames[1].payload], [0x20, 0x02, 0x00, 0x00]);
    // An empty ping, then MQTT goes on: SUBSCRIBE, PUBLISH at QoS 1, its PUBACK and the delivery.
    await conn.write(maskedFrame(Opcode.ping, new Uint8Array(0)));
    await conn.write(maskedFrame(
      Opcode.binary,
      encode({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "ping/#", qos: 1 }] }),
    ));
    read = await readServerFrames(conn, (frames) => frames.length >= 2, "the pong and the SUBACK");
    assert.deepEqual(read.frames.map((f) => [f.opcode, f.payload.length]), [[Opcode.pong, 0], [
      Opcode.binary,
      5,
    ]]);
    await conn.write(
      maskedFrame(Opcode.binary, encode(publishPacket("ping/x", "after pings", { qos: 1, messageId: 2 }))),
    );
    // A pong from the client (unsolicited) changes nothing.
    await conn.write(maskedFrame(Opcode.pong, new TextEncoder().encode("unasked")));
    let packets: MP.Packet[] = [];
    read = await readServerFrames(conn, (frames) => {
      packets = mqttPackets(binaryPayloads(frames), 4);
      return packets.length >= 2;
    }, "the PUBACK and the delivery");
    assert.ok(read.frames.every((f) => f.opcode === Opcode.binary), JSON.stringify(read.frames));
    assert.deepEqual(packets.map((p) => p.cmd).sort(), ["puback", "publish"]);
    const publish = packets.find((p) => p.cmd === "publish") as MP.IPublishPacket;
    assert.equal(publish.payload.toString(), "after pings");
  } finally {
    conn.close();
  }
  await broker.disconnected("pinger", "connection lost");
});

Deno.test("ws: a close frame from the client is answered with a close frame, the connection ends, the will is published", async () => {
  await using broker = await wsBroker();
  await using watcher = await RawClient.subscriber(portOf(broker, "tcp"), { clientId: "watcher" }, [[
    "will/#",
    1,
  ]]);
  const conn = await rawConnected(broker, {
    clientId: "closer",
    will: { topic: "will/closer", payload: Buffer.from("closer closed"), qos: 1, retain: false },
  });
  try {
    await conn.write(
      maskedFrame(Opcode.close, Uint8Array.from([0x03, 0xe9, ...new TextEncoder().encode("bye")])),
    );
    const { frames, eof } = await readServerFrames(conn, () => false, "the close frame and the end");
    assert.ok(eof, "the broker ended the connection");
    assert.deepEqual(frames.map((f) => f.opcode), [Opcode.close]);
    assert.equal(closeOf(frames[0]).code, 1000);
  } finally {
    conn.close();
  }
  // No DISCONNECT was sent: the will goes out.
  await watcher.expectPublish("will/closer", "closer closed", 1);
  await broker.disconnected("closer");
  assert.equal(broker.loggedDisconnect("closer", "client sent DISCONNECT"), false, broker.logs.join("\n"));
});

Deno.test("ws: a close frame without a payload, and one before CONNECT, are answered and end the connection", async () => {
  await using broker = await wsBroker();
  for (const connected of [false, true]) {
    const conn = connected
      ? await rawConnected(broker, { clientId: "bare-close" })
      : await rawWebSocket(broker.port);
    try {
      await conn.write(maskedFrame(Opcode.close, new Uint8Array(0)));
      const { frames, eof } = await readServerFrames(conn, () => false, "the close frame and the end");
      assert.ok(eof);
      assert.deepEqual(frames.map((f) => f.opcode), [Opcode.close]);
      assert.equal(closeOf(frames[0]).code, 1000);
    } finally {
      conn.close();
    }
  }
  await broker.disconnected("bare-close");
});

Deno.test("ws: frames the reader refuses close with their code: reserved bit, unknown opcode, long ping, 1-byte close, stray continuation", async () => {
  await using broker = await wsBroker();
  const withRsv1 = maskedFrame(Opcode.binary, encode({ cmd: "pingreq" }));
  withRsv1[0] |= 0x40;
  const cases: [string, Uint8Array, number, string][] = [
    ["reserved bit", withRsv1, 1002, "reserved bits set"],
    ["opcode 3", maskedFrame(0x3, Uint8Array.of(1, 2, 3, 4)), 1002, "unknown opcode 3"],
    ["126-byte ping", maskedFrame(Opcode.ping, new Uint8Array(126)), 1002, "control frame over 125 bytes"],
    ["1-byte close", maskedFrame(Opcode.close, Uint8Array.of(3)), 1002, "close frame of 1 byte"],
    [
      "continuation first",
      maskedFrame(Opcode.continuation, Uint8Array.of(1)),
      1002,
      "continuation frame without a message",
    ],
  ];
  for (const [i, [what, bytes, code, reason]] of cases.entries()) {
    const conn = await rawConnected(broker, { clientId: `refused-${i}` });
    try {
      await conn.write(bytes);
      const { frames, eof } = await readServerFrames(conn, () => false, `the close after a ${what}`);
      assert.ok(eof, what);
      assert.deepEqual(frames.map((f) => f.opcode), [Opcode.close], what);
      assert.deepEqual(closeOf(frames[0]), { code, reason }, what);
    } finally {
      conn.close();
    }
    await broker.disconnected(`refused-${i}`, "connection lost");
  }
});

// --- The sub-protocol --------------------------------------------------------------------------------

Deno.test("ws: the sub-protocol mqttv3.1 is accepted, and an MQTT 3.1 client connects with it", async () => {
  await using broker = await wsBroker();
  await using client = await WsClient.open(wsUrl(broker.port), "mqttv3.1", 3);
  assert.equal(client.protocol, "mqttv3.1");
  const connack = await client.connect({ protocolVersion: 3, clientId: "old-timer" });
  assert.equal(connack.returnCode, 0);
  assertConnectedOver(broker, "old-timer", "ws", "MQTT 3.1");
});

Deno.test("ws: MQTT.js at MQTT 3.1 (which offers mqttv3.1) connects over ws", async () => {
  await using broker = await wsBroker();
  await using client = await connectMqttJs(broker.port, {
    ...WS,
    protocolId: "MQIsdp",
    protocolVersion: 3,
    clientId: "js-31",
  });
  await client.mqtt.subscribeAsync("v31", { qos: 1 });
  await client.mqtt.publishAsync("v31", "three one", { qos: 1 });
  assert.equal((await client.received(1))[0].payload, "three one");
  assertConnectedOver(broker, "js-31", "ws", "MQTT 3.1");
});

Deno.test("ws: offered several sub-protocols, the broker picks mqtt", async () => {
  await using broker = await wsBroker();
  for (const offered of [["foo", "mqtt"], ["mqttv3.1", "mqtt"], ["mqtt", "mqttv3.1"]]) {
    await using client = await WsClient.open(wsUrl(broker.port), offered);
    assert.equal(client.protocol, "mqtt", `offered ${offered.join(", ")}`);
  }
  await using client = await WsClient.open(wsUrl(broker.port), ["foo", "mqttv3.1"]);
  assert.equal(client.protocol, "mqttv3.1");
});

Deno.test("ws: an upgrade without the mqtt sub-protocol is refused with 400, logged naming what was offered", async () => {
  await using broker = await wsBroker();
  const none = await WsClient.refused(wsUrl(broker.port));
  // Deno reports a refused handshake as an error event, then a close event with code 0 (browsers say 1006).
  assert.deepEqual([none.opened, none.errored, none.wasClean], [false, true, false], JSON.stringify(none));
  await until(
    () => refusalLines(broker, "INFO", "WebSocket sub-protocol mqtt required (offered: none)").length === 1,
    "the refusal line",
  );

  // The same kind of refusal, whatever was offered: logged again at debug only, so a client cannot flood
  // the log by offering something new each time.
  const foo = await WsClient.refused(wsUrl(broker.port), ["foo", "bar"]);
  assert.equal(foo.opened, false, "the WebSocket opened");
  await until(
    () =>
      refusalLines(broker, "DEBUG", "WebSocket sub-protocol mqtt required (offered: foo, bar)").length === 1,
    "the refusal line",
  );
  assert.equal(
    refusalLines(broker, "INFO", "WebSocket sub-protocol mqtt required (offered: foo, bar)").length,
    0,
  );

  const answer = await httpExchange(broker.port, upgradeRequest("/mqtt", "mqtt5"));
  assert.equal(answer.status, 400);
  assert.equal(answer.body, "WebSocket sub-protocol mqtt required (offered: mqtt5)\n");
  assert.equal(broker.server.broker.sessions.size, 0);
});

// --- What is not MQTT over WebSocket -------------------------------------------------------------------

Deno.test("ws: a plain GET on the path gets 426 with Upgrade: websocket", async () => {
  await using broker = await wsBroker();
  const answer = await httpExchange(broker.port, "GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  assert.equal(answer.status, 426);
  assert.equal(answer.headers.get("upgrade"), "websocket");
  assert.match(answer.body, /needs a WebSocket upgrade/);
  // The same through fetch.
  using http = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
  const response = await fetch(`http://127.0.0.1:${broker.port}/mqtt`, { client: http });
  assert.equal(response.status, 426);
  assert.equal(response.headers.get("upgrade"), "websocket");
  assert.match(await response.text(), /MQTT over WebSocket: \/mqtt needs a WebSocket upgrade/);
});

Deno.test("ws: another path gets 404, for a plain request and an upgrade alike; a query string is ignored", async () => {
  await using broker = await wsBroker();
  for (const path of ["/", "/other", "/mqtt/", "/MQTT", "/mqtt/x"]) {
    const answer = await httpExchange(broker.port, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    assert.equal(answer.status, 404, path);
    assert.equal(answer.body, "no MQTT endpoint at this path; it is /mqtt\n");
    const upgrade = await httpExchange(broker.port, upgradeRequest(path));
    assert.equal(upgrade.status, 404, `upgrade at ${path}`);
  }
  const refused = await WsClient.refused(wsUrl(broker.port, "/elsewhere"), "mqtt");
  assert.equal(refused.opened, false);
  // Only the path is compared: a token in the query string does not get in the way.
  await using _queried = await WsClient.connected(wsUrl(broker.port, "/mqtt?token=abc"), {
    clientId: "queried",
  });
  assertConnectedOver(broker, "queried", "ws", "MQTT 3.1.1");
});

Deno.test("ws: a configured path other than /mqtt is the only one served", async () => {
  await using broker = await wsBroker({ path: "/broker/v1" });
  await using _custom = await WsClient.connected(wsUrl(broker.port, "/broker/v1"), { clientId: "custom" });
  const refused = await WsClient.refused(wsUrl(broker.port), "mqtt");
  assert.equal(refused.opened, false);
  const answer = await httpExchange(broker.port, upgradeRequest("/mqtt"));
  assert.equal(answer.status, 404);
  assert.equal(answer.body, "no MQTT endpoint at this path; it is /broker/v1\n");
});

Deno.test("ws: a POST to the path is answered 426, like any request that is not an upgrade", async () => {
  await using broker = await wsBroker();
  using http = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
  const response = await fetch(`http://127.0.0.1:${broker.port}/mqtt`, {
    client: http,
    method: "POST",
    body: encode(connectPacket({ clientId: "posted" })),
  });
  assert.equal(response.status, 426);
  assert.equal(response.headers.get("upgrade"), "websocket");
  await response.body?.cancel();
  assert.equal(broker.hasSession("posted"), false);
  // And the broker still serves.
  await using _afterPost = await WsClient.connected(wsUrl(broker.port), { clientId: "after-post" });
});

Deno.test("ws: a text frame after CONNECT closes with 1003 and the will is published", async () => {
  await using broker = await wsBroker();
  await using watcher = await RawClient.subscriber(portOf(broker, "tcp"), { clientId: "watcher" }, [[
    "will/#",
    1,
  ]]);
  await using client = await WsClient.connected(wsUrl(broker.port), {
    clientId: "texter",
    will: { topic: "will/texter", payload: Buffer.from("texter is gone"), qos: 1, retain: false },
  });
  client.socket.send("PUBLISH hello");
  const end = await client.closedByBroker();
  assert.deepEqual([end.code, end.reason], [1003, "MQTT needs binary frames"]);
  await watcher.expectPublish("will/texter", "texter is gone", 1);
  await broker.disconnected("texter", "connection lost");
});

Deno.test("ws: a text frame before CONNECT closes with 1003 and no session is made", async () => {
  await using broker = await wsBroker();
  await using client = await WsClient.open(wsUrl(broker.port), "mqtt");
  client.socket.send(new TextDecoder("latin1").decode(encode(connectPacket({ clientId: "as-text" }))));
  const end = await client.closedByBroker();
  assert.equal(end.code, 1003);
  assert.deepEqual(end.packets, []);
  assert.equal(broker.hasSession("as-text"), false);
});

Deno.test("ws: garbage bytes close that connection only; a bystander on another ws connection keeps working", async () => {
  await using broker = await wsBroker();
  await using bystander = await WsClient.connected(wsUrl(broker.port), { clientId: "bystander" });
  bystander.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "alive", qos: 1 }] });
  await bystander.expect("suback");

  // After CONNECT: a packet of reserved type 0.
  await using offender = await WsClient.connected(wsUrl(broker.port), {
    clientId: "offender",
    will: { topic: "alive", payload: Buffer.from("offender's will"), qos: 1, retain: false },
  });
  offender.sendBytes(new Uint8Array([0x00, 0x00]));
  const end = await offender.closedByBroker();
  assert.deepEqual(end.packets, []);
  assert.equal(end.code, 1000, JSON.stringify(end));
  await broker.disconnected("offender", "malformed packet: reserved packet type");
  const will = await bystander.expect("publish");
  assert.deepEqual([will.topic, will.payload.toString()], ["alive", "offender's will"]);
  bystander.send({ cmd: "puback", messageId: will.messageId });

  // Before CONNECT: an HTTP request line sent as a binary message.
  await using stranger = await WsClient.open(wsUrl(broker.port), "mqtt");
  stranger.sendBytes(new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"));
  assert.deepEqual((await stranger.closedByBroker()).packets, []);

  bystander.send(publishPacket("alive", "still here", { qos: 1, messageId: 2 }));
  const packets = [await bystander.next(), await bystander.next()];
  assert.deepEqual(
    packets.map((p) => p.cmd).sort(),
    ["puback", "publish"],
    JSON.stringify(packets.map(summary)),
  );
  assert.equal(broker.server.metrics.protocolErrors, 2);
});

Deno.test("ws: each kind of HTTP refusal is logged once at info, and again only at debug", async () => {
  await using broker = await wsBroker();
  const notFound = "no MQTT endpoint at this path; it is /mqtt";
  const notUpgraded = "MQTT over WebSocket: /mqtt needs a WebSocket upgrade";
  for (let i = 1; i <= 3; i++) {
    assert.equal((await httpExchange(broker.port, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")).status, 404);
    assert.equal(refusalLines(broker, "INFO", notFound).length, 1, broker.logs.join("\n"));
    assert.equal(refusalLines(broker, "DEBUG", notFound).length, i - 1, broker.logs.join("\n"));
  }
  for (let i = 1; i <= 2; i++) {
    assert.equal((await httpExchange(broker.port, "GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n")).status, 426);
    assert.equal(refusalLines(broker, "INFO", notUpgraded).length, 1, broker.logs.join("\n"));
    assert.equal(refusalLines(broker, "DEBUG", notUpgraded).length, i - 1, broker.logs.join("\n"));
  }
});

// --- Limits ------------------------------------------------------------------------------------------

Deno.test("ws: listeners[].max_connections 1: a second ws client is closed unanswered; tcp still accepts", async () => {
  await using broker = await wsBroker({ max_connections: 1 });
  await using first = await WsClient.connected(wsUrl(broker.port), { clientId: "first" });
  await using second = await WsClient.open(wsUrl(broker.port), "mqtt");
  second.send(connectPacket({ clientId: "second" }));
  const end = await second.closedByBroker();
  assert.deepEqual(end.packets, []);
  assert.equal(end.code, 1000);
  assert.equal(broker.hasSession("second"), false);
  assert.ok(
    broker.logs.some((l) => l.includes("connection limit reached (listeners[0].max_connections = 1)")),
    broker.logs.join("\n"),
  );
  assert.equal(broker.server.metrics.connectionsRefused, 1);
  await using _tcp = await RawClient.connected(portOf(broker, "tcp"), { clientId: "over-tcp" });
  // Once the first has gone, the ws listener takes a client again.
  await first.close();
  await broker.disconnected("first");
  await using _third = await WsClient.connected(wsUrl(broker.port), { clientId: "third" });
});

// --- Keep-alive and shutdown -------------------------------------------------------------------------

Deno.test("ws: keep-alive timeout closes an idle ws client and publishes its will", async () => {
  await using broker = await wsBroker();
  await using watcher = await RawClient.subscriber(portOf(broker, "tcp"), { clientId: "watcher" }, [[
    "will/#",
    0,
  ]]);
  await using idle = await WsClient.connected(wsUrl(broker.port), {
    clientId: "idle",
    keepalive: 1,
    will: { topic: "will/idle", payload: Buffer.from("idle timed out"), qos: 0, retain: false },
  });
  const end = await idle.closedByBroker();
  assert.deepEqual(end.packets, []);
  await watcher.expectPublish("will/idle", "idle timed out");
  await broker.disconnected("idle", "keep-alive timeout");
});

Deno.test("ws: stop() closes ws clients (MQTT 5: DISCONNECT 0x8B, then close 1000) and resolves", async () => {
  const broker = await wsBroker();
  try {
    await using v5 = await WsClient.connected(wsUrl(broker.port), { clientId: "five", protocolVersion: 5 });
    await using v4 = await WsClient.connected(wsUrl(broker.port), { clientId: "four" });
    await within(broker.stop(), "the broker to stop", 15_000);
    const [end5, end4] = [await v5.closedByBroker(), await v4.closedByBroker()];
    assert.deepEqual(end5.packets.map((p) => [p.cmd, (p as { reasonCode?: number }).reasonCode]), [[
      "disconnect",
      0x8b,
    ]]);
    assert.equal(end5.code, 1000);
    assert.deepEqual([end4.packets, end4.code], [[], 1000]);
    assert.ok(broker.loggedDisconnect("five", "broker shutting down"), broker.logs.join("\n"));
    // The port is free again.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: broker.port });
    listener.close();
  } finally {
    await broker.stop();
  }
});

Deno.test({
  // Found against the first, Deno.serve-based listener, whose WebSocket could not be dropped once closing.
  name: "ws: stop() resolves though a ws client never answers the close frame",
  async fn() {
    await using broker = await wsBroker();
    const conn = await rawWebSocket(broker.port);
    try {
      await conn.write(maskedFrame(Opcode.binary, encode(connectPacket({ clientId: "silent" }))));
      await until(() => connectedLine(broker, "silent") !== undefined, "the silent client to connect");
      // From here on the peer never reads or writes again. The bound is a hang guard, not a timing claim.
      await within(broker.stop(), "the broker to stop with a peer that never answers", 15_000);
    } finally {
      // Lets a broken broker finish stopping, so the failure is this test's alone.
      conn.close();
    }
  },
});

Deno.test({
  // The same, seen from the peer: the broker's close frame unanswered, the connection is dropped anyway.
  name: "ws: a peer that never answers the close frame is dropped after the linger",
  async fn() {
    await using broker = await wsBroker();
    const conn = await rawWebSocket(broker.port);
    try {
      await conn.write(maskedFrame(Opcode.binary, encode(connectPacket({ clientId: "mute", keepalive: 1 }))));
      // It reads (the CONNACK, the close frame) but never answers; the TCP connection must end anyway.
      const { frames, eof } = await readServerFrames(conn, () => false, "the broker to drop the connection", {
        ms: 15_000,
      });
      assert.ok(eof);
      assert.deepEqual(frames.map((f) => f.opcode), [Opcode.binary, Opcode.close]);
      await broker.disconnected("mute", "keep-alive timeout");
    } finally {
      conn.close();
    }
  },
});

// --- Start-up errors ---------------------------------------------------------------------------------

/** Asserts startBroker with `listeners` rejects with one StartError line matching `pattern`. */
async function assertStartRefused(listeners: Config["listeners"], pattern: RegExp): Promise<string> {
  const error = await startBroker({ listeners }).then(
    async (broker) => {
      await broker.stop();
      return new Error(`the broker started instead; its log:\n${broker.logs.join("\n")}`);
    },
    (error: unknown) => error,
  );
  assert.ok(error instanceof StartError, `expected a StartError: ${error}`);
  assert.equal(error.message.split("\n").length, 1, `one line: ${JSON.stringify(error.message)}`);
  assert.match(error.message, pattern);
  return error.message;
}

Deno.test("wss: a missing cert_file or key_file stops start-up with one line naming it", async () => {
  await using files = await tlsFiles();
  const missing = `${files.dir}/no-such.pem`;
  for (const field of ["cert_file", "key_file"] as const) {
    const message = await assertStartRefused(
      [wssListener(files, { [field]: missing })],
      /^cannot listen on wss 127\.0\.0\.1:0: /,
    );
    assert.ok(message.includes(missing), `${field}: names ${missing}: ${message}`);
  }
});

Deno.test("ws: a port already in use stops start-up: cannot listen on ws ...: address already in use", async () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = taken.addr.port;
  await assertStartRefused(
    [wsListener({ port })],
    new RegExp(`^cannot listen on ws 127\\.0\\.0\\.1:${port}: address already in use$`),
  );
});

Deno.test({
  // Found against the Deno.serve-based listener, which freed its port in drained() alone.
  name: "ws: a bad wss listener after a good ws one fails start-up and frees the ws port",
  async fn() {
    await using files = await tlsFiles();
    const config = structuredClone(DEFAULT_CONFIG) as Config;
    config.listeners = [wsListener(), wssListener(files, { cert_file: `${files.dir}/no-such.pem` })];
    const logs: string[] = [];
    const error = await startServer(config, createLogger("debug", (line) => logs.push(line))).then(
      async (server) => {
        await server.stop();
        return null;
      },
      (error: unknown) => error,
    );
    assert.ok(error instanceof StartError, `expected a StartError: ${error}`);
    const port = Number(logs.map((l) => l.match(/listening on ws 127\.0\.0\.1:(\d+)$/)).find((m) => m)?.[1]);
    assert.ok(port > 0, logs.join("\n"));
    // The port must be free: binding it succeeds.
    const listener = Deno.listen({ hostname: "127.0.0.1", port });
    listener.close();
  },
});
