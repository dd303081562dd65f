/**
 * The bench's scenario matrix and its command line. Pure: no I/O, so tests can check both.
 *
 * Every scenario is bounded in count and time: throughput runs publish closed-loop (each publisher keeps at
 * most a window of undelivered messages, so the broker is always the one with work queued) for `pubTime`
 * seconds, and the generator itself gives up at `--duration-max`.
 *
 * One row, `stalled-q0`, adds a subscriber the bench opens itself and then never reads from, to see whether
 * the broker's memory stays bounded when a subscriber stops reading (the runner does that part).
 *
 * The transport rows run one throughput load over TCP, TLS, WebSocket and WebSocket over TLS, all through
 * vyoma-loadgen (mqttload speaks TCP only), so that each is read against the same generator's TCP row.
 */

import { parseArgs } from "node:util";
import type { Transport } from "./loadgen/options.ts";

export type ScenarioKind = "throughput" | "stalled" | "latency" | "conns" | "transport";
export type Pattern = "fanin" | "fanout" | "pairwise";

export interface Scenario {
  /**
   * Stable name used in the table, the JSON and `--only`: `fanin-8-q0-16B`, `stalled-q0`, `latency-q1`,
   * `conns-1000`, `transport-fanin-tls`.
   */
  readonly name: string;
  readonly kind: ScenarioKind;
  /**
   * Throughput, stalled, latency and transport only. A `stalled` run is its throughput twin plus one subscriber to `#`
   * that the bench opens and never reads from; the generator's own subscriber keeps reading.
   */
  readonly pattern?: Pattern;
  /** Publishers (fan-in, pairwise) or subscribers (fan-out); connections for `conns`. */
  readonly clients: number;
  readonly qos?: 0 | 1;
  readonly size?: number;
  /** Needs a freshly started broker: per-connection RSS means nothing on a heap grown by earlier runs. */
  readonly fresh: boolean;
  /** Transport rows only: how the generator reaches the broker (every other row uses plain TCP). */
  readonly transport?: Transport;
  /**
   * Generator arguments, without --host, --port, --broker-pid and --label (the runner adds those, and
   * --cafile for TLS).
   */
  readonly args: readonly string[];
  /** The generator's own bound (--duration-max), seconds; the runner kills it some time after this. */
  readonly durationMax: number;
}

export const BROKERS = ["vyoma", "mosquitto", "aedes"] as const;
export type BrokerName = typeof BROKERS[number];

/** Throughput publish time in full mode and in --quick mode, seconds. */
export const FULL_PUB_TIME = 5;
export const QUICK_PUB_TIME = 2;
/** Latency runs: 8 pairwise publishers at 500 msg/s each, 4,000 msg/s in all, well below saturation. */
export const LATENCY_PUBS = 8;
export const LATENCY_RATE = 500;
export const LATENCY_PUB_TIME = 5;

const PATTERNS: readonly Pattern[] = ["fanin", "fanout", "pairwise"];
const CLIENT_COUNTS = [8, 100] as const;
const QOS_LEVELS = [0, 1] as const;
const SIZES = [16, 1024] as const;
/** Large enough never to be reached: --pub-time ends publishing. */
const UNBOUNDED_COUNT = "100000000";

/** The memory row: fan-in's load while one more subscriber stops reading. */
export const STALLED_NAME = "stalled-q0";

/** Transport rows: these loads (8 clients, QoS 0, 16 B) over each transport. */
const TRANSPORT_PATTERNS = ["fanin", "fanout"] as const;
/** The transports in table order; the first, plain TCP, is what the others are compared with. */
export const ROW_TRANSPORTS: readonly Transport[] = ["tcp", "tls", "ws", "wss"];

/** The names --quick runs when no --only is given. */
export const QUICK_NAMES: readonly string[] = [
  "fanin-8-q0-16B",
  "fanin-8-q1-16B",
  "fanout-8-q0-16B",
  "fanout-8-q1-16B",
  "pairwise-8-q0-16B",
  "pairwise-8-q1-16B",
  STALLED_NAME,
  "latency-q1",
  "conns-1000",
  ...ROW_TRANSPORTS.map((t) => `transport-fanin-${t}`),
];

export function sizeLabel(bytes: number): string {
  return bytes % 1024 === 0 ? `${bytes / 1024}KiB` : `${bytes}B`;
}

