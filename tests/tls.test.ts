/**
 * The `tls` listener: MQTT over TLS with the server's certificate from files, optional and required client
 * certificates verified against ca_file, use_identity_as_username, what a failed handshake or plain TCP on
 * the TLS port does, and the start-up errors of a bad certificate or key. Real clients: mosquitto_pub and
 * mosquitto_sub (OpenSSL), MQTT.js (node:tls). Certificates come from tests/helpers/certs.ts.
 */

import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import { type Config, listenerConfig } from "../src/config/schema.ts";
import { StartError } from "../src/server.ts";
import { startBroker, type TestBroker } from "./helpers/broker.ts";
import {
  CLIENT_CN,
  EXPIRED_CN,
  type KeyPairFiles,
  type TlsFiles,
  tlsFiles,
  UNTRUSTED_CN,
} from "./helpers/certs.ts";
import { MosquittoSub, mosquittoTest, runMosquittoTool } from "./helpers/mosquitto.ts";
import { connectMqttJs, type TestClient } from "./helpers/mqttjs.ts";
import { connectPacket, RawClient } from "./helpers/raw.ts";
import { until, within } from "./helpers/wait.ts";

// --- Local helpers -----------------------------------------------------------------------------------

type TlsListener = Extract<Config["listeners"][number], { type: "tls" }>;

/** A tls listener entry on 127.0.0.1, port 0, serving the generated server certificate; `options` override. */
function tlsListener(files: TlsFiles, options: Partial<TlsListener> = {}): TlsListener {
  return listenerConfig("tls", {
    port: 0,
    cert_file: files.server.cert,
    key_file: files.server.key,
    ...options,
  });
}

/**
 * A broker whose first listener (`broker.port`) is TLS as `options` say, with a plain TCP listener beside it
 * for watchers that need no certificate.
 */
function tlsBroker(files: TlsFiles, options: Partial<TlsListener> = {}): Promise<TestBroker> {
  return startBroker({
    listeners: [tlsListener(files, options), listenerConfig("tcp", { port: 0 })],
  });
}

/** Mutual TLS: client certificates verified against the generated CA and required. */
const MUTUAL = (files: TlsFiles): Partial<TlsListener> => ({
  ca_file: files.ca.cert,
  require_client_certificate: true,
});

/** The port of the broker's plain TCP listener. */
function tcpPort(broker: TestBroker): number {
  const listener = broker.server.listeners.find((l) => l.type === "tcp");
  assert.ok(listener, "the broker has a tcp listener");
  return listener.port;
}

/** mosquitto_pub/_sub arguments: the TLS listener's address, trusting the generated CA (server verified). */
function tlsArgs(broker: TestBroker, files: TlsFiles, client?: KeyPairFiles): string[] {
  const args = ["-h", "127.0.0.1", "-p", String(broker.port), "--cafile", files.ca.cert];
  if (client) args.push("--cert", client.cert, "--key", client.key);
  return args;
}

/** The broker's log line for `clientId` connecting, if there is one. */
function connectedLine(broker: TestBroker, clientId: string): string | undefined {
  return broker.logs.find((l) => l.includes(`client "${clientId}" connected from 127.0.0.1:`));
}

/** Asserts the broker has never let `clientId` in: no session, no "connected" log line. */
function assertNeverConnected(broker: TestBroker, clientId: string): void {
  assert.equal(broker.hasSession(clientId), false, `${clientId} has no session`);
  assert.equal(connectedLine(broker, clientId), undefined, `${clientId} was never logged as connected`);
}

/**
 * Asserts a client with a valid certificate still gets a message through the TLS listener to a watcher on
 * the TCP one: the broker keeps serving after whatever the test did to it.
 */
