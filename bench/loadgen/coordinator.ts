/**
 * The main process: spawns the workers, hands out the clients, moves everyone through the phases
 * (connect and subscribe -> start publishing together at a shared time -> drain -> stop), samples the
 * broker at the start and end of publishing, and merges the workers' reports.
 */

import { fileURLToPath as fromFileUrl } from "node:url";
import { SharedClock } from "./clock.ts";
import type {
  ConnectStats,
  Failure,
  FromWorker,
  Progress,
  ToWorker,
  WorkerConfig,
  WorkerResult,
} from "./ipc.ts";
import { lines, parseMessage } from "./ipc.ts";
import type { Options } from "./options.ts";
import { placeClients, type Share, splitEvenly, subMatches, type Topology } from "./plan.ts";
import { sampleProcess, selfCpuSeconds } from "./proc.ts";
import {
  connsExit,
  connsReport,
  initialFacts,
  type Merged,
  mergeResults,
  type RunFacts,
  scenarioExit,
  scenarioReport,
} from "./report.ts";

export interface Outcome {
  report: Record<string, unknown>;
  exitCode: number;
}

/** Lead time between "go" and the shared start, for the message to reach every worker. */
const GO_LEAD_MS = 30;
const TICK_MS = 20;
/** How long stopped workers get to report before they are killed. */
const RESULT_GRACE_MS = 5000;
const EXIT_GRACE_MS = 3000;

const WORKER_URL = new URL("./worker.ts", import.meta.url);

class Worker {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #encoder = new TextEncoder();
  readonly #waiters = new Map<string, (message: FromWorker) => void>();
  readonly #early = new Map<string, FromWorker>();
  progress: Progress | null = null;
  /** Set when the worker's stdout ended: it exited or crashed. */
  gone = false;
  readonly done: Promise<void>;

  constructor(readonly index: number, verbose: boolean) {
    this.#child = new Deno.Command(Deno.execPath(), {
      // LOADGEN_WORKER_FLAGS adds deno flags to the workers, such as --cpu-prof for profiling.
      // Network for the clients, and reading its own directory for the ticker thread's module.
      args: [
        "run",
        "--no-config",
        "--no-prompt",
        "--allow-net",
        `--allow-read=${moduleDir()}`,
        ...extraFlags(),
        workerPath(),
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: verbose ? "inherit" : "piped",
    }).spawn();
    this.#writer = this.#child.stdin.getWriter();
    const stderr = verbose ? Promise.resolve("") : new Response(this.#child.stderr).text();
    this.done = this.#read().then(async () => {
      this.gone = true;
      const text = (await stderr).trim();
      const status = await this.#child.status;
      if (text !== "") console.error(`vyoma-loadgen: worker ${index} (exit ${status.code}):\n${text}`);
    });
  }

  async #read(): Promise<void> {
    for await (const line of lines(this.#child.stdout)) {
      const message = parseMessage<FromWorker>(line);
      if (message.t === "progress") {
        this.progress = message.progress;
        continue;
      }
      const waiter = this.#waiters.get(message.t);
      if (waiter) {
        this.#waiters.delete(message.t);
        waiter(message);
      } else {
        this.#early.set(message.t, message);
      }
    }
  }

  /** The next message of kind `t`, or null if the worker is gone first. */
  expect<T extends FromWorker["t"]>(t: T): Promise<Extract<FromWorker, { t: T }> | null> {
    const early = this.#early.get(t);
    if (early) {
      this.#early.delete(t);
      return Promise.resolve(early as Extract<FromWorker, { t: T }>);
    }
    return new Promise((resolve) => {
      this.#waiters.set(t, (m) => resolve(m as Extract<FromWorker, { t: T }>));
      this.done.then(() => resolve(null));
    });
  }

  async send(message: ToWorker): Promise<void> {
    if (this.gone) return;
    try {
      await this.#writer.write(this.#encoder.encode(JSON.stringify(message) + "\n"));
    } catch { /* it exited; its missing report says so */ }
  }

  kill(): void {
    if (this.gone) return;
    try {
      this.#child.kill("SIGKILL");
    } catch { /* already gone */ }
  }

  /** Ends the worker's stdin and waits for it to exit. */
  async close(): Promise<void> {
    try {
      await this.#writer.close();
    } catch { /* already closed */ }
    await this.done;
  }
}

