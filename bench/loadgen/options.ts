/**
 * The generator's command line: mqttload's flags (the subset for MQTT 3.1.1), its scenario presets and its
 * validation, plus --processes. Pure, so tests can check presets and errors without spawning anything.
 */

/** How a client reaches the broker: plain TCP, TLS, MQTT over WebSocket, over secure WebSocket. */
export const TRANSPORTS = ["tcp", "tls", "ws", "wss"] as const;
export type Transport = typeof TRANSPORTS[number];

/** Whether `transport` runs over TLS, and so needs the broker's certificate trusted. */
export function usesTls(transport: Transport): boolean {
  return transport === "tls" || transport === "wss";
}

/** The Deno permissions the generator runs with (sockets, /proc through `cat`, its worker processes). */
export const LOADGEN_PERMISSIONS: readonly string[] = [
  "--allow-net",
  "--allow-read",
  "--allow-run",
  "--allow-env",
  "--allow-sys",
];

export interface Options {
  host: string;
  port: number;
  /** fanin | fanout | pairwise | custom | conns */
  scenario: string;
  pubs: number;
  subs: number;
  topics: number;
  wildcard: boolean;
  qos: 0 | 1;
  size: number;
  /** Messages per publisher. */
  count: number;
  /** Messages per second per publisher; 0 = unlimited. */
  rate: number;
  /** Messages per publisher sent but not yet delivered to every subscriber; 0 = no limit. */
  window: number;
  /** QoS 1 PUBLISHes awaiting PUBACK per publisher. */
  inflight: number;
  /** Seconds; 0 = no limit. */
  pubTime: number;
  durationMax: number;
  drainIdle: number;
  stall: number;
  hsTimeout: number;
  /** Idle mode when > 0. */
  conns: number;
  hold: number;
  keepalive: number;
  parallel: number;
  /** 0 = unknown. */
  brokerPid: number;
  prefix: string;
  label: string;
  verbose: boolean;
  /** Worker processes (never more than there are clients). */
  processes: number;
  transport: Transport;
  /** PEM file of CA certificates trusted for tls and wss, beside the system's; "" for none. */
  cafile: string;
  /** Request path of the WebSocket handshake (ws, wss). */
  wsPath: string;
}

export type ParseResult = { help: true } | { help: false; options: Options };

export class UsageError extends Error {}

/** What the defaults depend on, passed in so parsing stays pure. */
export interface Environment {
  pid: number;
  cpus: number;
}

export const HELP =
  `usage: deno run --allow-net --allow-read --allow-run --allow-env --allow-sys bench/loadgen/main.ts [options]
vyoma-loadgen: mqttload's flags and JSON output (MQTT 3.1.1 only), run in several processes.
  --host H            broker host, loopback only (127.0.0.1)
  --port P            broker port (1883)
  --transport T       tcp | tls | ws | wss: MQTT over TCP, TLS, WebSocket or
                      WebSocket over TLS, sub-protocol "mqtt" (tcp)
  --cafile PATH       PEM CA certificates to trust for tls and wss, beside the
                      system's (a broker with a self-signed CA); tcp, ws ignore it
  --ws-path P         WebSocket request path (/mqtt)
  --scenario S        fanin | fanout | pairwise (presets, flags override)
                        fanin:    N pubs -> N topics -> 1 sub on <prefix>/t/+
                        fanout:   1 pub -> 1 topic -> M subs
                        pairwise: N pubs, N topics, N subs (pub i -> sub i)
  --pubs N --subs M --topics T   publisher i uses topic i%T; subscriber j
                      subscribes topic j%T, or every topic with --wildcard
  --wildcard          subscribers use <prefix>/t/+
  --qos 0|1           QoS for PUBLISH and SUBSCRIBE (0)
  --size BYTES        payload size, >= 16 (16)
  --count N           messages per publisher (1000)
  --rate R            messages/s per publisher, 0 = unlimited (0)
  --window W          max messages per publisher sent but not yet delivered
                      to all its subscribers, 0 = no limit (0)
  --inflight N        QoS 1 PUBLISHes awaiting PUBACK per publisher (100)
  --pub-time S        stop publishing after S seconds even if --count is not
                      reached, then drain (0 = no limit)
  --duration-max S    hard bound on the whole run, seconds (30)
  --drain-idle S      after the last publish, stop when nothing arrives for S (2)
  --stall S           while publishing, give up after S seconds without any
                      send, delivery or ack (5)
  --conns N           idle mode: open N connections, hold them, report
  --hold S            idle mode: seconds to hold connections open (2)
  --keepalive S       CONNECT keepalive, PINGREQ sent every S/2 (60)
  --parallel N        max connection handshakes in flight, all processes (64)
  --hs-timeout S      per-connection TCP+CONNECT handshake limit (10)
  --broker-pid PID    read broker CPU time and RSS from /proc/PID
  --prefix P          topic prefix (loadgen/<pid>)
  --label L           copied into the JSON output
  --processes N       worker processes (CPUs - 1, at least 1; at most one per client)
  -v                  progress on stderr
Output: one JSON line on stdout.  Exit: 0 ok, 1 usage, 2 protocol/connection
error, 3 incomplete (QoS1 loss/dups, stall, conns missing), 4 duration-max
reached or interrupted.  Loopback addresses only.`;