async function assertStillServes(broker: TestBroker, files: TlsFiles, tag: string): Promise<void> {
  await using watcher = await RawClient.subscriber(tcpPort(broker), { clientId: `watch-${tag}` }, [
    [`still/${tag}`, 0],
  ]);
  const result = await runMosquittoTool("mosquitto_pub", [
    ...tlsArgs(broker, files, files.client),
    ...["-i", `good-${tag}`, "-t", `still/${tag}`, "-m", "still serving", "-q", "1"],
  ]);
  assert.equal(result.code, 0, result.stderr);
  await watcher.expectPublish(`still/${tag}`, "still serving");
}

/**
 * mosquitto_pub offering `client` (or no certificate) to a listener that requires one must fail: a non-zero
 * exit, no session, no "connected" line; then a good client still gets through.
 */
async function assertHandshakeRefused(
  files: TlsFiles,
  client: KeyPairFiles | undefined,
  clientId: string,
): Promise<void> {
  await using broker = await tlsBroker(files, MUTUAL(files));
  await using watcher = await RawClient.subscriber(tcpPort(broker), { clientId: "watch" }, [[
    "refused/#",
    0,
  ]]);
  const result = await runMosquittoTool("mosquitto_pub", [
    ...tlsArgs(broker, files, client),
    ...["-i", clientId, "-t", "refused/x", "-m", "must not arrive", "-q", "1"],
  ]);
  assert.notEqual(result.code, 0, `mosquitto_pub should fail; stdout ${result.stdout}`);
  assertNeverConnected(broker, clientId);
  // Nothing reached the watcher: PINGRESP comes before anything else.
  await watcher.assertIdle();
  await assertStillServes(broker, files, "after-refusal");
}

/** Opens a plain TCP connection; sends `bytes`; returns everything the peer sent until it closed. */
async function plainExchange(port: number, bytes: Uint8Array): Promise<Uint8Array> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(bytes);
    const received: number[] = [];
    const buffer = new Uint8Array(4096);
    await within(
      (async () => {
        while (true) {
          let n: number | null;
          try {
            n = await conn.read(buffer);
          } catch {
            return; // reset by the broker: closed too
          }
          if (n === null) return;
          received.push(...buffer.subarray(0, n));
        }
      })(),
      "the broker to close a plain TCP connection on its TLS port",
    );
    return new Uint8Array(received);
  } finally {
    conn.close();
  }
}

// --- Serving MQTT over TLS ---------------------------------------------------------------------------