/** Every scenario in table order, throughput runs publishing for `pubTime` seconds. */
export function allScenarios(pubTime: number): Scenario[] {
  const out: Scenario[] = [];
  for (const pattern of PATTERNS) {
    for (const clients of CLIENT_COUNTS) {
      for (const qos of QOS_LEVELS) {
        for (const size of SIZES) out.push(throughput(pattern, clients, qos, size, pubTime));
      }
    }
  }
  out.push(stalled(pubTime));
  for (const qos of QOS_LEVELS) out.push(latency(qos));
  out.push(conns(1000, 1, false), conns(10_000, 2, true));
  for (const pattern of TRANSPORT_PATTERNS) {
    for (const transport of ROW_TRANSPORTS) out.push(transportRow(pattern, transport, pubTime));
  }
  return out;
}

function throughput(pattern: Pattern, clients: number, qos: 0 | 1, size: number, pubTime: number): Scenario {
  const durationMax = Math.ceil(pubTime) + 15;
  // Fan-out multiplies each message by the subscriber count, so its one publisher needs a deeper window.
  const window = pattern === "fanout" ? 500 : 100;
  const who = pattern === "fanout" ? "subs" : "pubs";
  return {
    name: `${pattern}-${clients}-q${qos}-${sizeLabel(size)}`,
    kind: "throughput",
    pattern,
    clients,
    qos,
    size,
    fresh: false,
    durationMax,
    args: flags({
      scenario: pattern,
      [who]: clients,
      qos,
      size,
      count: UNBOUNDED_COUNT,
      window,
      "pub-time": pubTime,
      "duration-max": durationMax,
    }),
  };
}

/**
 * `fanin-8-q0-16B`'s load and generator arguments, plus the stalled subscriber the runner adds. QoS 0,
 * because that is what a broker may drop for a reader that cannot keep up; QoS 1 has its own queue bound.
 * On a fresh broker, like `conns-10000`: RSS growth on a heap grown (and freed) by earlier runs could hide
 * in memory the allocator already holds, and the figure would depend on what ran before it.
 */
function stalled(pubTime: number): Scenario {
  return { ...throughput("fanin", 8, 0, 16, pubTime), name: STALLED_NAME, kind: "stalled", fresh: true };
}

/** `<pattern>-8-q0-16B`'s load over `transport`. */
function transportRow(pattern: Pattern, transport: Transport, pubTime: number): Scenario {
  const load = throughput(pattern, 8, 0, 16, pubTime);
  return {
    ...load,
    name: `transport-${pattern}-${transport}`,
    kind: "transport",
    transport,
    args: [...load.args, "--transport", transport],
  };
}

/** The name of the row a transport row is compared with: the same load over plain TCP. */
export function transportBaseline(scenario: Scenario): string {
  return `transport-${scenario.pattern}-${ROW_TRANSPORTS[0]}`;
}

function latency(qos: 0 | 1): Scenario {
  const durationMax = LATENCY_PUB_TIME + 15;
  return {
    name: `latency-q${qos}`,
    kind: "latency",
    pattern: "pairwise",
    clients: LATENCY_PUBS,
    qos,
    size: 16,
    fresh: false,
    durationMax,
    args: flags({
      scenario: "pairwise",
      pubs: LATENCY_PUBS,
      qos,
      size: 16,
      count: UNBOUNDED_COUNT,
      rate: LATENCY_RATE,
      "pub-time": LATENCY_PUB_TIME,
      "duration-max": durationMax,
    }),
  };
}

function conns(count: number, hold: number, fresh: boolean): Scenario {
  const durationMax = count >= 10_000 ? 60 : 20;
  return {
    name: `conns-${count}`,
    kind: "conns",
    clients: count,
    fresh,
    durationMax,
    args: flags({ conns: count, hold, "duration-max": durationMax }),
  };
}

/** `{ qos: 1, "pub-time": 5 }` -> `["--qos", "1", "--pub-time", "5"]`, in insertion order. */
function flags(values: Record<string, string | number>): string[] {
  return Object.entries(values).flatMap(([flag, value]) => [`--${flag}`, String(value)]);
}

/**
 * The scenarios named by `only` (exact names or name prefixes such as `fanin`, `fanout-100`, `latency`), in
 * table order. Throws on a pattern matching nothing, naming the scenarios, so a typo never runs an empty bench.
 */
export function selectScenarios(all: readonly Scenario[], only: readonly string[]): Scenario[] {
  if (only.length === 0) return [...all];
  const matches = (s: Scenario, p: string) =>
    s.name === p || s.name.startsWith(p.endsWith("-") ? p : `${p}-`);
  for (const p of only) {
    if (!all.some((s) => matches(s, p))) {
      throw new UsageError(`--only: "${p}" matches no scenario (${SCENARIO_NAMES})`);
    }
  }
  return all.filter((s) => only.some((p) => matches(s, p)));
}

export interface Options {
  quick: boolean;
  brokers: BrokerName[];
  /** Patterns from --only; empty for the default selection. */
  only: string[];
  pubTime: number;
  /** A generator binary given with --generator (mqttload or anything taking its flags). */
  generator?: string;
  help: boolean;
}