type Kind = "int" | "num" | "str" | "flag";

/** Flag name -> its kind; values land in `Raw` under the same name. */
const FLAGS: Record<string, Kind> = {
  host: "str",
  port: "int",
  scenario: "str",
  pubs: "int",
  subs: "int",
  topics: "int",
  wildcard: "flag",
  qos: "int",
  size: "int",
  count: "int",
  rate: "num",
  window: "int",
  inflight: "int",
  "pub-time": "num",
  "duration-max": "num",
  "drain-idle": "num",
  stall: "num",
  "hs-timeout": "num",
  conns: "int",
  hold: "num",
  keepalive: "int",
  parallel: "int",
  "broker-pid": "int",
  prefix: "str",
  label: "str",
  processes: "int",
  transport: "str",
  cafile: "str",
  "ws-path": "str",
  help: "flag",
  v: "flag",
};

type Raw = Map<string, string | number | true>;

function scan(argv: readonly string[]): Raw {
  const raw: Raw = new Map();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    let name: string;
    let inline: string | undefined;
    if (arg === "-v" || arg === "-h") {
      name = arg === "-v" ? "v" : "help";
    } else if (arg.startsWith("--") && arg.length > 2) {
      const eq = arg.indexOf("=");
      name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      inline = eq < 0 ? undefined : arg.slice(eq + 1);
    } else {
      throw new UsageError(`unexpected argument ${arg}`);
    }
    if (name === "v5" || name === "mqtt5") {
      throw new UsageError("MQTT 5 is not supported by vyoma-loadgen (MQTT 3.1.1 only); use mqttload --v5");
    }
    const kind = FLAGS[name];
    if (kind === undefined) throw new UsageError(`unknown option ${arg}`);
    if (kind === "flag") {
      if (inline !== undefined) throw new UsageError(`option --${name} takes no value`);
      raw.set(name, true);
      continue;
    }
    const text = inline ?? argv[++i];
    if (text === undefined) throw new UsageError(`option --${name} needs a value`);
    raw.set(name, kind === "str" ? text : number(name, text, kind === "int"));
  }
  return raw;
}

function number(name: string, text: string, integer: boolean): number {
  const value = text.trim() === "" ? NaN : Number(text);
  if (!Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw new UsageError(`option --${name}: expected ${integer ? "an integer" : "a number"}, got "${text}"`);
  }
  return value;
}

