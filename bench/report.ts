/**
 * Turning runs into the table, the targets, the JSON and the SVG chart. Everything here but `writeResults`
 * is pure, so tests can check it on made-up runs.
 */

import { join } from "node:path";
import type { GeneratorInfo } from "./generator.ts";
import type { Transport } from "./loadgen/options.ts";
import type { ListenerPorts } from "./peers.ts";
import { type BrokerName, type Scenario, sizeLabel, transportBaseline } from "./scenarios.ts";

export interface MachineInfo {
  nproc: number;
  cpuModel: string;
  kernel: string;
  os: string;
  memTotalMb: number | null;
  /** 1, 5 and 15 minute load averages when the bench started: other work on the machine skews figures. */
  loadavg: number[];
}

export interface BrokerEntry {
  name: BrokerName;
  version: string;
  runtime: string | null;
  /** Why it did not run (not installed, install failed); null when it ran. */
  skipped: string | null;
  /** Config of its first start, for the record. */
  config: string | null;
  /** Every start: the first, one per fresh scenario, one after a crash. */
  starts: { port: number; pid: number; ports?: ListenerPorts }[];
  /** Transports of the selected transport rows that this broker was not started with, and why. */
  unserved: Partial<Record<Transport, string>>;
}

/** One generator run against one broker. */
export interface RunRecord {
  broker: BrokerName;
  scenario: string;
  /** Generator exit code; null when it never ran (the broker did not start). */
  exitCode: number | null;
  /** The generator's JSON line, parsed: every field it printed. */
  result: Record<string, unknown> | null;
  /** A problem seen by the bench itself: broker did not start or died, generator killed. */
  error: string | null;
  stderrTail: string;
  wallS: number;
  /** `stalled` runs only: the subscriber the bench stalled and the broker's RSS around the generator run. */
  stalled?: StalledRecord;
}

/** What the bench itself measured in a `stalled` run (the generator knows nothing of that subscriber). */
export interface StalledRecord {
  /** Client id of the subscriber to `#` that stopped reading after its SUBACK. */
  clientId: string;
  /** Broker VmRSS, kB, once that subscriber had its SUBACK, just before the generator started. */
  rssBeforeKb: number | null;
  /** Broker VmRSS, kB, right after the generator exited, before the stalled socket was closed. */
  rssAfterKb: number | null;
}

export interface Report {
  started: string;
  finished: string;
  wallS: number;
  argv: string[];
  mode: "full" | "quick";
  pubTime: number;
  machine: MachineInfo;
  generator: GeneratorInfo;
  /** The generator of the transport rows (vyoma-loadgen, whatever `generator` is); null when none ran. */
  transportGenerator: GeneratorInfo | null;
  brokers: BrokerEntry[];
  scenarios: Scenario[];
  runs: RunRecord[];
}

export type FlagCode = "GEN" | "LOSS" | "ERR";
export interface Flag {
  code: FlagCode;
  detail: string;
}