export class UsageError extends Error {}

const SCENARIO_NAMES = "names: {fanin,fanout,pairwise}-{8,100}-q{0,1}-{16B,1KiB}, stalled-q0, " +
  "latency-q{0,1}, conns-1000, conns-10000, transport-{fanin,fanout}-{tcp,tls,ws,wss}";

export const HELP =
  `deno task bench [options]: Vyoma against Mosquitto and Aedes, same scenarios, same load generator

Starts each broker in turn on its own loopback port (Mosquitto and Aedes when installed), runs the
scenarios against it, prints a table of figures and ratios, and writes bench/results/<time>.json and .svg
(and latest.json / latest.svg).

Options:
  --quick               development mode: throughput runs publish for ${QUICK_PUB_TIME} s instead of ${FULL_PUB_TIME} s,
                        and only ${QUICK_NAMES.slice(0, 4).join(", ")},
                        ${QUICK_NAMES.slice(4, 9).join(", ")},
                        ${QUICK_NAMES.slice(9).join(", ")}
  --brokers LIST        brokers to run, comma-separated (default: ${BROKERS.join(",")})
  --only LIST           scenarios by name or prefix, comma-separated, e.g. fanin,latency or fanout-100-q1
                        (chosen from the full matrix, with --quick too)
  --pub-time S          publish time of throughput, stalled and transport runs, seconds (default ${FULL_PUB_TIME}, ${QUICK_PUB_TIME} with --quick)
  --generator PATH      load generator binary taking mqttload's flags (default: $MQTTLOAD, else
                        ../shared/tools/mqttload built into bench/.cache, else bench/loadgen/main.ts)
  --help                this text

Scenarios: {fanin,fanout,pairwise}-{8,100}-q{0,1}-{16B,1KiB} (closed-loop throughput), stalled-q0
(fanin-8-q0-16B plus a subscriber to # that stops reading, on a fresh broker: broker RSS growth),
latency-q0 and latency-q1 (8 pairs at ${LATENCY_RATE} msg/s each), conns-1000 (connect rate), conns-10000
(idle connections on a fresh broker: RSS per connection), transport-{fanin,fanout}-{tcp,tls,ws,wss}
(fanin-8-q0-16B and fanout-8-q0-16B over TCP, TLS, WebSocket and WebSocket over TLS, all through
bench/loadgen whatever --generator says, each against the tcp row; brokers that serve only TCP skip them).
Exit: 0 when every Vyoma run was clean, 1 when one was not, 2 on bad usage or a setup failure.`;

/** Parses the bench's argv; throws UsageError with one line for anything wrong. */
export function parseOptions(argv: readonly string[]): Options {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      allowPositionals: false,
      strict: true,
      options: {
        quick: { type: "boolean" },
        brokers: { type: "string" },
        only: { type: "string" },
        "pub-time": { type: "string" },
        generator: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  const quick = values.quick ?? false;
  const brokers = values.brokers === undefined ? [...BROKERS] : parseBrokers(values.brokers);
  const only = values.only === undefined ? [] : splitList(values.only, "--only");
  let pubTime = quick ? QUICK_PUB_TIME : FULL_PUB_TIME;
  if (values["pub-time"] !== undefined) {
    pubTime = Number(values["pub-time"]);
    if (!Number.isFinite(pubTime) || pubTime <= 0 || pubTime > 600) {
      throw new UsageError(`--pub-time: expected seconds between 0 and 600, got "${values["pub-time"]}"`);
    }
  }
  return { quick, brokers, only, pubTime, generator: values.generator, help: values.help ?? false };
}

function splitList(text: string, flag: string): string[] {
  const items = text.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (items.length === 0) throw new UsageError(`${flag}: empty list`);
  return items;
}

function parseBrokers(text: string): BrokerName[] {
  const out: BrokerName[] = [];
  for (const item of splitList(text, "--brokers")) {
    const name = BROKERS.find((b) => b === item);
    if (name === undefined) {
      throw new UsageError(`--brokers: unknown broker "${item}" (known: ${BROKERS.join(", ")})`);
    }
    if (!out.includes(name)) out.push(name);
  }
  // Table columns and ratios assume Vyoma first, whatever order was typed.
  return BROKERS.filter((b) => out.includes(b));
}

/** The scenarios a parsed command line asks for. */
export function scenariosFor(options: Options): Scenario[] {
  const all = allScenarios(options.pubTime);
  if (options.only.length > 0) return selectScenarios(all, options.only);
  if (options.quick) return all.filter((s) => QUICK_NAMES.includes(s.name));
  return all;
}
