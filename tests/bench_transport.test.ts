/**
 * The bench's transport rows, below the table: vyoma-loadgen's WebSocket byte stream (against an in-process
 * Deno.serve endpoint), which generator and port each row gets, and the whole path the bench takes for
 * them: certificates from openssl, Vyoma started by the bench with tls, ws and wss listeners beside tcp, the
 * generator run over each (and Mosquitto over tls, where installed). Short runs; nothing is timed.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { benchCerts } from "../bench/certs.ts";
import { exists, type Generator, loadgenGenerator, runGenerator } from "../bench/generator.ts";
import { WsConn } from "../bench/loadgen/websocket.ts";
import { webSocketUrl } from "../bench/loadgen/transport.ts";
import { type BrokerPlan, HOST, prepareBroker, RunningBroker, which } from "../bench/peers.ts";
import { allScenarios, type BrokerName, QUICK_PUB_TIME, type Scenario } from "../bench/scenarios.ts";
import { loadTarget, runsScenario, type TransportSetup } from "../bench/transports.ts";
import { until } from "./helpers/wait.ts";

const REPO_ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

// --- WsConn ---------------------------------------------------------------------------------------------------

interface Endpoint extends AsyncDisposable {
  url: string;
  /** Binary messages the server received, as byte arrays. */
  received: number[][];
}

/**
 * A WebSocket endpoint on a free port: `greet` runs once the socket is open; `protocol` is the
 * sub-protocol it answers with (none: the handshake succeeds without one).
 */
function endpoint(greet: (socket: WebSocket) => void, protocol?: string): Endpoint {
  const received: number[][] = [];
  const closed: Promise<void>[] = [];
  const server = Deno.serve({ hostname: HOST, port: 0, onListen() {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request, protocol === undefined ? {} : { protocol });
    socket.binaryType = "arraybuffer";
    closed.push(new Promise((resolve) => socket.addEventListener("close", () => resolve())));
    socket.addEventListener("open", () => greet(socket));
    socket.addEventListener("message", (e) => received.push([...new Uint8Array(e.data as ArrayBuffer)]));
    return response;
  });
  return {
    url: `ws://${HOST}:${server.addr.port}/mqtt`,
    received,
    async [Symbol.asyncDispose]() {
      await Promise.all(closed);
      await server.shutdown();
    },
  };
}

/** Everything `conn` yields until the end of the stream, read `size` bytes at most at a time. */
async function readAll(conn: WsConn, size: number): Promise<number[]> {
  const out: number[] = [];
  const buf = new Uint8Array(size);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) return out;
    out.push(...buf.subarray(0, n));
  }
}