/** A numeric field of the generator's JSON, or null when absent. */
export function field(run: RunRecord | undefined, key: string): number | null {
  const value = run?.result?.[key];
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

const EXIT_MEANING: Record<number, string> = {
  1: "usage error",
  2: "protocol or connection error",
  3: "incomplete",
  4: "duration-max reached",
};

/**
 * Why a run does not measure what it should: GEN when the generator used at least as much CPU as the
 * broker (throughput, stalled and transport runs; latency runs are rate-limited on purpose and conns runs report no
 * broker CPU), LOSS for lost or duplicated QoS 1 messages, ERR for a generator exit other than 0 or a
 * bench-side error.
 */
export function runFlags(scenario: Scenario, run: RunRecord): Flag[] {
  const flags: Flag[] = [];
  if (run.error !== null) {
    flags.push({ code: "ERR", detail: run.error });
  } else if (run.exitCode !== 0) {
    const said = typeof run.result?.error === "string" && run.result.error !== "" ? run.result.error : null;
    const meaning = EXIT_MEANING[run.exitCode ?? -1] ?? "failed";
    const why = said ?? (run.result === null ? run.stderrTail.split("\n").at(-1) || "no output" : meaning);
    flags.push({ code: "ERR", detail: `exit ${run.exitCode}: ${why}` });
  }
  const lost = field(run, "lost") ?? 0;
  const dups = field(run, "dups") ?? 0;
  if (scenario.qos === 1 && (lost > 0 || dups > 0)) {
    flags.push({ code: "LOSS", detail: `${lost} lost, ${dups} dups` });
  }
  const loaded = scenario.kind === "throughput" || scenario.kind === "stalled" ||
    scenario.kind === "transport";
  if (loaded && run.result !== null) {
    const gen = field(run, "gen_cpu_s");
    const broker = field(run, "broker_cpu_s");
    if (broker === null) {
      flags.push({ code: "GEN", detail: "no broker CPU figure: cannot tell who was the bottleneck" });
    } else if (gen !== null && gen >= broker) {
      flags.push({
        code: "GEN",
        detail: `generator ${gen.toFixed(2)} s >= broker ${broker.toFixed(2)} s CPU`,
      });
    }
  }
  return flags;
}

export function isClean(scenario: Scenario, run: RunRecord): boolean {
  return runFlags(scenario, run).length === 0;
}

/**
 * The figure compared across brokers: msg/s, MB of RSS growth, p99 us, conn/s, bytes per connection.
 * RSS growth counts as at least STALLED_GROWTH_FLOOR_MB, so that a broker whose RSS did not grow (or
 * shrank) still has a ratio rather than none or an infinite one.
 */
export function primaryValue(scenario: Scenario, run: RunRecord | undefined): number | null {
  if (run === undefined || run.result === null) return null;
  switch (scenario.kind) {
    case "throughput":
    case "transport":
      return positive(field(run, "recv_rate"));
    case "stalled": {
      const growth = rssGrowthMb(run);
      return growth === null ? null : Math.max(growth, STALLED_GROWTH_FLOOR_MB);
    }
    case "latency":
      return positive(field(run, "p99_us"));
    case "conns":
      return scenario.fresh
        ? positive(field(run, "broker_rss_per_conn_b"))
        : positive(field(run, "connect_rate"));
  }
}

function positive(n: number | null): number | null {
  return n !== null && n > 0 ? n : null;
}

/** Latency, memory growth and per-connection memory: smaller is better. */
export function lowerIsBetter(scenario: Scenario): boolean {
  return scenario.kind === "latency" || scenario.kind === "stalled" ||
    (scenario.kind === "conns" && scenario.fresh);
}

/**
 * Smallest RSS growth a ratio uses, MB: the figure's resolution. A smaller or negative growth shows as
 * +0.0 MB or less and means "did not grow"; a ratio against it would be noise, or no ratio at all.
 */
export const STALLED_GROWTH_FLOOR_MB = 0.1;

/** A `stalled` run's broker RSS growth in MB (MiB, like the machine's memory above); null without both. */
export function rssGrowthMb(run: RunRecord | undefined): number | null {
  const before = run?.stalled?.rssBeforeKb ?? null;
  const after = run?.stalled?.rssAfterKb ?? null;
  return before === null || after === null ? null : (after - before) / 1024;
}

/**
 * The reading subscriber's msg/s in a `stalled` run: messages received over the publish time (or the run,
 * when longer). Not the generator's recv_rate, which divides by the time to the last message received: a
 * broker that stops delivering to everyone once one subscriber stalls would show its rate before it stopped.
 */
export function servedRate(run: RunRecord | undefined): number | null {
  const received = field(run, "received");
  const pubTime = field(run, "pub_time");
  if (received === null || pubTime === null || pubTime <= 0) return field(run, "recv_rate");
  return received / Math.max(pubTime, field(run, "duration_s") ?? 0);
}

export function formatInt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/** `+3.1 MB`, `-0.4 MB`, `+812 MB`: always signed, as it is a change. */
export function formatGrowthMb(mb: number): string {
  const abs = Math.abs(mb);
  const text = abs >= 100 ? formatInt(abs) : abs.toFixed(1);
  return `${mb < 0 && text !== "0.0" ? "-" : "+"}${text} MB`;
}

/** The table cell for one broker's run of a scenario. */
export function figureText(scenario: Scenario, run: RunRecord | undefined): string {
  if (run === undefined) return "-";
  if (run.result === null) return "failed";
  switch (scenario.kind) {
    case "throughput":
    case "transport": {
      const rate = field(run, "recv_rate");
      return rate === null ? "?" : formatInt(rate);
    }
    case "stalled": {
      const growth = rssGrowthMb(run);
      const rate = servedRate(run);
      return `${growth === null ? "?" : formatGrowthMb(growth)} (${
        rate === null ? "?" : formatInt(rate)
      } msg/s)`;
    }
    case "latency": {
      const p50 = field(run, "p50_us");
      const p99 = field(run, "p99_us");
      return `${p50 === null ? "?" : formatInt(p50)} / ${p99 === null ? "?" : formatInt(p99)}`;
    }
    case "conns": {
      if (!scenario.fresh) {
        const rate = field(run, "connect_rate");
        return rate === null ? "?" : formatInt(rate);
      }
      const connected = field(run, "connected");
      const perConn = field(run, "broker_rss_per_conn_b");
      return `${connected === null ? "?" : formatInt(connected)} / ${
        perConn === null ? "?" : formatInt(perConn)
      } B`;
    }
  }
}

/** Vyoma's figure over the peer's, as `1.23x`; `-` when either is missing. */
export function ratio(vyoma: number | null, peer: number | null): number | null {
  return vyoma === null || peer === null || peer === 0 ? null : vyoma / peer;
}

export function formatRatio(r: number | null): string {
  if (r === null) return "-";
  if (r > 0 && r < 0.01) return `${r.toPrecision(1)}x`; // memory growth ratios get this small; 0.00x says nothing
  return r >= 100 ? `${Math.round(r)}x` : r >= 10 ? `${r.toFixed(1)}x` : `${r.toFixed(2)}x`;
}

// ---- targets from the issue ----

export interface TargetCheck {
  scenario: string;
  rule: string;
  /** The figure the rule is applied to: ratio or absolute, formatted. */
  value: string;
  /** null when it cannot be decided (no peer ran, say). */
  met: boolean | null;
}

/** Bytes per idle connection allowed: "RSS per connection <= 6 KB". */
export const RSS_PER_CONN_LIMIT = 6 * 1024;
export const CONNECT_RATE_TARGET = 10_000;
/**
 * "Memory stays bounded when a subscriber stops reading": Vyoma's RSS growth in a `stalled` run, MB, at
 * most. Vyoma drops QoS 0 for a connection holding `limits.max_write_buffer` (1 MiB by default) unsent
 * bytes, so its own buffering accounts for about 1 MB and anything more is heap noise (a fresh Vyoma grows
 * by about 13 MB under this load with no stalled subscriber at all: V8's heap reaching its working size);
 * a broker that queued everything for the stalled subscriber grows by hundreds of MB in a 5 s run at these
 * rates.
 */
export const STALLED_GROWTH_LIMIT_MB = 64;

/**
 * The issue's target for `scenario`, judged on Vyoma's run against the peers' (throughput: the faster one);
 * null for a row without one (the transport rows are informative ratios).
 */
export function targetFor(scenario: Scenario, runs: ReadonlyMap<BrokerName, RunRecord>): TargetCheck | null {
  const vyoma = runs.get("vyoma");
  const mine = primaryValue(scenario, vyoma);
  const check = (rule: string, value: string, met: boolean | null) => ({
    scenario: scenario.name,
    rule,
    value,
    met,
  });
  switch (scenario.kind) {
    case "throughput": {
      const need = scenario.qos === 1 ? 2 : scenario.pattern === "fanout" ? 5 : 2.5;
      const rule = `>=${need}x`;
      const peers = (["mosquitto", "aedes"] as const)
        .map((b) => primaryValue(scenario, runs.get(b)))
        .filter((v): v is number => v !== null);
      if (peers.length === 0) return check(rule, "no peer", null);
      const r = ratio(mine, Math.max(...peers));
      return check(rule, formatRatio(r), r === null ? false : r >= need);
    }
    case "stalled": {
      // No peer needed: bounded is an absolute property. A run without a generator result had no load.
      const growth = vyoma?.result == null ? null : rssGrowthMb(vyoma);
      return check(
        `bounded, <=${STALLED_GROWTH_LIMIT_MB} MB`,
        growth === null ? "no result" : formatGrowthMb(growth),
        growth !== null && growth <= STALLED_GROWTH_LIMIT_MB,
      );
    }
    case "latency": {
      const r = ratio(mine, primaryValue(scenario, runs.get("mosquitto")));
      if (primaryValue(scenario, runs.get("mosquitto")) === null) {
        return check("<=1.5x", "no mosquitto", null);
      }
      return check("<=1.5x", formatRatio(r), r === null ? false : r <= 1.5);
    }
    case "conns": {
      if (!scenario.fresh) {
        return check(
          `>=${formatInt(CONNECT_RATE_TARGET)}/s`,
          mine === null ? "no result" : `${formatInt(mine)}/s`,
          mine !== null && mine >= CONNECT_RATE_TARGET,
        );
      }
      const connected = field(vyoma, "connected");
      const requested = field(vyoma, "requested");
      const all = connected !== null && connected === requested;
      const value = mine === null
        ? "no result"
        : all
        ? `${formatInt(mine)} B`
        : `${formatInt(connected ?? 0)} of ${formatInt(requested ?? 0)} connected`;
      return check(
        `all, <=${formatInt(RSS_PER_CONN_LIMIT)} B`,
        value,
        mine !== null && all && mine <= RSS_PER_CONN_LIMIT,
      );
    }
    case "transport":
      return null;
  }
}

/** Every target of the report's rows, in table order. */
export function targets(report: Report): TargetCheck[] {
  return report.scenarios.flatMap((s) => targetFor(s, runsFor(report, s.name)) ?? []);
}

export function formatTarget(t: TargetCheck): string {
  return `${t.rule}: ${t.value} ${t.met === null ? "n/a" : t.met ? "ok" : "MISS"}`;
}

// ---- the table ----

/** Brokers that ran, in column order. */
export function columns(report: Report): BrokerName[] {
  return report.brokers.filter((b) => b.skipped === null).map((b) => b.name);
}

function runsFor(report: Report, scenario: string): Map<BrokerName, RunRecord> {
  return new Map(report.runs.filter((r) => r.scenario === scenario).map((r) => [r.broker, r]));
}

export function headerLines(report: Report): string[] {
  const m = report.machine;
  const brokers = report.brokers.map((b) =>
    b.skipped === null
      ? `${b.version}${b.runtime === null ? "" : ` (${b.runtime})`}`
      : `${b.name}: skipped, ${b.skipped}`
  );
  const g = report.generator;
  return [
    `Vyoma bench ${report.started} (${report.mode}: throughput runs publish ${report.pubTime} s closed-loop)`,
    `machine: ${m.nproc} x ${m.cpuModel}, ${m.os} ${m.kernel}` +
    (m.memTotalMb === null ? "" : `, ${formatInt(m.memTotalMb)} MB`) +
    `, load ${m.loadavg.map((l) => l.toFixed(2)).join(" ")} at start`,
    `brokers: ${brokers.join("; ")}`,
    `generator: ${g.kind} ${g.path} (${g.version})`,
    "figures: throughput msg/s received; stalled-q0 broker RSS growth while one more subscriber stops " +
    "reading (the reading subscriber's msg/s over the publish time); latency p50 / p99 us at 4,000 msg/s; conns-1000 " +
    "connections/s; conns-10000 connected / broker RSS bytes per connection",
    "ratios: Vyoma / peer; above 1 is better for Vyoma except stalled-q0 (ratio of RSS growth), latency " +
    "(ratio of p99) and conns-10000 (ratio of bytes/conn), where below 1 is better",
    "target: the issue's goal (throughput against the faster peer, latency against Mosquitto); stalled-q0 " +
    `bounded: Vyoma's RSS growth <= ${STALLED_GROWTH_LIMIT_MB} MB (it drops QoS 0 to a connection with ` +
    "limits.max_write_buffer, 1 MiB, unsent: more is heap noise; queueing everything would be hundreds of MB)",
    "flags: GEN generator CPU >= broker CPU (measured the generator); LOSS lost/duplicated at QoS 1; " +
    "ERR generator exit != 0 or broker failure",
  ];
}

export function renderTable(report: Report): string {
  const brokers = columns(report);
  const peers = brokers.filter((b) => b !== "vyoma");
  const hasVyoma = brokers.includes("vyoma");
  const head = [
    "scenario",
    ...brokers,
    ...(hasVyoma ? peers.map((p) => `vyoma/${p}`) : []),
    ...(hasVyoma ? ["target"] : []),
    "flags",
  ];
  const rows: string[][] = [];
  for (const scenario of report.scenarios.filter((s) => s.kind !== "transport")) {
    const runs = runsFor(report, scenario.name);
    const mine = primaryValue(scenario, runs.get("vyoma"));
    const target = targetFor(scenario, runs);
    rows.push([
      scenario.name,
      ...brokers.map((b) => figureText(scenario, runs.get(b))),
      ...(hasVyoma ? peers.map((p) => formatRatio(ratio(mine, primaryValue(scenario, runs.get(p))))) : []),
      ...(hasVyoma ? [target === null ? "-" : formatTarget(target)] : []),
      flagsCell(brokers, scenario, runs),
    ]);
  }
  const out = [...headerLines(report).map((l) => `# ${l}`)];
  if (rows.length > 0) out.push("", ...aligned(head, rows));
  if (hasVyoma) out.push("", summaryLine(report));
  const transport = transportSection(report);
  if (transport.length > 0) out.push("", ...transport);
  return out.join("\n");
}

/** Rows under a head, figures right-aligned, the first and last columns left-aligned. */
function aligned(head: string[], rows: string[][]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i]) : c.padStart(widths[i])))
      .join("  ").trimEnd();
  return [line(head), ...rows.map(line)];
}

