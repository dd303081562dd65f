/**
 * The workers' results merged into mqttload's JSON line (same fields, same order, same rounding) and its
 * exit status. Pure.
 */

import { Histogram } from "./histogram.ts";
import type { ConnectStats, Failure, WorkerResult } from "./ipc.ts";
import type { Options } from "./options.ts";

export const GENERATOR = "vyoma-loadgen";

/** What the main process observed itself. Times are shared-clock ns. */
export interface RunFacts {
  processes: number;
  /** Publishing started at t0; 0 when it never did. */
  t0: number;
  tEnd: number;
  /** CPU seconds of the main process over the same span as the workers'. */
  mainCpuS: number;
  /** Broker CPU seconds over the publish phase, -1 when unknown. */
  brokerCpuS: number;
  brokerRssBeforeKb: number;
  brokerRssAfterKb: number;
  timedOut: boolean;
  stalled: boolean;
  interrupted: boolean;
  /** Errors of the main process itself (a worker that died, say). */
  errors: string[];
}

/** Facts before anything was observed: nothing ran, nothing is known. */
export function initialFacts(): RunFacts {
  return {
    processes: 0,
    t0: 0,
    tEnd: 0,
    mainCpuS: 0,
    brokerCpuS: -1,
    brokerRssBeforeKb: -1,
    brokerRssAfterKb: -1,
    timedOut: false,
    stalled: false,
    interrupted: false,
    errors: [],
  };
}

export interface Merged {
  connect: ConnectStats;
  failure: Failure;
  sent: number;
  expected: number;
  received: number;
  acked: number;
  dups: number;
  gaps: number;
  lastRecv: number;
  /** Latest "published" time when every worker published, else 0. */
  tPubDone: number;
  hist: Histogram;
  cpuS: number;
}

export function mergeConnect(parts: readonly ConnectStats[]): ConnectStats {
  const firsts = parts.map((p) => p.first).filter((t) => t > 0);
  return {
    ok: sum(parts.map((p) => p.ok)),
    failed: sum(parts.map((p) => p.failed)),
    first: firsts.length ? Math.min(...firsts) : 0,
    last: Math.max(0, ...parts.map((p) => p.last)),
    subscribed: sum(parts.map((p) => p.subscribed)),
    grantedLower: parts.some((p) => p.grantedLower),
  };
}

export function mergeFailures(parts: readonly Failure[], own: readonly string[] = []): Failure {
  const fails: Record<string, number> = {};
  for (const p of parts) for (const [why, n] of Object.entries(p.fails)) fails[why] = (fails[why] ?? 0) + n;
  const first = parts.filter((p) => p.firstError !== "").sort((a, b) => a.firstErrorAt - b.firstErrorAt)[0];
  return {
    errors: sum(parts.map((p) => p.errors)) + own.length,
    firstError: own[0] ?? first?.firstError ?? "",
    firstErrorAt: first?.firstErrorAt ?? 0,
    fails,
    dropped: sum(parts.map((p) => p.dropped)),
  };
}

export function mergeResults(results: readonly WorkerResult[], own: readonly string[]): Merged {
  const hist = new Histogram();
  for (const r of results) hist.merge(r.hist);
  const published = results.length > 0 && results.every((r) => r.published);
  return {
    connect: mergeConnect(results.map((r) => r.connect)),
    failure: mergeFailures(results, own),
    sent: sum(results.map((r) => r.sent)),
    expected: sum(results.map((r) => r.expected)),
    received: sum(results.map((r) => r.received)),
    acked: sum(results.map((r) => r.acked)),
    dups: sum(results.map((r) => r.dups)),
    gaps: sum(results.map((r) => r.gaps)),
    lastRecv: Math.max(0, ...results.map((r) => r.lastRecv)),
    tPubDone: published ? Math.max(...results.map((r) => r.tPubDone)) : 0,
    hist,
    cpuS: sum(results.map((r) => r.cpuS)),
  };
}