Deno.test("loadgen WsConn: reads run across message boundaries, to null when the server closes", async () => {
  await using server = endpoint((socket) => {
    for (const bytes of [[1, 2, 3], [4, 5], [6, 7, 8, 9, 10]]) socket.send(new Uint8Array(bytes));
    socket.close();
  }, "mqtt");
  const conn = await WsConn.open(server.url);
  assert.deepEqual(await readAll(conn, 4), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.equal(await conn.read(new Uint8Array(4)), null);
});

Deno.test("loadgen WsConn: a write is one binary message, and its bytes are the caller's again at once", async () => {
  await using server = endpoint(() => {}, "mqtt");
  const conn = await WsConn.open(server.url);
  // The engine refills its buffer as soon as write() resolves: the message must be what was written.
  const bytes = new Uint8Array([0x30, 3, 0, 1, 0x61]);
  assert.equal(await conn.write(bytes), 5);
  bytes.fill(0);
  assert.equal(await conn.write(new Uint8Array([0xe0, 0]).subarray(0, 2)), 2);
  await until(() => server.received.length === 2, "both messages at the server");
  assert.deepEqual(server.received, [[0x30, 3, 0, 1, 0x61], [0xe0, 0]]);
  conn.close();
  await assert.rejects(() => conn.write(new Uint8Array([0xe0, 0])), /WebSocket closed/);
});

Deno.test("loadgen WsConn: a server that does not agree to sub-protocol mqtt is refused", async () => {
  await using server = endpoint(() => {});
  await assert.rejects(() => WsConn.open(server.url), /sub-protocol "", not "mqtt"/);
});

Deno.test("loadgen WsConn: a text message fails the next read (MQTT over WebSocket is binary)", async () => {
  await using server = endpoint((socket) => socket.send("CONNACK"), "mqtt");
  const conn = await WsConn.open(server.url);
  await assert.rejects(() => conn.read(new Uint8Array(16)), /text WebSocket message/);
});

Deno.test("loadgen WsConn: nothing listening fails the open", async () => {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const port = listener.addr.port;
  listener.close();
  await assert.rejects(() => WsConn.open(`ws://${HOST}:${port}/mqtt`));
});

Deno.test("loadgen transport: WebSocket URLs, IPv6 in brackets", () => {
  assert.equal(
    webSocketUrl({ transport: "ws", host: "127.0.0.1", port: 8083, wsPath: "/mqtt" }),
    "ws://127.0.0.1:8083/mqtt",
  );
  assert.equal(
    webSocketUrl({ transport: "wss", host: "::1", port: 8084, wsPath: "/m" }),
    "wss://[::1]:8084/m",
  );
});

// --- Which rows run where, and how ----------------------------------------------------------------------------

const ROWS = allScenarios(QUICK_PUB_TIME);
const row = (name: string): Scenario => ROWS.find((s) => s.name === name)!;

function plan(transports: BrokerPlan["transports"]): BrokerPlan {
  return {
    name: "vyoma",
    version: "vyoma test",
    runtime: null,
    transports,
    unserved: {},
    config: () => "",
    command: () => Promise.reject(new Error("not started in this test")),
  };
}

const MQTTLOAD: Generator = { kind: "mqttload", path: "/x/mqttload", version: "v", argv: ["/x/mqttload"] };
const LOADGEN: Generator = {
  kind: "vyoma-loadgen",
  path: "bench/loadgen/main.ts",
  version: "v",
  argv: ["deno"],
};
/** The generator the bench runs the transport rows with. */
const LOADGEN_REAL = await loadgenGenerator(REPO_ROOT);
assert.ok(LOADGEN_REAL);

Deno.test("transport rows: run by a broker that serves their transport and one besides tcp", () => {
  const full = plan(["tcp", "tls", "ws", "wss"]);
  assert.ok(ROWS.every((s) => runsScenario(full, s)));
  const tlsOnly = plan(["tcp", "tls"]);
  assert.ok(
    runsScenario(tlsOnly, row("transport-fanin-tcp")) && runsScenario(tlsOnly, row("transport-fanin-tls")),
  );
  assert.ok(!runsScenario(tlsOnly, row("transport-fanin-ws")));
  // Serving tcp alone, a broker has nothing to compare its tcp row with: it runs none of them.
  const tcpOnly = plan(["tcp"]);
  assert.ok(!runsScenario(tcpOnly, row("transport-fanin-tcp")));
  assert.ok(runsScenario(tcpOnly, row("fanin-8-q0-16B")));
});

Deno.test("transport rows: vyoma-loadgen on the transport's port, --cafile for tls and wss only", () => {
  const setup: TransportSetup = {
    wanted: ["tls", "ws", "wss"],
    generator: LOADGEN,
    certs: { ca: "/c/ca.pem", cert: "/c/server.pem", key: "/c/server.key" },
  };
  const ports = { tcp: 1, tls: 2, ws: 3, wss: 4 };
  assert.deepEqual(loadTarget(setup, MQTTLOAD, ports, row("fanin-8-q0-16B")), {
    generator: MQTTLOAD,
    port: 1,
    extraArgs: [],
  });
  assert.deepEqual(loadTarget(setup, MQTTLOAD, ports, row("transport-fanin-tcp")), {
    generator: LOADGEN,
    port: 1,
    extraArgs: [],
  });
  assert.deepEqual(loadTarget(setup, MQTTLOAD, ports, row("transport-fanout-wss")), {
    generator: LOADGEN,
    port: 4,
    extraArgs: ["--cafile", "/c/ca.pem"],
  });
  assert.deepEqual(loadTarget(setup, MQTTLOAD, ports, row("transport-fanin-ws")), {
    generator: LOADGEN,
    port: 3,
    extraArgs: [],
  });
  assert.equal(
    loadTarget(setup, MQTTLOAD, { tcp: 1 }, row("transport-fanin-tls")),
    "no tls listener for this row",
  );
});

// --- The bench's own path, end to end -------------------------------------------------------------------------

/**
 * A cache directory inside the repository (Vyoma may read only there), readable by all: Mosquitto started
 * as root reads its certificates as its own user.
 */
async function cacheDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ dir: join(REPO_ROOT, "bench"), prefix: ".cache-test-" });
  await Deno.chmod(path, 0o755);
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