function flagsCell(
  brokers: BrokerName[],
  scenario: Scenario,
  runs: ReadonlyMap<BrokerName, RunRecord>,
): string {
  return brokers.flatMap((b) => {
    const run = runs.get(b);
    return run === undefined ? [] : runFlags(scenario, run).map((f) => `${b}:${flagText(f)}`);
  }).join(" ");
}

// ---- transport rows ----

/** Brokers with a run of any transport row, in column order. */
export function transportColumns(report: Report): BrokerName[] {
  const names = new Set(report.scenarios.filter((s) => s.kind === "transport").map((s) => s.name));
  return columns(report).filter((b) => report.runs.some((r) => r.broker === b && names.has(r.scenario)));
}

/** A transport row's msg/s over the same broker's tcp row's: what the transport costs, 1.00x for tcp. */
export function transportRatio(report: Report, scenario: Scenario, broker: BrokerName): number | null {
  const runs = (name: string) => runsFor(report, name).get(broker);
  const base = report.scenarios.find((s) => s.name === transportBaseline(scenario));
  return base === undefined
    ? null
    : ratio(primaryValue(scenario, runs(scenario.name)), primaryValue(base, runs(base.name)));
}

/** A transport row's cell: its figure, or why the broker did not run it. */
function transportFigure(report: Report, scenario: Scenario, broker: BrokerName): string {
  const run = runsFor(report, scenario.name).get(broker);
  const unserved = report.brokers.find((b) => b.name === broker)?.unserved[scenario.transport ?? "tcp"];
  return run === undefined && unserved !== undefined ? "skipped" : figureText(scenario, run);
}