mosquittoTest(
  "tls: mosquitto_sub and mosquitto_pub exchange a message, verifying the server with --cafile",
  async () => {
    await using files = await tlsFiles();
    await using broker = await startBroker({ listeners: [tlsListener(files)] });
    assert.ok(
      broker.logs.some((l) => l.endsWith(`listening on tls 127.0.0.1:${broker.port}`)),
      broker.logs.join("\n"),
    );
    await using sub = await MosquittoSub.subscribed(broker, "tls-sub", "tls/greeting", [
      ...["--cafile", files.ca.cert, "-q", "1", "-C", "1"],
    ]);
    const result = await runMosquittoTool("mosquitto_pub", [
      ...tlsArgs(broker, files),
      ...["-i", "tls-pub", "-t", "tls/greeting", "-m", "hello over tls", "-q", "1"],
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(await sub.lines(1), ["hello over tls"]);
    assert.equal((await sub.finished()).code, 0);
    assert.ok(connectedLine(broker, "tls-pub"), broker.logs.join("\n"));
    assert.equal(broker.server.listeners[0].type, "tls");
  },
);

mosquittoTest("tls: mosquitto_pub -V mqttv5 over TLS reaches a subscriber on the TCP listener", async () => {
  await using files = await tlsFiles();
  await using broker = await tlsBroker(files);
  await using watcher = await RawClient.subscriber(tcpPort(broker), { clientId: "watch" }, [["v5/tls", 1]]);
  const result = await runMosquittoTool("mosquitto_pub", [
    ...tlsArgs(broker, files),
    ...["-V", "mqttv5", "-i", "tls-v5", "-t", "v5/tls", "-m", "five", "-q", "1"],
  ]);
  assert.equal(result.code, 0, result.stderr);
  await watcher.expectPublish("v5/tls", "five", 1);
  const line = connectedLine(broker, "tls-v5");
  assert.ok(line?.includes("MQTT 5.0"), `connected line: ${line}`);
});

Deno.test("tls: MQTT.js over mqtts, trusting the CA, subscribes and receives its own QoS 1 message", async () => {
  await using files = await tlsFiles();
  await using broker = await startBroker({ listeners: [tlsListener(files)] });
  await using client = await connectMqttJs(broker.port, {
    protocol: "mqtts",
    ca: files.pems.ca.cert,
    clientId: "js-tls",
  });
  await client.mqtt.subscribeAsync("js/tls", { qos: 1 });
  await client.mqtt.publishAsync("js/tls", "from mqtt.js", { qos: 1 });
  const [message] = await client.received(1);
  assert.deepEqual([message.topic, message.payload, message.qos], ["js/tls", "from mqtt.js", 1]);
  assert.ok(connectedLine(broker, "js-tls"), broker.logs.join("\n"));
  await client.end();
  await broker.disconnected("js-tls");
});

// --- Client certificates ---------------------------------------------------------------------------

mosquittoTest(
  "tls: mutual TLS: mosquitto_pub with --cert/--key is let in when a certificate is required",
  async () => {
    await using files = await tlsFiles();
    await using broker = await tlsBroker(files, MUTUAL(files));
    await using sub = await MosquittoSub.subscribed(broker, "mtls-sub", "mtls/#", [
      ...["--cafile", files.ca.cert, "--cert", files.client.cert, "--key", files.client.key, "-C", "1", "-v"],
    ]);
    const result = await runMosquittoTool("mosquitto_pub", [
      ...tlsArgs(broker, files, files.client),
      ...["-i", "mtls-pub", "-t", "mtls/reading", "-m", "21.5", "-q", "2"],
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(await sub.lines(1), ["mtls/reading 21.5"]);
    assert.equal((await sub.finished()).code, 0);
    // Without use_identity_as_username the certificate does not make a username, but it is logged.
    const line = connectedLine(broker, "mtls-pub");
    assert.ok(line, broker.logs.join("\n"));
    assert.doesNotMatch(line, /user /);
    assert.match(line, new RegExp(`certificate "[^"]*CN=${CLIENT_CN}`));
  },
);

Deno.test("tls: mutual TLS: MQTT.js with a client certificate is let in when one is required", async () => {
  await using files = await tlsFiles();
  await using broker = await tlsBroker(files, MUTUAL(files));
  await using client = await connectMqttJs(broker.port, {
    protocol: "mqtts",
    ca: files.pems.ca.cert,
    cert: files.pems.client.cert,
    key: files.pems.client.key,
    clientId: "js-mtls",
  });
  await client.mqtt.subscribeAsync("js/mtls", { qos: 1 });
  await client.mqtt.publishAsync("js/mtls", "mutual", { qos: 1 });
  const [message] = await client.received(1);
  assert.equal(message.payload, "mutual");
  await client.end();
  await broker.disconnected("js-mtls");
});

mosquittoTest(
  "tls: ca_file without require_client_certificate lets in a client that has no certificate",
  async () => {
    await using files = await tlsFiles();
    await using broker = await tlsBroker(files, { ca_file: files.ca.cert });
    await using watcher = await RawClient.subscriber(tcpPort(broker), { clientId: "watch" }, [["opt/#", 0]]);
    for (const [clientId, client] of [["no-cert", undefined], ["with-cert", files.client]] as const) {
      const result = await runMosquittoTool("mosquitto_pub", [
        ...tlsArgs(broker, files, client),
        ...["-i", clientId, "-t", `opt/${clientId}`, "-m", clientId],
      ]);
      assert.equal(result.code, 0, `${clientId}: ${result.stderr}`);
      await watcher.expectPublish(`opt/${clientId}`, clientId);
    }
  },
);

mosquittoTest(
  "tls: use_identity_as_username makes the certificate's CN the username; CONNECT's is ignored",
  async () => {
    await using files = await tlsFiles();
    await using broker = await tlsBroker(files, { ...MUTUAL(files), use_identity_as_username: true });
    // The session is the client id's, as always: `subscribed` looks it up by "cert-user".
    await using sub = await MosquittoSub.subscribed(broker, "cert-user", "id/#", [
      ...["--cafile", files.ca.cert, "--cert", files.client.cert, "--key", files.client.key],
      ...["-u", "claimed-name", "-P", "claimed-password", "-C", "1"],
    ]);
    assert.equal(broker.hasSession(CLIENT_CN), false, "no session is named after the CN");
    const line = connectedLine(broker, "cert-user");
    assert.ok(line, broker.logs.join("\n"));
    assert.ok(line.includes(`user "${CLIENT_CN}"`), line);
    assert.ok(!broker.logs.some((l) => l.includes("claimed-name")), broker.logs.join("\n"));
    // And the client is served normally.
    const result = await runMosquittoTool("mosquitto_pub", [
      ...tlsArgs(broker, files, files.client),
      ...["-i", "cert-pub", "-t", "id/x", "-m", "as sensor-17"],
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(await sub.lines(1), ["as sensor-17"]);
    const pubLine = connectedLine(broker, "cert-pub");
    assert.ok(pubLine?.includes(`user "${CLIENT_CN}"`), `connected line: ${pubLine}`);
  },
);

Deno.test("tls: with use_identity_as_username the certificate authenticates, even with allow_anonymous false", async () => {
  await using files = await tlsFiles();
  await using broker = await startBroker({
    auth: { allow_anonymous: false },
    listeners: [tlsListener(files, { ...MUTUAL(files), use_identity_as_username: true })],
  });
  const result = await runMosquittoTool("mosquitto_pub", [
    ...tlsArgs(broker, files, files.client),
    ...["-i", "cert-only", "-t", "id/x", "-m", "hello"],
  ]);
  assert.equal(result.code, 0, result.stderr);
  assert.ok(connectedLine(broker, "cert-only")?.includes(`user "${CLIENT_CN}"`), broker.logs.join("\n"));
});

Deno.test("tls: use_identity_as_username over MQTT 5 (MQTT.js) with no CONNECT username logs the CN as user", async () => {
  await using files = await tlsFiles();
  await using broker = await tlsBroker(files, { ...MUTUAL(files), use_identity_as_username: true });
  await using client = await connectMqttJs(broker.port, {
    protocol: "mqtts",
    protocolVersion: 5,
    ca: files.pems.ca.cert,
    cert: files.pems.client.cert,
    key: files.pems.client.key,
    clientId: "js-identity",
  });
  const line = connectedLine(broker, "js-identity");
  assert.ok(line?.includes(`user "${CLIENT_CN}"`), `connected line: ${line}`);
  assert.ok(broker.hasSession("js-identity"));
  await client.end();
  await broker.disconnected("js-identity");
});

mosquittoTest(
  "tls: use_identity_as_username refuses (CONNACK not authorized) a client with no certificate",
  async () => {
    await using files = await tlsFiles();
    // A CA but no requirement: the handshake succeeds without a certificate, and then there is no identity.
    await using broker = await tlsBroker(files, { ca_file: files.ca.cert, use_identity_as_username: true });
    const result = await runMosquittoTool("mosquitto_pub", [
      ...tlsArgs(broker, files),
      ...["-i", "nameless", "-u", "claimed-name", "-t", "id/x", "-m", "x"],
    ]);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /not authori[sz]ed/i);
    assertNeverConnected(broker, "nameless");
    await assertStillServes(broker, files, "after-nameless");
    const line = connectedLine(broker, "good-after-nameless");
    assert.ok(line?.includes(`user "${CLIENT_CN}"`), `connected line: ${line}`);
  },
);

mosquittoTest("tls: a client without a certificate fails the handshake when one is required", async () => {
  await using files = await tlsFiles();
  await assertHandshakeRefused(files, undefined, "no-cert");
});

mosquittoTest("tls: a client certificate signed by another CA fails the handshake", async () => {
  await using files = await tlsFiles();
  await assertHandshakeRefused(files, files.untrustedClient, "wrong-ca");
});

mosquittoTest("tls: an expired client certificate fails the handshake", async () => {
  await using files = await tlsFiles();
  await assertHandshakeRefused(files, files.expiredClient, "expired");
});

Deno.test("tls: MQTT.js without a certificate gets no CONNACK when one is required", async () => {
  await using files = await tlsFiles();
  await using broker = await tlsBroker(files, MUTUAL(files));
  const refused = await connectMqttJs(broker.port, {
    protocol: "mqtts",
    ca: files.pems.ca.cert,
    clientId: "js-no-cert",
  }).then(
    async (client) => {
      await client.end(true);
      return false;
    },
    () => true,
  );
  assert.ok(refused, "MQTT.js connected without a client certificate");
  assertNeverConnected(broker, "js-no-cert");
  assert.ok(!broker.logs.some((l) => [CLIENT_CN, EXPIRED_CN, UNTRUSTED_CN].some((cn) => l.includes(cn))));
});

Deno.test("tls: a 600 KB message crosses TLS intact both ways (MQTT.js)", async () => {
  await using files = await tlsFiles();
  await using broker = await startBroker({ listeners: [tlsListener(files)] });
  const options = { protocol: "mqtts", ca: files.pems.ca.cert } as const;
  await using sub = await connectMqttJs(broker.port, { ...options, clientId: "big-sub" });
  await sub.mqtt.subscribeAsync("big/x", { qos: 1 });
  await using pub = await connectMqttJs(broker.port, { ...options, clientId: "big-pub" });
  const payload = Array.from({ length: 600_000 }, (_, i) => String.fromCharCode(97 + i % 26)).join("");
  await pub.mqtt.publishAsync("big/x", payload, { qos: 1 });
  const [message] = await sub.received(1);
  assert.equal(message.payload.length, payload.length);
  assert.ok(message.payload === payload, "the payload arrived unchanged");
});

Deno.test("tls: twenty MQTT.js clients connect at once over mutual TLS and each gets its message", async () => {
  await using files = await tlsFiles();
  await using broker = await tlsBroker(files, MUTUAL(files));
  const options = {
    protocol: "mqtts",
    ca: files.pems.ca.cert,
    cert: files.pems.client.cert,
    key: files.pems.client.key,
  } as const;
  const clients = await Promise.allSettled(
    Array.from({ length: 20 }, (_, i) => connectMqttJs(broker.port, { ...options, clientId: `many-${i}` })),
  );
  try {
    const failed = clients.filter((c) => c.status === "rejected");
    assert.equal(failed.length, 0, `connections failed: ${failed.map((c) => String(c.reason)).join("; ")}`);
    const connected = clients.map((c) => (c as PromiseFulfilledResult<TestClient>).value);
    for (const [i, client] of connected.entries()) await client.mqtt.subscribeAsync(`many/${i}`, { qos: 1 });
    await using watcher = await RawClient.connected(tcpPort(broker), { clientId: "sender" });
    for (let i = 0; i < connected.length; i++) await watcher.publishAcked(`many/${i}`, `to ${i}`, { qos: 1 });
    for (const [i, client] of connected.entries()) {
      const [message] = await client.received(1);
      assert.deepEqual([message.topic, message.payload], [`many/${i}`, `to ${i}`]);
    }
  } finally {
    for (const c of clients) if (c.status === "fulfilled") await c.value.end(true);
  }
});

Deno.test("tls: stopping the broker closes its TLS clients and waits for them", async () => {
  await using files = await tlsFiles();
  await using broker = await startBroker({ listeners: [tlsListener(files)] });
  await using client = await connectMqttJs(broker.port, {
    protocol: "mqtts",
    ca: files.pems.ca.cert,
    clientId: "stopped",
  });
  const closed = new Promise<void>((resolve) => client.mqtt.once("close", () => resolve()));
  await broker.stop();
  await within(closed, "MQTT.js to see the connection closed");
  assert.ok(broker.loggedDisconnect("stopped"), broker.logs.join("\n"));
});

Deno.test("tls: a client silent in its TLS handshake is closed after connect_timeout", async () => {
  await using files = await tlsFiles();
  await using broker = await startBroker({ mqtt: { connect_timeout: 1 }, listeners: [tlsListener(files)] });
  // Not a byte of a ClientHello: node's own handshake timeout would be 120 s.
  const silent = await Deno.connect({ hostname: "127.0.0.1", port: broker.port });
  try {
    assert.equal(
      await within(silent.read(new Uint8Array(16)), "the broker to close a silent handshake"),
      null,
    );
  } finally {
    silent.close();
  }
});

Deno.test("tls: a stop closes a connection still in its TLS handshake rather than wait for it", async () => {
  await using files = await tlsFiles();
  // A connect timeout far past the wait below: only the stop can close the connection in time.
  await using broker = await startBroker({ mqtt: { connect_timeout: 600 }, listeners: [tlsListener(files)] });
  const silent = await Deno.connect({ hostname: "127.0.0.1", port: broker.port });
  try {
    await until(() => broker.logs.length > 0, "the broker to be up");
    await within(broker.stop(), "the broker to stop with a TLS handshake pending");
    assert.equal(await within(silent.read(new Uint8Array(16)), "the connection to be closed"), null);
  } finally {
    silent.close();
  }
});

// --- Plain TCP on the TLS port -----------------------------------------------------------------------

mosquittoTest(
  "tls: an MQTT CONNECT in clear on the TLS port is closed unanswered; others are still served",
  async () => {
    await using files = await tlsFiles();
    await using broker = await tlsBroker(files);
    const connect = mqttPacket.generate(connectPacket({ clientId: "plain-intruder" }));
    const answer = await plainExchange(broker.port, connect);
    // At most a TLS alert record (content type 21), never MQTT: a CONNACK would start with 0x20.
    assert.ok(answer.length === 0 || answer[0] === 0x15, `the broker answered ${[...answer.slice(0, 8)]}`);
    assertNeverConnected(broker, "plain-intruder");
    await assertStillServes(broker, files, "after-plain");
  },
);

mosquittoTest(
  "tls: a connection that never starts its handshake does not hold up other clients",
  async () => {
    await using files = await tlsFiles();
    await using broker = await tlsBroker(files);
    using _silent = await Deno.connect({ hostname: "127.0.0.1", port: broker.port });
    await assertStillServes(broker, files, "beside-silent");
  },
);

// --- Start-up errors ---------------------------------------------------------------------------------

/** Asserts startBroker rejects with one StartError line about the tls listener that names `file`. */
async function assertStartRefused(listeners: Config["listeners"], file: string, why?: RegExp): Promise<void> {
  const error = await startBroker({ listeners }).then(
    async (broker) => {
      await broker.stop();
      return new Error(`the broker started instead; its log:\n${broker.logs.join("\n")}`);
    },
    (error: unknown) => error,
  );
  assert.ok(error instanceof StartError, `expected a StartError naming ${file}: ${error}`);
  const message = error.message;
  assert.equal(message.split("\n").length, 1, `one line: ${JSON.stringify(message)}`);
  assert.match(message, /^cannot listen on tls 127\.0\.0\.1:0: /);
  assert.ok(message.includes(file), `names ${file}: ${message}`);
  if (why) assert.match(message, why);
}

Deno.test("tls: a missing cert_file or key_file stops start-up with one line naming it", async () => {
  await using files = await tlsFiles();
  const missing = `${files.dir}/no-such.pem`;
  await assertStartRefused([tlsListener(files, { cert_file: missing })], missing, /no such file/);
  await assertStartRefused([tlsListener(files, { key_file: missing })], missing, /no such file/);
});

Deno.test("tls: a missing ca_file stops start-up with one line naming it", async () => {
  await using files = await tlsFiles();
  const missing = `${files.dir}/no-such-ca.pem`;
  await assertStartRefused(
    [tlsListener(files, { ca_file: missing, require_client_certificate: true })],
    missing,
  );
});

Deno.test("tls: an unreadable cert_file stops start-up with one line naming it", async () => {
  await using files = await tlsFiles();
  // A directory cannot be read as a file, whoever runs the test (root ignores file modes).
  await assertStartRefused([tlsListener(files, { cert_file: files.dir })], files.dir);
});

Deno.test("tls: a key_file that does not match cert_file stops start-up with one line naming it", async () => {
  await using files = await tlsFiles();
  await assertStartRefused([tlsListener(files, { key_file: files.client.key })], files.client.key);
});

Deno.test("tls: a cert_file or key_file that is not PEM stops start-up with one line naming it", async () => {
  await using files = await tlsFiles();
  const garbage = await files.write("garbage.pem", "this is not a certificate\n");
  const binary = await files.write("binary.der", String.fromCharCode(0x30, 0x82, 0x01, 0x0a, 0x02, 0x01));
  await assertStartRefused([tlsListener(files, { cert_file: garbage })], garbage);
  await assertStartRefused([tlsListener(files, { key_file: garbage })], garbage);
  await assertStartRefused([tlsListener(files, { cert_file: binary })], binary);
});

Deno.test("tls: PEM of the wrong kind (a key as cert_file, a certificate as key_file) stops start-up", async () => {
  await using files = await tlsFiles();
  await assertStartRefused([tlsListener(files, { cert_file: files.server.key })], files.server.key);
  await assertStartRefused([tlsListener(files, { key_file: files.server.cert })], files.server.cert);
});

Deno.test("tls: a certificate that is PEM but corrupt stops start-up with one line naming it", async () => {
  await using files = await tlsFiles();
  const corrupt = await files.write(
    "corrupt.pem",
    "-----BEGIN CERTIFICATE-----\nTUlJQm5vdCBhIGNlcnRpZmljYXRl\n-----END CERTIFICATE-----\n",
  );
  await assertStartRefused([tlsListener(files, { cert_file: corrupt })], corrupt);
});

Deno.test("tls: a ca_file that holds no usable certificate stops start-up with one line naming it", async () => {
  await using files = await tlsFiles();
  const garbage = await files.write("garbage-ca.pem", "this is not a CA\n");
  const corrupt = await files.write(
    "corrupt-ca.pem",
    "-----BEGIN CERTIFICATE-----\nTUlJQm5vdCBhIGNlcnRpZmljYXRl\n-----END CERTIFICATE-----\n",
  );
  // Started anyway, such a listener would fail every client's handshake.
  for (const caFile of [garbage, corrupt, files.ca.key]) {
    await assertStartRefused(
      [tlsListener(files, { ca_file: caFile, require_client_certificate: true })],
      caFile,
    );
  }
});

Deno.test("tls: a bad tls listener after a good tcp one fails start-up and frees the tcp port", async () => {
  await using files = await tlsFiles();
  const missing = `${files.dir}/no-such.pem`;
  // The op and resource sanitizers fail this test if the tcp listener opened first is left open.
  await assertStartRefused(
    [
      listenerConfig("tcp", { port: 0 }),
      tlsListener(files, { cert_file: missing }),
    ],
    missing,
  );
});

// --- Through the command line ------------------------------------------------------------------------

/** Runs `deno task start --config <path>` to its end (killed after 15 s); returns its exit code and stderr. */
async function startTask(configPath: string): Promise<{ code: number; lines: string[] }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", "start", "--config", configPath],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  try {
    const output = await child.output();
    const lines = new TextDecoder().decode(output.stderr).split("\n").filter((l) => l !== "");
    return { code: output.code, lines: lines.filter((l) => !l.startsWith("Task ")) };
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("tls: cli: a missing cert_file is one error line and exit 1, no stack trace", async () => {
  // Under the working directory: `deno task start` may read only there.
  await using files = await tlsFiles({ parent: Deno.cwd() });
  const missing = `${files.dir}/no-such.pem`;
  const config = await files.write(
    "vyoma.yaml",
    [
      "listeners:",
      "  - type: tls",
      "    port: 0",
      `    cert_file: ${missing}`,
      `    key_file: ${files.server.key}`,
      "",
    ].join("\n"),
  );
  const { code, lines } = await startTask(config.slice(Deno.cwd().length + 1));
  assert.equal(code, 1, lines.join("\n"));
  const errors = lines.filter((l) => l.includes("ERROR"));
  assert.equal(errors.length, 1, lines.join("\n"));
  assert.match(errors[0], /cannot listen on tls 127\.0\.0\.1:0: /);
  assert.ok(errors[0].includes(missing), errors[0]);
  assert.ok(!lines.some((l) => /^\s+at |Uncaught|error: /.test(l)), `no stack trace:\n${lines.join("\n")}`);
});

Deno.test("tls: cli: deno task start serves MQTT over TLS with its certificates under the working directory", async () => {
  await using files = await tlsFiles({ parent: Deno.cwd() });
  const config = await files.write(
    "vyoma.yaml",
    [
      "listeners:",
      "  - type: tls",
      "    port: 0",
      `    cert_file: ${files.server.cert}`,
      `    key_file: ${files.server.key}`,
      `    ca_file: ${files.ca.cert}`,
      "    require_client_certificate: true",
      "    use_identity_as_username: true",
      "",
    ].join("\n"),
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", "start", "--config", config.slice(Deno.cwd().length + 1)],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const lines: string[] = [];
  const reading = (async () => {
    let partial = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      partial += chunk;
      const parts = partial.split("\n");
      partial = parts.pop()!;
      lines.push(...parts);
    }
  })();
  try {
    await until(
      () => lines.some((l) => /listening on tls 127\.0\.0\.1:\d+$/.test(l)),
      "the tls listener",
      15_000,
    )
      .catch((error) => {
        throw new Error(`${error.message}; log:\n${lines.join("\n")}`);
      });
    const port = lines.map((l) => l.match(/listening on tls 127\.0\.0\.1:(\d+)$/)).find((m) => m)![1];
    const result = await runMosquittoTool("mosquitto_pub", [
      ...["-h", "127.0.0.1", "-p", port, "--cafile", files.ca.cert],
      ...[
        "--cert",
        files.client.cert,
        "--key",
        files.client.key,
        "-i",
        "cli-tls",
        "-t",
        "cli/tls",
        "-m",
        "x",
      ],
    ]);
    assert.equal(result.code, 0, result.stderr);
    await until(() => lines.some((l) => l.includes(`client "cli-tls" connected from`)), "the connected line");
    assert.ok(lines.find((l) => l.includes(`client "cli-tls" connected`))!.includes(`user "${CLIENT_CN}"`));
    child.kill("SIGTERM");
    assert.equal((await within(child.status, "the broker to exit", 15_000)).code, 0, lines.join("\n"));
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // already exited
    }
    await child.status;
    await reading;
  }
});