function extraFlags(): string[] {
  let flags = "";
  try {
    flags = Deno.env.get("LOADGEN_WORKER_FLAGS") ?? "";
  } catch { /* no --allow-env: no extra flags */ }
  return flags.split(" ").filter((f) => f !== "");
}

function workerPath(): string {
  return WORKER_URL.protocol === "file:" ? fromFileUrl(WORKER_URL) : WORKER_URL.href;
}

function moduleDir(): string {
  return WORKER_URL.protocol === "file:" ? fromFileUrl(new URL(".", WORKER_URL)) : ".";
}

/**
 * The run's end conditions that can cut any wait short: the --duration-max deadline and SIGINT/SIGTERM.
 */
class Guard {
  timedOut = false;
  interrupted = false;
  readonly #listeners = new Set<() => void>();

  constructor(readonly clock: SharedClock, readonly deadline: number) {}

  interrupt(): void {
    this.interrupted = true;
    for (const listener of [...this.#listeners]) listener();
  }

  /** False once the run must end. */
  get ok(): boolean {
    if (!this.interrupted && this.clock.nowNs() >= this.deadline) this.timedOut = true;
    return !this.interrupted && !this.timedOut;
  }

  #msLeft(): number {
    return Math.max(0, this.clock.msUntil(this.deadline));
  }

  /** Sleeps `ms` (never past the deadline); resolves false, early if need be, when the run must end. */
  sleep(ms: number): Promise<boolean> {
    if (!this.ok) return Promise.resolve(false);
    return new Promise((resolve) => {
      const finish = (value: boolean) => {
        clearTimeout(timer);
        this.#listeners.delete(onEnd);
        resolve(value);
      };
      const onEnd = () => finish(false);
      const timer = setTimeout(() => finish(this.ok), Math.min(Math.max(0, ms), this.#msLeft()));
      this.#listeners.add(onEnd);
    });
  }

  /** `promise`'s value, or null when the deadline or a signal comes first. */
  within<T>(promise: Promise<T>): Promise<T | null> {
    if (!this.ok) return Promise.resolve(null);
    return new Promise((resolve) => {
      let settled = false;
      const finish = (value: T | null) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#listeners.delete(onEnd);
        resolve(value);
      };
      const onEnd = () => finish(null);
      const timer = setTimeout(() => {
        if (!this.interrupted) this.timedOut = true; // timers may fire a hair early
        finish(null);
      }, this.#msLeft());
      this.#listeners.add(onEnd);
      promise.then(finish, () => finish(null));
    });
  }
}

/** Runs the whole load; never throws for broker trouble, which ends up in the report. */
export async function run(o: Options, caCerts: string[], log: (text: string) => void): Promise<Outcome> {
  const clock = new SharedClock(Math.floor(performance.timeOrigin));
  const guard = new Guard(clock, clock.nowNs() + o.durationMax * 1e9);
  const facts: RunFacts = initialFacts();
  const onSignal = () => guard.interrupt();
  const signals = ["SIGINT", "SIGTERM"] as const;
  for (const s of signals) Deno.addSignalListener(s, onSignal);

  const topo: Topology = {
    npubs: o.conns > 0 ? 0 : o.pubs,
    nsubs: o.conns > 0 ? 0 : o.subs,
    topics: o.topics,
    wildcard: o.wildcard,
  };
  const conns = o.conns > 0 ? splitEvenly(o.conns, o.processes).filter((k) => k > 0) : [];
  let shares: Share[] = o.conns > 0
    ? conns.map(() => ({ pubs: [], subs: [] }))
    : placeClients(topo, o.processes);
  if (shares.length === 0) shares = [{ pubs: [], subs: [] }];
  const n = shares.length;
  facts.processes = n;
  const pubOwner = new Array<number>(topo.npubs).fill(0);
  shares.forEach((s, w) => s.pubs.forEach((i) => pubOwner[i] = w));
  const parallel = splitEvenly(Math.max(o.parallel, n), n);
  // Delivery counts only need to cross processes when a window gates publishers on them.
  const mesh = o.window > 0 && n > 1 && !shares.every((s) => selfContained(s, topo));

  facts.brokerRssBeforeKb = (await sampleProcess(o.brokerPid)).rssKb;
  log(
    `${n} worker processes: ` +
      shares.map((s, w) => `${s.pubs.length} pubs ${s.subs.length} subs ${conns[w] ?? 0} conns`).join(", "),
  );
  const workers = shares.map((_, w) => new Worker(w, o.verbose));
  let results: WorkerResult[] = [];
  let mainCpuStart = 0;
  try {
    const hellos = await guard.within(Promise.all(workers.map((w) => w.expect("hello"))));
    const ports = hellos?.every((h) => h !== null) ? hellos.map((h) => h!.peerPort) : null;
    if (hellos !== null && ports === null) facts.errors.push("a worker process failed to start");
    let ready: { connect: ConnectStats; failure: Failure }[] | null = null;
    if (ports !== null) {
      let connsFrom = 0;
      await Promise.all(workers.map((w, k) => {
        const config: WorkerConfig = {
          worker: k,
          host: o.host,
          port: o.port,
          transport: o.transport,
          caCerts,
          wsPath: o.wsPath,
          qos: o.qos,
          size: o.size,
          count: o.count,
          rate: o.rate,
          window: o.window,
          inflight: o.inflight,
          pubTime: o.pubTime,
          keepalive: o.keepalive,
          parallel: parallel[k],
          hsTimeout: o.hsTimeout,
          prefix: o.prefix,
          clientIdBase: `loadgen-${Deno.pid}`,
          npubs: topo.npubs,
          nsubs: topo.nsubs,
          topics: o.topics,
          wildcard: o.wildcard,
          pubs: shares[k].pubs,
          subs: shares[k].subs,
          conns: conns[k] ?? 0,
          connsFrom,
          pubOwner,
          peers: mesh ? ports : [],
          baseMs: clock.baseMs,
          verbose: o.verbose,
        };
        connsFrom += conns[k] ?? 0;
        return w.send({ t: "init", config });
      }));
      const readies = await guard.within(Promise.all(workers.map((w) => w.expect("ready"))));
      if (readies?.every((r) => r !== null)) ready = readies.map((r) => r!);
      else if (readies !== null) facts.errors.push("a worker process exited early");
    }
    if (ready !== null) {
      const connected = sumOf(ready.map((r) => r.connect.ok));
      const failed = sumOf(ready.map((r) => r.connect.failed));
      log(`connected ${connected}, failed ${failed}`);
      if (o.conns > 0) {
        await guard.sleep(o.hold * 1000);
        facts.brokerRssAfterKb = (await sampleProcess(o.brokerPid)).rssKb;
      } else if (failed === 0 && sumOf(ready.map((r) => r.failure.errors)) === 0) {
        mainCpuStart = await publish(o, guard, workers, facts, log);
      }
    }
    if (facts.tEnd === 0) facts.tEnd = clock.nowNs();
    facts.mainCpuS = selfCpuSeconds() - mainCpuStart;
    await Promise.all(workers.map((w) => w.send({ t: "stop" })));
    let grace: ReturnType<typeof setTimeout> | undefined;
    const collected = await Promise.race([
      Promise.all(workers.map((w) => w.expect("result"))),
      new Promise<null>((resolve) => grace = setTimeout(() => resolve(null), RESULT_GRACE_MS)),
    ]);
    clearTimeout(grace);
    if (collected === null || collected.some((r) => r === null)) {
      facts.errors.push("a worker process did not report");
    }
    results = (collected ?? []).flatMap((r) => r === null ? [] : [r.result]);
    log(
      `CPU s: main ${facts.mainCpuS.toFixed(3)}, workers ${results.map((r) => r.cpuS.toFixed(3)).join(" ")}`,
    );
  } finally {
    // Workers exit by themselves once stopped (or at end of stdin); stragglers are killed.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(workers.map((w) => w.close())),
      new Promise<void>((resolve) => timer = setTimeout(resolve, EXIT_GRACE_MS)),
    ]);
    clearTimeout(timer);
    for (const w of workers) w.kill();
    await Promise.all(workers.map((w) => w.done));
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
  }
  facts.timedOut = guard.timedOut;
  facts.interrupted = guard.interrupted;
  const skews = results.map((r) => r.wallSkewMs);
  if (skews.length > 1 && Math.max(...skews) - Math.min(...skews) > 2) {
    console.error("vyoma-loadgen: warning: the wall clock was stepped during the run; latencies may be off");
  }
  const merged: Merged = mergeResults(results, facts.errors);
  if (o.conns > 0) return { report: connsReport(o, merged, facts), exitCode: connsExit(o, merged, facts) };
  return { report: scenarioReport(o, merged, facts), exitCode: scenarioExit(o, merged, facts) };
}

/**
 * Publish phase: everyone starts at shared time t0; then progress is watched until the deliveries are in
 * (or stop coming), publishing stalls, or the run is cut off. Returns the main process's CPU at t0.
 */
async function publish(
  o: Options,
  guard: Guard,
  workers: Worker[],
  facts: RunFacts,
  log: (text: string) => void,
): Promise<number> {
  const clock = guard.clock;
  const t0 = Math.round(clock.nowNs() + GO_LEAD_MS * 1e6);
  await Promise.all(workers.map((w) => w.send({ t: "go", t0 })));
  if (!(await guard.sleep(clock.msUntil(t0)))) return selfCpuSeconds();
  facts.t0 = t0;
  const cpuStart = selfCpuSeconds();
  const brokerStart = sampleProcess(o.brokerPid);
  let progressSum = -1;
  let tProgress = clock.nowNs();
  let publishedLogged = false;
  while (await guard.sleep(TICK_MS)) {
    const now = clock.nowNs();
    if (workers.some((w) => w.gone)) {
      facts.errors.push("a worker process exited during the run");
      break;
    }
    const ps = workers.map((w) => w.progress);
    const total = sumOf(ps.map((p) => p ? p.sent + p.received + p.acked : 0));
    if (!ps.every((p) => p?.published === true)) {
      // mqttload's stall rule: while publishing, no send, delivery or ack for --stall seconds.
      if (total !== progressSum) {
        progressSum = total;
        tProgress = now;
      } else if (now - tProgress > o.stall * 1e9) {
        facts.stalled = true;
        log(`no progress for ${o.stall}s, giving up`);
        break;
      }
      continue;
    }
    const done = ps.map((p) => p!);
    const tDrain = Math.max(...done.map((p) => p.tPubDone));
    if (!publishedLogged) {
      publishedLogged = true;
      log(`published ${sumOf(done.map((p) => p.sent))} in ${((tDrain - t0) / 1e9).toFixed(3)}s`);
    }
    const last = Math.max(tDrain, ...done.map((p) => p.lastRecv));
    const received = sumOf(done.map((p) => p.received));
    if (received >= sumOf(done.map((p) => p.expected)) || now - last > o.drainIdle * 1e9) break;
  }
  facts.tEnd = clock.nowNs();
  const [start, end] = await Promise.all([brokerStart, sampleProcess(o.brokerPid)]);
  facts.brokerCpuS = start.cpuS >= 0 && end.cpuS >= 0 ? end.cpuS - start.cpuS : -1;
  facts.brokerRssAfterKb = end.rssKb;
  return cpuStart;
}

/** Whether every subscriber of this share's publishers, and every publisher its subscribers hear, is local. */
function selfContained(share: Share, topo: Topology): boolean {
  const subs = new Set(share.subs);
  const pubs = new Set(share.pubs);
  for (const i of share.pubs) {
    for (let j = 0; j < topo.nsubs; j++) {
      if (subMatches(topo, j, i) && !subs.has(j)) return false;
    }
  }
  for (const j of share.subs) {
    for (let i = 0; i < topo.npubs; i++) {
      if (subMatches(topo, j, i) && !pubs.has(i)) return false;
    }
  }
  return true;
}

function sumOf(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}
