/**
 * The load generator: finding (and building) it, and running it once per broker and scenario.
 *
 * Preference order: `--generator PATH`, then `$MQTTLOAD`, then the shared C generator
 * (`<ancestor>/shared/tools/mqttload/mqttload.c`, built into bench/.cache/mqttload because shared/ is
 * read-only), then our own multi-process generator in bench/loadgen/ (same flags, same JSON fields).
 */

import { dirname, join, relative } from "node:path";
import { LOADGEN_PERMISSIONS } from "./loadgen/options.ts";

export type GeneratorKind = "mqttload" | "vyoma-loadgen";

/** What the results record about the generator. */
export interface GeneratorInfo {
  kind: GeneratorKind;
  path: string;
  /** mqttload has no --version: a content hash identifies the build instead. */
  version: string;
}

export interface Generator extends GeneratorInfo {
  /** Program and leading arguments; scenario flags follow. */
  argv: readonly string[];
}

/** An expected problem (missing tool, failed build, broker that will not start): one line, no stack. */
export class SetupError extends Error {}

/**
 * `sh -c` script that raises the descriptor limit (10,000 connections need more than the usual 1,024) and
 * then execs the command, so the child's pid is the program's own (mqttload reads CPU and RSS by pid).
 */
export const FD_LIMIT_SCRIPT = 'ulimit -n 65536 2>/dev/null || ulimit -n $(ulimit -Hn); exec "$@"';

/** Arguments for `sh` that run `argv` under a raised descriptor limit. */
export function withFdLimit(argv: readonly string[]): string[] {
  return ["-c", FD_LIMIT_SCRIPT, "sh", ...argv];
}

const MQTTLOAD_SOURCES = ["mqttload.c", "Makefile"] as const;

export interface FindOptions {
  repoRoot: string;
  /** From --generator. */
  explicit?: string;
  /** From $MQTTLOAD. */
  envPath?: string;
  warn: (line: string) => void;
  note: (line: string) => void;
}

export async function findGenerator(options: FindOptions): Promise<Generator> {
  for (const [path, from] of [[options.explicit, "--generator"], [options.envPath, "MQTTLOAD"]] as const) {
    if (path === undefined || path === "") continue;
    if (!(await isExecutable(path))) throw new SetupError(`${from}: ${path} is not an executable file`);
    return { kind: "mqttload", path, version: `binary sha256 ${await hashFiles([path])}`, argv: [path] };
  }
  const shared = await findSharedSources(options.repoRoot);
  if (shared !== null) {
    try {
      return await buildMqttload(shared, join(options.repoRoot, "bench", ".cache", "mqttload"), options.note);
    } catch (error) {
      if (!(error instanceof SetupError)) throw error;
      options.warn(`${error.message}; trying bench/loadgen instead`);
    }
  }
  const loadgen = await loadgenGenerator(options.repoRoot);
  if (loadgen !== null) return loadgen;
  throw new SetupError(
    "no load generator found: set MQTTLOAD or --generator to an mqttload binary, put shared/tools/mqttload " +
      "beside the repository, or add bench/loadgen/main.ts",
  );
}

/**
 * Our own generator, bench/loadgen/main.ts, or null when the checkout has none. The transport rows run it
 * whichever generator the rest of the bench uses, since mqttload speaks plain TCP only.
 */
export async function loadgenGenerator(repoRoot: string): Promise<Generator | null> {
  const loadgen = join(repoRoot, "bench", "loadgen", "main.ts");
  if (!(await exists(loadgen))) return null;
  const sources = await loadgenSources(dirname(loadgen));
  return {
    kind: "vyoma-loadgen",
    path: relative(repoRoot, loadgen),
    version: `source sha256 ${await hashFiles(sources)}`,
    argv: [Deno.execPath(), "run", ...LOADGEN_PERMISSIONS, loadgen],
  };
}

/** `<ancestor>/shared/tools/mqttload` for the nearest ancestor of the repository root that has one. */
async function findSharedSources(repoRoot: string): Promise<string | null> {
  let dir = dirname(repoRoot);
  for (;;) {
    const candidate = join(dir, "shared", "tools", "mqttload");
    if (await exists(join(candidate, "mqttload.c"))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) return null;
    dir = parent;
  }
}

