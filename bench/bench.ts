/**
 * `deno task bench`: Vyoma, Mosquitto and Aedes, one at a time, under the same scenarios and the same load
 * generator; a table of figures and ratios on stdout, results as JSON and SVG under bench/results/.
 * `deno task bench --help` lists the flags. Exit: 0 when every Vyoma run was clean, 1 when one was not
 * (Vyoma not starting included), 2 on bad usage or a setup failure such as no load generator.
 *
 * The `stalled` row needs a client the generator does not have, one that stops reading: the bench opens
 * it itself (a few hand-written MQTT 3.1.1 packets over Deno.connect) and reads the broker's RSS around it.
 * The transport rows need TLS and WebSocket, which only bench/loadgen speaks: transports.ts sets them up.
 */

import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { findGenerator, type Generator, runGenerator, SetupError } from "./generator.ts";
import { type BrokerPlan, HOST, type PeerContext, prepareBroker, RunningBroker } from "./peers.ts";
import {
  type BrokerEntry,
  field,
  fileStamp,
  formatGrowthMb,
  formatInt,
  isClean,
  type MachineInfo,
  renderTable,
  type Report,
  rssGrowthMb,
  runFlags,
  type RunRecord,
  servedRate,
  unservedNotes,
  writeResults,
} from "./report.ts";
import { HELP, type Options, parseOptions, type Scenario, scenariosFor, UsageError } from "./scenarios.ts";
import { loadTarget, prepareTransports, runsScenario, type TransportSetup } from "./transports.ts";

const REPO_ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const CACHE_DIR = join(REPO_ROOT, "bench", ".cache");
const RESULTS_DIR = join(REPO_ROOT, "bench", "results");
/** Pause between runs so the broker finishes closing sockets and collecting garbage (as bench.sh does). */
const SETTLE_MS = 1000;
/** How long past its own --duration-max the generator may run before the bench kills it. */
const GENERATOR_SLACK_S = 30;
/** How long the stalled subscriber waits for its CONNACK and SUBACK (an idle broker answers in ms). */
const HANDSHAKE_TIMEOUT_MS = 5000;

/** One status line on stderr: rewritten in place on a terminal, one line per step otherwise. */
class Progress {
  readonly #tty = Deno.stderr.isTerminal();
  readonly #encoder = new TextEncoder();
  #open = false;

  step(text: string): void {
    this.#close();
    this.#write(this.#tty ? `\r\x1b[K${text}` : text);
    this.#open = true;
  }