/**
 * What the bench does for `broker` when the transport rows run: certificates (made once: a second call
 * reuses them), the broker prepared for tls, ws and wss, started, and a short fan-in over each transport it
 * serves, through the generator and port the bench would pick. The generator's results by transport.
 */
async function benchPath(name: BrokerName) {
  await using dir = await cacheDir();
  const certs = await benchCerts(dir.path);
  assert.deepEqual(await benchCerts(dir.path), certs);
  const prepared = await prepareBroker(name, {
    repoRoot: REPO_ROOT,
    cacheDir: dir.path,
    transports: ["tls", "ws", "wss"],
    certs,
    note: () => {},
  });
  assert.ok(prepared.ok);
  const plan = prepared.plan;
  const setup: TransportSetup = { wanted: ["tls", "ws", "wss"], generator: LOADGEN_REAL, certs };
  const broker = await RunningBroker.start(plan, join(dir.path, "logs"));
  const results: Record<string, Record<string, unknown> | null> = {};
  try {
    for (const transport of plan.transports) {
      const target = loadTarget(setup, MQTTLOAD, broker.ports, row(`transport-fanin-${transport}`));
      assert.ok(typeof target !== "string", `${transport}: ${target}`);
      const args = [
        ...["--host", HOST, "--port", String(target.port), "--broker-pid", String(broker.pid)],
        ...["--transport", transport, ...target.extraArgs, "--scenario", "fanin", "--pubs", "2"],
        ...["--count", "300", "--window", "50", "--duration-max", "20"],
      ];
      const out = await runGenerator(target.generator, args, 40);
      assert.equal(out.exitCode, 0, `${transport}: ${out.stderrTail} ${JSON.stringify(out.result)}`);
      results[transport] = out.result;
    }
  } finally {
    await broker.stop();
  }
  return { plan, results };
}

Deno.test("bench path: Vyoma started with tls, ws and wss beside tcp moves messages over each", async () => {
  const { plan, results } = await benchPath("vyoma");
  assert.deepEqual(plan.unserved, {});
  assert.deepEqual(Object.keys(results), ["tcp", "tls", "ws", "wss"]);
  for (const [transport, result] of Object.entries(results)) {
    assert.equal(result?.transport, transport);
    const counts = [result?.sent, result?.received, result?.lost, result?.errors];
    assert.deepEqual(counts, [600, 600, 0, 0], transport);
  }
});

Deno.test({
  name: "bench path: Mosquitto serves the tls rows, not the ws ones (its websockets bind every interface)",
  ignore: (await which("mosquitto")) === null && !(await exists("/usr/sbin/mosquitto")),
  async fn() {
    const { plan, results } = await benchPath("mosquitto");
    assert.deepEqual(Object.keys(plan.unserved), ["ws", "wss"]);
    assert.deepEqual(Object.keys(results), ["tcp", "tls"]);
    assert.deepEqual([results.tls?.received, results.tls?.lost], [600, 0]);
  },
});