/** Copies the sources into `buildDir` when they differ and runs make there (which rebuilds only then). */
async function buildMqttload(sourceDir: string, buildDir: string, note: (line: string) => void) {
  await Deno.mkdir(buildDir, { recursive: true });
  let changed = false;
  for (const name of MQTTLOAD_SOURCES) {
    const source = await Deno.readFile(join(sourceDir, name));
    const copy = await Deno.readFile(join(buildDir, name)).catch(() => null);
    if (copy === null || !sameBytes(source, copy)) {
      await Deno.writeFile(join(buildDir, name), source);
      changed = true;
    }
  }
  const binary = join(buildDir, "mqttload");
  if (changed || !(await exists(binary))) note(`building mqttload from ${sourceDir} in ${buildDir}`);
  let output;
  try {
    output = await new Deno.Command("make", {
      args: ["-s", "-C", buildDir],
      stdout: "piped",
      stderr: "piped",
    })
      .output();
  } catch (error) {
    throw new SetupError(`cannot build mqttload: make: ${error instanceof Error ? error.message : error}`);
  }
  if (!output.success) {
    throw new SetupError(`cannot build mqttload in ${buildDir}: ${lastLine(output.stderr) || "make failed"}`);
  }
  return {
    kind: "mqttload" as const,
    path: binary,
    version: `source sha256 ${await hashFiles([join(buildDir, "mqttload.c")])}`,
    argv: [binary],
  };
}

async function loadgenSources(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && entry.name.endsWith(".ts")) out.push(join(dir, entry.name));
  }
  return out.sort();
}

/** One run of the generator: its JSON line, exit code and what it said on stderr. */
export interface GeneratorRun {
  exitCode: number;
  /** The generator's JSON line, parsed; null when it printed none. */
  result: Record<string, unknown> | null;
  /** Last lines of stderr, kept when the run failed. */
  stderrTail: string;
  wallS: number;
  /** Killed by the bench: past its time bound, or the bench was interrupted. */
  killed: boolean;
}

/** Runs the generator with `args`, killing it if it outlives `timeoutS` (its own --duration-max plus slack). */
export async function runGenerator(
  generator: Generator,
  args: readonly string[],
  timeoutS: number,
  signal?: AbortSignal,
): Promise<GeneratorRun> {
  const started = performance.now();
  const child = new Deno.Command("sh", {
    args: withFdLimit([...generator.argv, ...args]),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let killed = false;
  const kill = () => {
    killed = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited: nothing to stop.
    }
  };
  const timer = setTimeout(kill, timeoutS * 1000);
  signal?.addEventListener("abort", kill, { once: true });
  try {
    const output = await child.output();
    const stdout = new TextDecoder().decode(output.stdout);
    return {
      exitCode: output.code,
      result: parseJsonLine(stdout),
      stderrTail: new TextDecoder().decode(output.stderr).trim().split("\n").slice(-5).join("\n"),
      wallS: (performance.now() - started) / 1000,
      killed,
    };
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", kill);
  }
}

/** The last line of `text` that parses as a JSON object, or null. */
export function parseJsonLine(text: string): Record<string, unknown> | null {
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l.startsWith("{"));
  for (let i = lines.length - 1; i >= 0; i--) {
    try {
      const value: unknown = JSON.parse(lines[i]);
      if (typeof value === "object" && value !== null && !Array.isArray(value)) {
        return value as Record<string, unknown>;
      }
    } catch {
      // A partial line (generator killed mid-write): try an earlier one.
    }
  }
  return null;
}

/** First 12 hex digits of the SHA-256 of the files' contents, in order. */
export async function hashFiles(paths: readonly string[]): Promise<string> {
  const parts = await Promise.all(paths.map((p) => Deno.readFile(p)));
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
  return Array.from(digest.slice(0, 6), (b) => b.toString(16).padStart(2, "0")).join("");
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The last line of a command's output. */
export function lastLine(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes).trim().split("\n").at(-1) ?? "";
}

export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

export async function isExecutable(path: string): Promise<boolean> {
  try {
    const info = await Deno.stat(path);
    return info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0;
  } catch {
    return false;
  }
}