/** One line per reason `broker` does not serve some transports: `mosquitto: no ws, wss rows: <why>`. */
export function unservedNotes(broker: BrokerName, unserved: Partial<Record<Transport, string>>): string[] {
  const reasons = new Map<string, Transport[]>();
  for (const [transport, why] of Object.entries(unserved) as [Transport, string][]) {
    reasons.set(why, [...(reasons.get(why) ?? []), transport]);
  }
  return [...reasons].map(([why, transports]) => `${broker}: no ${transports.join(", ")} rows: ${why}`);
}

/**
 * The transport rows' own table: msg/s and the ratio to the same broker's tcp row, for every broker that ran
 * them, then one line per reason a transport was skipped. Empty when no transport row was selected.
 */
export function transportSection(report: Report): string[] {
  const scenarios = report.scenarios.filter((s) => s.kind === "transport");
  if (scenarios.length === 0) return [];
  const brokers = transportColumns(report);
  const g = report.transportGenerator;
  const head = ["transport row", ...brokers.flatMap((b) => [b, `${b}/tcp`]), "flags"];
  const rows = scenarios.map((s) => [
    s.name,
    ...brokers.flatMap((b) => [transportFigure(report, s, b), formatRatio(transportRatio(report, s, b))]),
    flagsCell(brokers, s, runsFor(report, s.name)),
  ]);
  const notes = report.brokers.filter((b) => b.skipped === null).flatMap((b) =>
    unservedNotes(b.name, b.unserved)
  );
  const loads = new Set(
    scenarios.map((s) => `${s.pattern}-${s.clients}-q${s.qos}-${sizeLabel(s.size ?? 0)}`),
  );
  const load = [...loads].join(" and ");
  const generator = g === null ? "none" : `${g.kind} (${g.version})`;
  return [
    `# transport rows: the load of ${load} over each transport, msg/s received, and each over the same ` +
    `broker's tcp row; generator ${generator} for all, tcp included; informative, no target`,
    "",
    ...aligned(head, rows),
    ...(notes.length > 0 ? ["", ...notes] : []),
  ];
}