  /** Completes the current step's line with its outcome. */
  done(outcome: string): void {
    if (!this.#open) return;
    this.#write(` ${outcome}${this.#tty ? "" : "\n"}`);
    this.#open = this.#tty;
  }

  /** A line that stays (warnings, notes). */
  note(text: string): void {
    this.#close();
    this.#write(`${text}\n`);
  }

  finish(): void {
    if (this.#tty && this.#open) this.#write("\r\x1b[K");
    this.#open = false;
  }

  #close(): void {
    if (!this.#open) return;
    this.#write(this.#tty ? "\r\x1b[K" : "\n");
    this.#open = false;
  }

  #write(text: string): void {
    Deno.stderr.writeSync(this.#encoder.encode(text));
  }
}

/** What must be stopped if the bench is interrupted. */
const live: { broker: RunningBroker | null; abort: AbortController } = {
  broker: null,
  abort: new AbortController(),
};

async function main(argv: string[]): Promise<number> {
  let options: Options;
  let scenarios: Scenario[];
  try {
    options = parseOptions(argv);
    if (options.help) {
      console.log(HELP);
      return 0;
    }
    scenarios = scenariosFor(options);
  } catch (error) {
    if (error instanceof UsageError) return fail(`${error.message} (see --help)`, 2);
    throw error;
  }
  const progress = new Progress();
  const startedAt = new Date();
  const machine = await machineInfo();
  let generator: Generator;
  let transports: TransportSetup;
  const note = (line: string) => progress.note(`bench: ${line}`);
  await Deno.mkdir(CACHE_DIR, { recursive: true });
  try {
    generator = await findGenerator({
      repoRoot: REPO_ROOT,
      explicit: options.generator,
      envPath: Deno.env.get("MQTTLOAD"),
      warn: (line) => progress.note(`bench: warning: ${line}`),
      note,
    });
    progress.note(`bench: generator ${generator.kind} ${generator.path} (${generator.version})`);
    transports = await prepareTransports(
      scenarios,
      generator,
      { repoRoot: REPO_ROOT, cacheDir: CACHE_DIR },
      note,
    );
  } catch (error) {
    if (error instanceof SetupError) return fail(error.message, 2);
    throw error;
  }

  const { entries, plans } = await prepareBrokers(options, {
    repoRoot: REPO_ROOT,
    cacheDir: CACHE_DIR,
    transports: transports.wanted,
    certs: transports.certs,
    note,
  });
  const runs = await runAll(plans, entries, scenarios, { generator, transports }, progress);
  progress.finish();
  if (live.abort.signal.aborted) return 130;

  const finishedAt = new Date();
  const report: Report = {
    started: startedAt.toISOString().replace(/\.\d+Z$/, "Z"),
    finished: finishedAt.toISOString().replace(/\.\d+Z$/, "Z"),
    wallS: Math.round((finishedAt.getTime() - startedAt.getTime()) / 100) / 10,
    argv,
    mode: options.quick ? "quick" : "full",
    pubTime: options.pubTime,
    machine,
    generator: generatorInfo(generator),
    transportGenerator: transports.generator === null ? null : generatorInfo(transports.generator),
    brokers: entries,
    scenarios,
    runs,
  };
  console.log(renderTable(report));
  const paths = await writeResults(RESULTS_DIR, report, fileStamp(startedAt));
  console.log(
    `\nwall time ${report.wallS} s; results: ${paths.map((p) => relative(Deno.cwd(), p)).join(", ")}`,
  );

  const vyomaRuns = runs.filter((r) => r.broker === "vyoma");
  const vyomaClean = vyomaRuns.every((r) => isClean(scenarios.find((s) => s.name === r.scenario)!, r));
  const vyomaFailedToPrepare = entries.some((e) => e.name === "vyoma" && e.skipped !== null);
  return vyomaClean && !vyomaFailedToPrepare ? 0 : 1;
}

function generatorInfo({ kind, path, version }: Generator): Report["generator"] {
  return { kind, path, version };
}

/**
 * Finds and prepares each broker asked for; a missing peer is skipped with one line saying how to get it,
 * and a transport a broker will not serve with one line saying why.
 */
async function prepareBrokers(
  options: Options,
  context: PeerContext,
): Promise<{ entries: BrokerEntry[]; plans: BrokerPlan[] }> {
  const entries: BrokerEntry[] = [];
  const plans: BrokerPlan[] = [];
  for (const name of options.brokers) {
    const prepared = await prepareBroker(name, context);
    if (prepared.ok) {
      const { version, runtime, unserved } = prepared.plan;
      plans.push(prepared.plan);
      entries.push({ name, version, runtime, skipped: null, config: null, starts: [], unserved });
      for (const line of unservedNotes(name, unserved)) context.note(line);
    } else {
      context.note(`skipping ${name}: ${prepared.reason}`);
      entries.push({
        name,
        version: name,
        runtime: null,
        skipped: prepared.reason,
        config: null,
        starts: [],
        unserved: {},
      });
    }
  }
  return { entries, plans };
}

/** The generators a bench run uses: the main one, and what the transport rows need. */
interface Load {
  generator: Generator;
  transports: TransportSetup;
}

/**
 * Every scenario against one broker at a time. A broker is started once and reused, restarted for a scenario
 * that needs a fresh one and after a crash; one that will not start costs one timeout, not one per scenario.
 */
async function runAll(
  plans: BrokerPlan[],
  entries: BrokerEntry[],
  scenarios: Scenario[],
  load: Load,
  progress: Progress,
): Promise<RunRecord[]> {
  const runs: RunRecord[] = [];
  const total = plans.reduce((n, plan) => n + scenarios.filter((s) => runsScenario(plan, s)).length, 0);
  let index = 0;
  for (const plan of plans) {
    const entry = entries.find((e) => e.name === plan.name)!;
    let startError: string | null = null;
    for (const scenario of scenarios.filter((s) => runsScenario(plan, s))) {
      index++;
      if (live.abort.signal.aborted) break;
      progress.step(`[${index}/${total}] ${plan.name} ${scenario.name} ...`);
      if (startError === null && (live.broker === null || scenario.fresh || live.broker.exited !== null)) {
        startError = await restart(plan, entry);
      }
      if (startError !== null || live.broker === null) {
        runs.push(notRun(plan.name, scenario, `broker did not start: ${startError}`));
        progress.done("not run: broker did not start");
        continue;
      }
      const run = await runOne(load, live.broker, scenario);
      if (live.abort.signal.aborted) break;
      runs.push(run);
      progress.done(outcome(scenario, run));
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    }
    await stopBroker();
    if (startError !== null) progress.note(`bench: ${plan.name}: ${startError}`);
  }
  return runs;
}

function notRun(broker: BrokerPlan["name"], scenario: Scenario, error: string): RunRecord {
  return { broker, scenario: scenario.name, exitCode: null, result: null, error, stderrTail: "", wallS: 0 };
}

/** Stops the running broker (if any) and starts `plan` afresh; returns an error line or null. */
async function restart(plan: BrokerPlan, entry: BrokerEntry): Promise<string | null> {
  await stopBroker();
  try {
    live.broker = await RunningBroker.start(plan, join(CACHE_DIR, "logs"));
  } catch (error) {
    if (error instanceof SetupError) return error.message;
    throw error;
  }
  entry.config ??= live.broker.config;
  const { port, pid, ports } = live.broker;
  entry.starts.push(plan.transports.length > 1 ? { port, pid, ports } : { port, pid });
  // A fresh broker settles too: its RSS before the first connection is the baseline for per-connection RSS.
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  return null;
}

async function stopBroker(): Promise<void> {
  const broker = live.broker;
  live.broker = null;
  await broker?.stop();
}

async function runOne(load: Load, broker: RunningBroker, scenario: Scenario): Promise<RunRecord> {
  return scenario.kind === "stalled"
    ? await runStalled(load, broker, scenario)
    : await runLoad(load, broker, scenario);
}

/**
 * A `stalled` run: a subscriber to `#` that stops reading after its SUBACK, then the scenario's load, with
 * the broker's RSS read just before and right after the generator (while the stalled socket is still open,
 * since closing it lets the broker free whatever it held for it). The socket is closed whatever happens.
 */
async function runStalled(
  load: Load,
  broker: RunningBroker,
  scenario: Scenario,
): Promise<RunRecord> {
  // 22 characters: within the 23 every MQTT 3.1.1 server must accept [MQTT-3.1.3-5].
  const clientId = `bench-stalled-${randomHex(4)}`;
  let socket: Deno.TcpConn;
  try {
    socket = await openStalledSubscriber(broker.port, clientId);
  } catch (error) {
    const why = `stalled subscriber: ${error instanceof Error ? error.message : error}`;
    return {
      ...notRun(broker.name, scenario, why),
      stalled: { clientId, rssBeforeKb: null, rssAfterKb: null },
    };
  }
  try {
    const rssBeforeKb = await readRssKb(broker.pid);
    const run = await runLoad(load, broker, scenario);
    const rssAfterKb = await readRssKb(broker.pid);
    // Without both readings the row has no figure: say so rather than show "?" on a clean-looking run.
    const unread = rssBeforeKb === null || rssAfterKb === null
      ? `could not read VmRSS of broker pid ${broker.pid}`
      : null;
    return { ...run, error: run.error ?? unread, stalled: { clientId, rssBeforeKb, rssAfterKb } };
  } finally {
    closeQuietly(socket);
  }
}

async function runLoad(load: Load, broker: RunningBroker, scenario: Scenario): Promise<RunRecord> {
  const target = loadTarget(load.transports, load.generator, broker.ports, scenario);
  if (typeof target === "string") return notRun(broker.name, scenario, target);
  const args = [
    "--host",
    HOST,
    "--port",
    String(target.port),
    "--broker-pid",
    String(broker.pid),
    "--label",
    broker.name,
    ...scenario.args,
    ...target.extraArgs,
  ];
  const out = await runGenerator(
    target.generator,
    args,
    scenario.durationMax + GENERATOR_SLACK_S,
    live.abort.signal,
  );
  let error: string | null = null;
  if (out.killed && !live.abort.signal.aborted) {
    error = `generator killed after ${Math.round(out.wallS)} s (past --duration-max ${scenario.durationMax})`;
  }
  if (broker.exited !== null) {
    error = `broker ${broker.exited} during the run: ${await broker.logTail()}`;
  }
  return {
    broker: broker.name,
    scenario: scenario.name,
    exitCode: out.exitCode,
    result: out.result,
    error,
    stderrTail: out.exitCode === 0 ? "" : out.stderrTail,
    wallS: Math.round(out.wallS * 10) / 10,
  };
}

/** The figure a progress line ends with. */
function outcome(scenario: Scenario, run: RunRecord): string {
  const flags = runFlags(scenario, run).map((f) => f.code);
  let figure: string;
  switch (scenario.kind) {
    case "throughput":
    case "transport":
      figure = `${formatInt(field(run, "recv_rate") ?? 0)} msg/s`;
      break;
    case "stalled": {
      const growth = rssGrowthMb(run);
      figure = `RSS ${growth === null ? "?" : formatGrowthMb(growth)}, ${
        formatInt(servedRate(run) ?? 0)
      } msg/s`;
      break;
    }
    case "latency":
      figure = `p50 ${formatInt(field(run, "p50_us") ?? 0)} us, p99 ${
        formatInt(field(run, "p99_us") ?? 0)
      } us`;
      break;
    case "conns":
      figure = `${formatInt(field(run, "connected") ?? 0)} connected, ${
        formatInt(field(run, "connect_rate") ?? 0)
      } conn/s`;
  }
  return `${figure} (${run.wallS} s)${flags.length > 0 ? ` [${flags.join(",")}]` : ""}`;
}

// ---- the stalled subscriber ----

/**
 * Connects to the broker as `clientId` (MQTT 3.1.1, clean session, keep-alive 0 so the broker never drops
 * it for silence), subscribes to `#` at QoS 0, and returns the socket once the SUBACK is in. The caller
 * never reads from it again, so the broker's writes back up: first in the kernel's socket buffers (a few
 * MB on loopback), then in the broker.
 */
async function openStalledSubscriber(port: number, clientId: string): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: HOST, port });
  // A broker that never answers must not hang the bench: closing the socket fails the pending read.
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    closeQuietly(conn);
  }, HANDSHAKE_TIMEOUT_MS);
  try {
    const reader = new PacketReader(conn);
    await writeAll(conn, connectPacket(clientId));
    const connack = await reader.next(PACKET_CONNACK);
    if (connack.length < 2 || connack[1] !== 0) throw new Error(`CONNACK refused (code ${connack[1]})`);
    await writeAll(conn, subscribePacket(SUBSCRIBE_ID, "#"));
    const suback = await reader.next(PACKET_SUBACK);
    if (suback.length < 3 || suback[2] !== 0) {
      throw new Error(`SUBACK did not grant QoS 0 (code 0x${(suback[2] ?? 0).toString(16)})`);
    }
    return conn;
  } catch (error) {
    closeQuietly(conn);
    if (timedOut) throw new Error(`no CONNACK and SUBACK within ${HANDSHAKE_TIMEOUT_MS / 1000} s`);
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

const PACKET_CONNACK = 2;
const PACKET_SUBACK = 9;
const SUBSCRIBE_ID = 1;

/** MQTT 3.1.1 CONNECT: clean session, keep-alive 0, no will, user name or password. */
export function connectPacket(clientId: string): Uint8Array {
  const body = [...mqttString("MQTT"), 4, 0x02, 0, 0, ...mqttString(clientId)];
  return new Uint8Array([0x10, ...remainingLength(body.length), ...body]);
}

/** MQTT 3.1.1 SUBSCRIBE to one filter at QoS 0 (fixed-header flags 0b0010 are required). */
export function subscribePacket(packetId: number, filter: string): Uint8Array {
  const body = [packetId >> 8, packetId & 0xff, ...mqttString(filter), 0];
  return new Uint8Array([0x82, ...remainingLength(body.length), ...body]);
}

function mqttString(text: string): number[] {
  const bytes = new TextEncoder().encode(text);
  return [bytes.length >> 8, bytes.length & 0xff, ...bytes];
}

/** The variable byte integer of the fixed header: seven bits a byte, low first, high bit "more". */
function remainingLength(n: number): number[] {
  const out: number[] = [];
  do {
    const byte = n % 128;
    n = Math.floor(n / 128);
    out.push(n > 0 ? byte | 0x80 : byte);
  } while (n > 0);
  return out;
}

/**
 * The first whole packet in `bytes`: its type, its body (after the fixed header) and the bytes after it;
 * null while incomplete. Throws on a remaining length longer than MQTT's four bytes.
 */
export function splitPacket(
  bytes: Uint8Array,
): { type: number; body: Uint8Array; rest: Uint8Array } | null {
  let length = 0;
  for (let i = 1; i <= 4; i++) {
    if (i >= bytes.length) return null;
    length += (bytes[i] & 0x7f) * 128 ** (i - 1);
    if ((bytes[i] & 0x80) === 0) {
      const end = i + 1 + length;
      if (bytes.length < end) return null;
      return { type: bytes[0] >> 4, body: bytes.subarray(i + 1, end), rest: bytes.subarray(end) };
    }
  }
  throw new Error("malformed remaining length");
}

/** Whole packets from a socket, for the handshake only (afterwards nothing reads it, on purpose). */
class PacketReader {
  #pending: Uint8Array = new Uint8Array(0);

  constructor(private readonly conn: Deno.TcpConn) {}

  /** The body of the next packet of `type`; packets of other types before it are skipped. */
  async next(type: number): Promise<Uint8Array> {
    for (;;) {
      const packet = splitPacket(this.#pending);
      if (packet !== null) {
        this.#pending = packet.rest;
        if (packet.type === type) return packet.body;
        continue;
      }
      const chunk = new Uint8Array(4096);
      const n = await this.conn.read(chunk);
      if (n === null) throw new Error("the broker closed the connection");
      const joined = new Uint8Array(this.#pending.length + n);
      joined.set(this.#pending);
      joined.set(chunk.subarray(0, n), this.#pending.length);
      this.#pending = joined;
    }
  }
}

async function writeAll(conn: Deno.TcpConn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

function closeQuietly(conn: Deno.TcpConn): void {
  try {
    conn.close();
  } catch {
    // Already closed (the handshake timer got there first).
  }
}

function randomHex(bytes: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, "0"))
    .join("");
}

/** VmRSS from a /proc/PID/status text, in kB; null when absent (a kernel thread, or not Linux). */
export function parseVmRssKb(status: string): number | null {
  const kb = status.match(/^VmRSS:\s*(\d+)\s*kB$/m)?.[1];
  return kb === undefined ? null : Number(kb);
}

/** The broker's resident memory in kB, or null when it cannot be read (the process is gone, not Linux). */
async function readRssKb(pid: number): Promise<number | null> {
  // Deno wants --allow-all to read /proc itself; the task grants --allow-run, so ask cat (as below).
  const cat = new Deno.Command("cat", { args: [`/proc/${pid}/status`], stdout: "piped", stderr: "null" });
  const out = await cat.output().catch(() => null);
  return out?.success ? parseVmRssKb(new TextDecoder().decode(out.stdout)) : null;
}

// ---- machine ----

async function machineInfo(): Promise<MachineInfo> {
  // Deno wants --allow-all to read /proc/cpuinfo itself; the task grants --allow-run, so ask cat.
  const cpuinfo = await new Deno.Command("cat", { args: ["/proc/cpuinfo"], stdout: "piped", stderr: "null" })
    .output().then((o) => new TextDecoder().decode(o.stdout), () => "");
  const model = cpuinfo.match(/^model name\s*:\s*(.+)$/m)?.[1]?.trim() ?? "unknown CPU";
  let memTotalMb: number | null = null;
  try {
    memTotalMb = Math.round(Deno.systemMemoryInfo().total / (1024 * 1024));
  } catch {
    // Not available on this OS: left out of the header.
  }
  return {
    nproc: navigator.hardwareConcurrency,
    cpuModel: model,
    kernel: Deno.osRelease(),
    os: Deno.build.os,
    memTotalMb,
    loadavg: Deno.loadavg(),
  };
}

function fail(message: string, code: number): number {
  console.error(`bench: ${message}`);
  return code;
}

/** Ctrl-C or SIGTERM: stop the generator and the broker, then exit; never leave a broker behind. */
function onStopSignal(): void {
  if (live.abort.signal.aborted) return;
  live.abort.abort();
  console.error("\nbench: interrupted, stopping the broker");
  void stopBroker().finally(() => Deno.exit(130));
}

if (import.meta.main) {
  Deno.addSignalListener("SIGINT", onStopSignal);
  Deno.addSignalListener("SIGTERM", onStopSignal);
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (error) {
    await stopBroker();
    console.error(`bench: ${error instanceof Error ? error.stack ?? error.message : error}`);
    code = 2;
  }
  Deno.exit(code);
}