/** Parses argv as mqttload would (presets fill what was not given); throws UsageError on anything wrong. */
export function parseOptions(argv: readonly string[], env: Environment): ParseResult {
  const raw = scan(argv);
  if (raw.has("help")) return { help: true };
  const num = (name: string, fallback: number) => (raw.get(name) as number | undefined) ?? fallback;
  const str = (name: string, fallback: string) => (raw.get(name) as string | undefined) ?? fallback;

  const conns = num("conns", 0);
  const scenario = str("scenario", conns ? "conns" : "custom");
  let pubs = num("pubs", -1);
  let subs = num("subs", -1);
  let topics = num("topics", -1);
  let wildcard = raw.has("wildcard") ? 1 : -1;
  switch (scenario) {
    case "fanin":
      if (pubs < 0) pubs = 10;
      if (subs < 0) subs = 1;
      if (topics < 0) topics = pubs;
      if (wildcard < 0) wildcard = 1;
      break;
    case "fanout":
      if (pubs < 0) pubs = 1;
      if (subs < 0) subs = 10;
      if (topics < 0) topics = 1;
      break;
    case "pairwise":
      if (pubs < 0) pubs = subs > 0 ? subs : 10;
      if (subs < 0) subs = pubs;
      if (topics < 0) topics = pubs;
      break;
    case "custom":
    case "conns":
      break;
    default:
      throw new UsageError(`unknown scenario ${scenario}`);
  }
  if (pubs < 0) pubs = 1;
  if (subs < 0) subs = 1;
  if (topics < 0) topics = 1;

  const options: Options = {
    host: str("host", "127.0.0.1").replace(/^\[(.*)\]$/, "$1"),
    port: num("port", 1883),
    scenario,
    pubs,
    subs,
    topics,
    wildcard: wildcard > 0,
    qos: num("qos", 0) as 0 | 1,
    size: num("size", 16),
    count: num("count", 1000),
    rate: num("rate", 0),
    window: num("window", 0),
    inflight: num("inflight", 100),
    pubTime: num("pub-time", 0),
    durationMax: num("duration-max", 30),
    drainIdle: num("drain-idle", 2),
    stall: num("stall", 5),
    hsTimeout: num("hs-timeout", 10),
    conns,
    hold: num("hold", 2),
    keepalive: num("keepalive", 60),
    parallel: num("parallel", 64),
    brokerPid: num("broker-pid", 0),
    prefix: str("prefix", `loadgen/${env.pid}`),
    label: str("label", ""),
    verbose: raw.has("v"),
    processes: 0,
    transport: parseTransport(str("transport", "tcp")),
    cafile: str("cafile", ""),
    wsPath: str("ws-path", "/mqtt"),
  };
  validate(options);
  if (options.inflight > 65000) options.inflight = 65000;
  const clients = options.conns > 0 ? options.conns : options.pubs + options.subs;
  const wanted = raw.has("processes") ? num("processes", 1) : defaultProcesses(env.cpus);
  if (wanted < 1 || wanted > 256) throw new UsageError("option --processes: expected 1..256");
  options.processes = Math.max(1, Math.min(wanted, clients));
  return { help: false, options };
}

/**
 * One worker per CPU but one: the broker is on this machine too (loopback only) and needs a core of its
 * own. On 2 cores, two workers competed with the broker and made the generator the limit (pairwise QoS 0
 * against Mosquitto: 71-77k msg/s with 2 workers, 89-105k with 1, mqttload 78-92k; against Vyoma every
 * throughput scenario was slower with 2).
 */
export function defaultProcesses(cpus: number): number {
  return Math.max(1, cpus - 1);
}

function validate(o: Options): void {
  const bad = o.port <= 0 || o.port > 65535 || (o.qos !== 0 && o.qos !== 1) || o.size < 16 ||
    o.size > 16 * 1024 * 1024 || o.count < 0 || o.count > 0xffffffff || o.rate < 0 || o.durationMax <= 0 ||
    o.pubs < 0 || o.subs < 0 || o.topics < 1 || o.conns < 0 || o.parallel < 1 || o.inflight < 1 ||
    o.window < 0 || o.keepalive < 0 || o.keepalive > 65535 || o.pubTime < 0 || o.drainIdle < 0 ||
    o.stall <= 0 || o.hsTimeout <= 0 || o.hold < 0 || o.brokerPid < 0;
  if (bad) throw new UsageError("bad option value (qos 0|1, size 16..16M, topics >= 1, ...)");
  if (!isLoopback(o.host)) throw new UsageError(`${o.host} is not a loopback address; refusing`);
  if (!o.wsPath.startsWith("/")) throw new UsageError("option --ws-path: expected a path starting with /");
}

function parseTransport(text: string): Transport {
  const transport = TRANSPORTS.find((t) => t === text);
  if (transport === undefined) {
    throw new UsageError(`option --transport: expected ${TRANSPORTS.join(" | ")}, got "${text}"`);
  }
  return transport;
}

/** Loopback literals and localhost only: the generator never talks to another machine. */
export function isLoopback(host: string): boolean {
  if (host === "localhost" || host === "::1" || host === "[::1]") return true;
  const parts = host.split(".");
  return parts.length === 4 && parts[0] === "127" &&
    parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255);
}