function flagText(f: Flag): string {
  if (f.code === "GEN") return "GEN";
  const detail = f.detail.length > 70 ? `${f.detail.slice(0, 67)}...` : f.detail;
  return `${f.code}(${detail})`;
}

/** "targets met: 3 of 28 (2 n/a); Vyoma runs clean: 27 of 28". */
export function summaryLine(report: Report): string {
  const checks = targets(report);
  const met = checks.filter((c) => c.met === true).length;
  const undecided = checks.filter((c) => c.met === null).length;
  const vyomaRuns = report.runs.filter((r) => r.broker === "vyoma");
  const clean = vyomaRuns.filter((r) => {
    const s = report.scenarios.find((x) => x.name === r.scenario);
    return s !== undefined && isClean(s, r);
  }).length;
  const lossFree = vyomaRuns.every((r) => {
    const s = report.scenarios.find((x) => x.name === r.scenario);
    return s === undefined || !runFlags(s, r).some((f) => f.code === "LOSS");
  });
  // Only transport rows selected: they have no targets, so there is nothing to count.
  const metPart = checks.length === 0
    ? ""
    : `targets met: ${met} of ${checks.length}${undecided > 0 ? ` (${undecided} n/a)` : ""}; `;
  return `${metPart}QoS 1 loss: ${
    lossFree ? "none" : "YES"
  }; Vyoma runs clean: ${clean} of ${vyomaRuns.length}`;
}