/** mqttload's report_scenario. */
export function scenarioReport(o: Options, m: Merged, f: RunFacts): Record<string, unknown> {
  const t0 = f.t0 > 0 ? f.t0 : f.tEnd;
  const lost = Math.max(0, m.expected - m.received);
  const tStop = m.lastRecv > t0 ? m.lastRecv : f.tEnd;
  const duration = secs(t0, tStop);
  const sendDuration = secs(t0, m.tPubDone > 0 ? m.tPubDone : f.tEnd);
  const us = (ns: number) => round(ns / 1e3, 1);
  const out: Record<string, unknown> = {
    scenario: o.scenario,
    label: o.label,
    proto: "3.1.1",
    qos: o.qos,
    pubs: o.pubs,
    subs: o.subs,
    topics: o.topics,
    wildcard: o.wildcard,
    size: o.size,
    count: o.count,
    rate: round(o.rate, 0),
    window: o.window,
    pub_time: round(o.pubTime, 1),
    ...connectFields(m.connect),
    sent: m.sent,
    expected: m.expected,
    received: m.received,
    lost,
    dups: m.dups,
    gaps: m.gaps,
  };
  if (o.qos) out.acked = m.acked;
  Object.assign(out, {
    duration_s: round(duration, 3),
    send_rate: round(sendDuration > 0 ? m.sent / sendDuration : 0, 1),
    recv_rate: round(duration > 0 ? m.received / duration : 0, 1),
    p50_us: us(m.hist.percentile(50)),
    p90_us: us(m.hist.percentile(90)),
    p99_us: us(m.hist.percentile(99)),
    p999_us: us(m.hist.percentile(99.9)),
    max_us: us(m.hist.max),
    mean_us: us(m.hist.mean()),
    gen_cpu_s: round(m.cpuS + f.mainCpuS, 3),
  });
  if (o.brokerPid > 0 && f.brokerCpuS >= 0) {
    Object.assign(out, {
      broker_pid: o.brokerPid,
      broker_cpu_s: round(f.brokerCpuS, 3),
      broker_rss_kb: f.brokerRssAfterKb,
    });
  }
  if (m.connect.grantedLower) out.granted_qos_lower = true;
  return Object.assign(out, tail(o, m.failure, f));
}

/** mqttload's report_conns. */
export function connsReport(o: Options, m: Merged, f: RunFacts): Record<string, unknown> {
  const out: Record<string, unknown> = {
    scenario: "conns",
    label: o.label,
    proto: "3.1.1",
    requested: o.conns,
    keepalive: o.keepalive,
    parallel: o.parallel,
    ...connectFields(m.connect),
    held_s: round(o.hold, 1),
    dropped: m.failure.dropped,
  };
  if (o.brokerPid > 0) {
    const before = f.brokerRssBeforeKb;
    const after = f.brokerRssAfterKb;
    const delta = before >= 0 && after >= 0 ? after - before : 0;
    Object.assign(out, {
      broker_pid: o.brokerPid,
      broker_rss_before_kb: before,
      broker_rss_after_kb: after,
      broker_rss_per_conn_b: round(m.connect.ok > 0 ? delta * 1024 / m.connect.ok : 0, 0),
    });
  }
  out.gen_cpu_s = round(m.cpuS + f.mainCpuS, 3);
  return Object.assign(out, tail(o, m.failure, f));
}

function connectFields(c: ConnectStats): Record<string, number> {
  const s = secs(c.first, c.last);
  return {
    connected: c.ok,
    connect_failed: c.failed,
    connect_s: round(s, 3),
    connect_rate: round(s > 0 ? c.ok / s : 0, 1),
  };
}

function tail(o: Options, failure: Failure, f: RunFacts): Record<string, unknown> {
  return {
    fail_reasons: failure.fails,
    errors: failure.errors,
    error: failure.firstError,
    timed_out: f.timedOut,
    stalled: f.stalled,
    interrupted: f.interrupted,
    generator: GENERATOR,
    processes: f.processes,
    transport: o.transport,
  };
}

/** mqttload's exit status for a scenario run. */
export function scenarioExit(o: Options, m: Merged, f: RunFacts): number {
  if (m.failure.errors > 0 || m.connect.failed > 0) return 2;
  if (f.timedOut || f.interrupted) return 4;
  if (f.stalled) return 3;
  if (o.qos === 1 && (m.received < m.expected || m.dups > 0)) return 3;
  return 0;
}

/** mqttload's exit status for a conns run. */
export function connsExit(o: Options, m: Merged, f: RunFacts): number {
  if (f.interrupted || f.timedOut) return 4;
  if (f.errors.length > 0) return 2;
  if (m.connect.ok < o.conns || m.failure.dropped > 0) return 3;
  return 0;
}

function secs(a: number, b: number): number {
  return b > a ? (b - a) / 1e9 : 0;
}

function round(x: number, digits: number): number {
  return Number(x.toFixed(digits));
}

function sum(xs: readonly number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s;
}
