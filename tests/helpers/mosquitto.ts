/**
 * Debian's mosquitto_pub and mosquitto_sub (package mosquitto-clients), run as real processes against a
 * test broker. On a machine without them, the tests that need them are reported as ignored (with a notice
 * saying what to install), so `deno task test` still runs everywhere; CI sets VYOMA_REQUIRE_MOSQUITTO=1
 * after installing them, which turns a missing tool into failing tests instead.
 */

import type { TestBroker } from "./broker.ts";
import { ChildLines, type ToolResult } from "./child.ts";

export type { ToolResult };

type Tool = "mosquitto_pub" | "mosquitto_sub";

function onPath(tool: Tool): boolean {
  return (Deno.env.get("PATH") ?? "").split(":").some((dir) => {
    try {
      return Deno.statSync(`${dir}/${tool}`).isFile;
    } catch {
      return false;
    }
  });
}

const installed = onPath("mosquitto_pub") && onPath("mosquitto_sub");
/** True where the tests that need mosquitto_pub and mosquitto_sub are to be ignored: missing, and allowed to be. */
export const mosquittoSkipped = !installed && Deno.env.get("VYOMA_REQUIRE_MOSQUITTO") !== "1";
if (mosquittoSkipped) {
  console.warn(
    "mosquitto_pub/mosquitto_sub not found: their tests are ignored (apt-get install mosquitto-clients)",
  );
}

/** A test that drives mosquitto_pub or mosquitto_sub: ignored, not failed, where they are not installed. */
export function mosquittoTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, ignore: mosquittoSkipped, fn });
}

/** The address arguments (-h, -p) of a mosquitto tool for the broker listening on `port`. */
export function at({ port }: { port: number }): string[] {
  return ["-h", "127.0.0.1", "-p", String(port)];
}

export interface RunOptions {
  /** Written to the tool's stdin, which is then closed (for `mosquitto_pub -l` or `-s`). */
  stdin?: string;
  /** The tool is killed if it outlives this (the test then fails on its output). */
  ms?: number;
}

/** Runs a mosquitto client to completion and returns its exit code and output. */
export async function runMosquittoTool(
  tool: Tool,
  args: string[],
  { stdin, ms = 10_000 }: RunOptions = {},
): Promise<ToolResult> {
  const child = spawn(tool, args, stdin !== undefined);
  const timer = setTimeout(() => child.kill("SIGKILL"), ms);
  try {
    if (stdin !== undefined) {
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(stdin));
      await writer.close();
    }
    const output = await child.output();
    const decoder = new TextDecoder();
    return {
      code: output.code,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A mosquitto_sub left running while the test goes on, its output read as it prints: `lines(n)` waits for
 * lines, `finished()` for it to exit by itself (`-C`, `-E`, `-W`). Disposing kills it (SIGTERM) if it still
 * runs and waits for it to exit, so no process or pipe outlives the test.
 */
export class MosquittoSub extends ChildLines {
  constructor(args: string[]) {
    super(spawn("mosquitto_sub", args, false), "mosquitto_sub");
  }

  /**
   * mosquitto_sub connected to `broker` as `clientId` and subscribed to `filter`, with the other `args`
   * (-V, -q, -F, ...); returns once the broker holds the subscription.
   */
  static async subscribed(
    broker: TestBroker,
    clientId: string,
    filter: string,
    args: string[] = [],
  ): Promise<MosquittoSub> {
    const sub = new MosquittoSub([...at(broker), "-i", clientId, "-t", filter, ...args]);
    try {
      await broker.subscribed(clientId, filter);
    } catch (error) {
      await sub[Symbol.asyncDispose]();
      throw error;
    }
    return sub;
  }
}

/** Starts a mosquitto client with piped output (and stdin, if asked); says what to install if missing. */
function spawn(tool: Tool, args: string[], withStdin: boolean): Deno.ChildProcess {
  try {
    return new Deno.Command(tool, {
      args,
      stdin: withStdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(`${tool} is not installed: apt-get install mosquitto-clients (.ci/run does this)`);
    }
    throw error;
  }
}