// ---- JSON ----

export function resultsJson(report: Report): unknown {
  return {
    schema: 1,
    ...report,
    scenarios: report.scenarios.map((s) => ({ ...s })),
    runs: report.runs.map((r) => {
      const scenario = report.scenarios.find((s) => s.name === r.scenario);
      return { ...r, flags: scenario === undefined ? [] : runFlags(scenario, r) };
    }),
    targets: targets(report),
    transportRatios: report.scenarios.filter((s) => s.kind === "transport").flatMap((s) =>
      transportColumns(report).map((broker) => ({
        scenario: s.name,
        broker,
        transport: s.transport,
        recvRate: primaryValue(s, runsFor(report, s.name).get(broker)),
        ratioToTcp: transportRatio(report, s, broker),
      }))
    ),
    summary: summaryLine(report),
  };
}

// ---- SVG ----

const COLORS: Record<BrokerName, string> = { vyoma: "#e8590c", mosquitto: "#1c7ed6", aedes: "#2f9e44" };
const WIDTH = 1000;
const LABEL_RIGHT = 200; // scenario labels end here
const PLOT_LEFT = 210;
const PLOT_WIDTH = 600; // leaves room for value labels on the right
const BAR = 10;
const BAR_GAP = 2;
const GROUP_GAP = 10;

export function escapeXml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => `&${{ "&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos" }[c]};`,
  );
}

interface Bar {
  broker: BrokerName;
  value: number | null;
  /** Drawn darker inside the bar: p50 inside p99. */
  inner?: number | null;
  text: string;
}

interface Group {
  label: string;
  bars: Bar[];
}

/** Compact axis label: 1k, 10k, 1M, 250. */
export function compact(n: number): string {
  if (n >= 1e6) return `${trim(n / 1e6)}M`;
  if (n >= 1e3) return `${trim(n / 1e3)}k`;
  return trim(n);
}

function trim(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(1).replace(/\.0$/, "");
}

/** One titled chart of horizontal grouped bars; returns its SVG elements and height. */
function barChart(
  top: number,
  title: string,
  groups: Group[],
  scale: "log" | "linear",
  marker?: { value: number; label: string },
): { parts: string[]; height: number } {
  const parts: string[] = [];
  parts.push(`<text x="20" y="${top + 16}" font-size="15" font-weight="bold">${escapeXml(title)}</text>`);
  const values = groups.flatMap((g) => g.bars.flatMap((b) => [b.value, b.inner ?? null]))
    .concat(marker === undefined ? [] : [marker.value])
    .filter((v): v is number => v !== null && v > 0);
  const axisTop = top + 40;
  const plotTop = axisTop + 6;
  const height = groups.reduce((h, g) => h + g.bars.length * (BAR + BAR_GAP) + GROUP_GAP, 0);
  const plotBottom = plotTop + height;
  let x: (v: number) => number;
  let ticks: number[];
  if (scale === "log") {
    const lo = values.length > 0 ? 10 ** Math.floor(Math.log10(Math.min(...values))) : 1;
    let hi = values.length > 0 ? 10 ** Math.ceil(Math.log10(Math.max(...values))) : 10;
    if (hi <= lo) hi = lo * 10;
    const span = Math.log10(hi) - Math.log10(lo);
    x = (v) => PLOT_LEFT + ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / span) * PLOT_WIDTH;
    ticks = [];
    for (let t = lo; t <= hi * 1.0001; t *= 10) ticks.push(t);
  } else {
    ticks = linearTicks(values.length > 0 ? Math.max(...values) : 1);
    const hi = ticks[ticks.length - 1];
    x = (v) => PLOT_LEFT + (Math.max(v, 0) / hi) * PLOT_WIDTH;
  }
  for (const t of ticks) {
    const tx = x(t).toFixed(1);
    parts.push(`<line x1="${tx}" y1="${axisTop}" x2="${tx}" y2="${plotBottom}" stroke="#ddd"/>`);
    parts.push(`<text x="${tx}" y="${axisTop - 4}" text-anchor="middle" fill="#555">${compact(t)}</text>`);
  }
  const markerParts: string[] = [];
  if (marker !== undefined) {
    // Drawn after the bars, so the goal stays visible across them.
    const mx = x(marker.value).toFixed(1);
    markerParts.push(
      `<line x1="${mx}" y1="${axisTop}" x2="${mx}" y2="${plotBottom}" stroke="#c92a2a" stroke-dasharray="4 3"/>`,
      `<text x="${mx}" y="${plotBottom + 12}" text-anchor="middle" font-size="11" fill="#c92a2a">` +
        `${escapeXml(marker.label)}</text>`,
    );
  }
  let y = plotTop;
  groups.forEach((group, index) => {
    const groupHeight = group.bars.length * (BAR + BAR_GAP);
    if (index % 2 === 1) {
      parts.push(
        `<rect x="10" y="${y - GROUP_GAP / 2}" width="${WIDTH - 20}" height="${groupHeight + GROUP_GAP}" ` +
          `fill="#f4f4f4"/>`,
      );
    }
    parts.push(
      `<text x="${LABEL_RIGHT}" y="${y + groupHeight / 2 + 4}" text-anchor="end">${
        escapeXml(group.label)
      }</text>`,
    );
    for (const bar of group.bars) {
      const color = COLORS[bar.broker];
      if (bar.value !== null && bar.value > 0) {
        const w = Math.max(1, x(bar.value) - PLOT_LEFT);
        parts.push(
          `<rect x="${PLOT_LEFT}" y="${y}" width="${w.toFixed(1)}" height="${BAR}" fill="${color}"` +
            `${bar.inner != null ? ' fill-opacity="0.45"' : ""}><title>${
              escapeXml(`${bar.broker}: ${bar.text}`)
            }` +
            `</title></rect>`,
        );
        if (bar.inner != null && bar.inner > 0) {
          const wi = Math.max(1, x(bar.inner) - PLOT_LEFT);
          parts.push(
            `<rect x="${PLOT_LEFT}" y="${y}" width="${wi.toFixed(1)}" height="${BAR}" fill="${color}"/>`,
          );
        }
        parts.push(
          `<text x="${(PLOT_LEFT + w + 4).toFixed(1)}" y="${y + BAR - 1}" font-size="11">${
            escapeXml(bar.text)
          }</text>`,
        );
      } else {
        parts.push(
          `<text x="${PLOT_LEFT + 4}" y="${y + BAR - 1}" font-size="11" fill="${color}">` +
            `${escapeXml(`${bar.broker}: ${bar.text}`)}</text>`,
        );
      }
      y += BAR + BAR_GAP;
    }
    y += GROUP_GAP;
  });
  parts.push(...markerParts);
  return { parts, height: plotBottom - top + (marker === undefined ? 10 : 22) };
}

/** Axis ticks from 0 past `max` in round steps (1, 2 or 5 times a power of ten), about four of them. */
export function linearTicks(max: number): number[] {
  const raw = max / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? 10 * p;
  const ticks = [0];
  while (ticks[ticks.length - 1] < max) ticks.push(ticks.length * step);
  return ticks;
}

function barFor(report: Report, scenario: Scenario, broker: BrokerName): Bar {
  const run = runsFor(report, scenario.name).get(broker);
  const flags = run === undefined ? [] : runFlags(scenario, run).map((f) => f.code);
  const suffix = flags.length > 0 ? ` [${flags.join(",")}]` : "";
  const value = primaryValue(scenario, run);
  if (run === undefined || run.result === null) {
    const figure = scenario.kind === "transport" ? transportFigure(report, scenario, broker) : "";
    return { broker, value: null, text: figure === "skipped" ? figure : `no result${suffix}` };
  }
  switch (scenario.kind) {
    case "throughput":
      return { broker, value, text: `${figureText(scenario, run)} msg/s${suffix}` };
    case "transport": {
      const r = formatRatio(transportRatio(report, scenario, broker));
      return { broker, value, text: `${figureText(scenario, run)} msg/s, ${r} tcp${suffix}` };
    }
    case "stalled":
      // The bar is the growth itself: the ratio's floor would draw a shrinking RSS as a small growth.
      return { broker, value: rssGrowthMb(run), text: `${figureText(scenario, run)}${suffix}` };
    case "latency":
      return {
        broker,
        value,
        inner: positive(field(run, "p50_us")),
        text: `p50 / p99 ${figureText(scenario, run)} us${suffix}`,
      };
    case "conns":
      return scenario.fresh
        ? { broker, value, text: `${figureText(scenario, run)}/conn${suffix}` }
        : { broker, value, text: `${figureText(scenario, run)} conn/s${suffix}` };
  }
}

export function renderSvg(report: Report): string {
  const brokers = columns(report);
  const groupsOf = (pick: (s: Scenario) => boolean, among = brokers): Group[] =>
    report.scenarios.filter(pick).map((s) => ({
      label: s.name,
      bars: among.map((b) => barFor(report, s, b)),
    }));
  const sections: [string, Group[], "log" | "linear", { value: number; label: string }?][] = [
    [
      `Throughput: messages received per second (log scale; closed loop, ${report.pubTime} s per run)`,
      groupsOf((s) => s.kind === "throughput"),
      "log",
    ],
    [
      "Memory while a subscriber stops reading: broker RSS growth, MB (lower is better)",
      groupsOf((s) => s.kind === "stalled"),
      "linear",
      { value: STALLED_GROWTH_LIMIT_MB, label: `target <= ${STALLED_GROWTH_LIMIT_MB} MB` },
    ],
    [
      "Latency at 4,000 msg/s (8 pairs): p50 solid, p99 light, microseconds",
      groupsOf((s) => s.kind === "latency"),
      "linear",
    ],
    [
      "Connect rate: connections per second",
      groupsOf((s) => s.kind === "conns" && !s.fresh),
      "linear",
      { value: CONNECT_RATE_TARGET, label: `target ${formatInt(CONNECT_RATE_TARGET)}/s` },
    ],
    [
      "Idle connections: broker RSS per connection, bytes (lower is better)",
      groupsOf((s) => s.kind === "conns" && s.fresh),
      "linear",
      { value: RSS_PER_CONN_LIMIT, label: `target <= ${formatInt(RSS_PER_CONN_LIMIT)} B` },
    ],
    [
      "Transports: messages received per second, and the ratio to the same broker's tcp row (vyoma-loadgen)",
      groupsOf((s) => s.kind === "transport", transportColumns(report)),
      "linear",
    ],
  ];
  const m = report.machine;
  const g = report.generator;
  const body: string[] = [
    `<text x="20" y="30" font-size="20" font-weight="bold">Vyoma vs ${
      escapeXml(brokers.filter((b) => b !== "vyoma").join(" and ") || "(no peers)")
    }</text>`,
    `<text x="20" y="50" fill="#444">${
      escapeXml(
        `${report.started} · ${m.nproc} x ${m.cpuModel}, ${m.os} ${m.kernel} · generator ${g.kind} (${g.version})`,
      )
    }</text>`,
    `<text x="20" y="68" fill="#444">${
      escapeXml(
        report.brokers.filter((b) => b.skipped === null)
          .map((b) => `${b.version}${b.runtime === null ? "" : ` (${b.runtime})`}`).join(" · "),
      )
    }</text>`,
  ];
  let lx = 20;
  for (const b of brokers) {
    body.push(`<rect x="${lx}" y="80" width="14" height="14" fill="${COLORS[b]}"/>`);
    body.push(`<text x="${lx + 20}" y="92">${escapeXml(b)}</text>`);
    lx += 36 + b.length * 7;
  }
  let y = 110;
  for (const [title, groups, scale, marker] of sections) {
    if (groups.length === 0) continue;
    const chart = barChart(y, title, groups, scale, marker);
    body.push(...chart.parts);
    y += chart.height + 20;
  }
  const height = Math.ceil(y);
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" ` +
    `font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${height}" fill="#fff"/>`,
    ...body,
    `</svg>`,
    "",
  ].join("\n");
}

// ---- files ----

/** `2026-11-25T01-02-03Z`: sortable and safe in file names. */
export function fileStamp(date: Date): string {
  return date.toISOString().replace(/\.\d+Z$/, "Z").replace(/:/g, "-");
}

/** Writes <stamp>.json and <stamp>.svg under `dir`, copies them to latest.*, and returns the paths written. */
export async function writeResults(dir: string, report: Report, stamp: string): Promise<string[]> {
  await Deno.mkdir(dir, { recursive: true });
  const json = JSON.stringify(resultsJson(report), null, 2) + "\n";
  const svg = renderSvg(report);
  const paths = [join(dir, `${stamp}.json`), join(dir, `${stamp}.svg`)];
  await Deno.writeTextFile(paths[0], json);
  await Deno.writeTextFile(paths[1], svg);
  await Deno.writeTextFile(join(dir, "latest.json"), json);
  await Deno.writeTextFile(join(dir, "latest.svg"), svg);
  return [...paths, join(dir, "latest.json"), join(dir, "latest.svg")];
}
