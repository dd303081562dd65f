/**
 * Debian's mosquitto_pub and mosquitto_sub (package mosquitto-clients), run as real processes against a
 * test broker. On a machine without them, the tests that need them are reported as ignored (with a notice
 * saying what to install), so `deno task test` still runs everywhere; CI sets VYOMA_REQUIRE_MOSQUITTO=1
 * after installing them, which turns a missing tool into failing tests instead.
 */

import { within } from "./wait.ts";

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
const skip = !installed && Deno.env.get("VYOMA_REQUIRE_MOSQUITTO") !== "1";
if (skip) {
  console.warn(
    "mosquitto_pub/mosquitto_sub not found: their tests are ignored (apt-get install mosquitto-clients)",
  );
}

/** A test that drives mosquitto_pub or mosquitto_sub: ignored, not failed, where they are not installed. */
export function mosquittoTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, ignore: skip, fn });
}

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
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
export class MosquittoSub implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #stdout: Promise<void>;
  readonly #stderr: Promise<string>;
  #text = "";
  #wake: (() => void) | null = null;

  constructor(args: string[]) {
    this.#child = spawn("mosquitto_sub", args, false);
    this.#stdout = this.#readStdout();
    this.#stderr = new Response(this.#child.stderr).text();
  }

  /** Waits until `count` whole lines have been printed and returns them. */
  lines(count: number): Promise<string[]> {
    return within(
      new Promise<string[]>((resolve) => {
        const check = () => {
          if (this.#text.split("\n").length <= count) return;
          this.#wake = null;
          resolve(this.#text.split("\n").slice(0, count));
        };
        this.#wake = check;
        check();
      }),
      `${count} line(s) from mosquitto_sub (so far: ${JSON.stringify(this.#text)})`,
    );
  }

  /** Waits for it to exit on its own and returns its exit code and everything it printed. */
  async finished(ms = 10_000): Promise<ToolResult> {
    const { code } = await within(this.#child.status, "mosquitto_sub to exit", ms);
    await this.#stdout;
    return { code, stdout: this.#text, stderr: await this.#stderr };
  }

  /** Sends `signal`; does nothing if it has already exited. */
  kill(signal: Deno.Signal): void {
    try {
      this.#child.kill(signal);
    } catch {
      // already exited
    }
  }

  get status(): Promise<Deno.CommandStatus> {
    return this.#child.status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.kill("SIGTERM");
    await this.#child.status;
    await this.#stdout;
    await this.#stderr;
  }

  async #readStdout(): Promise<void> {
    for await (const chunk of this.#child.stdout.pipeThrough(new TextDecoderStream())) {
      this.#text += chunk;
      this.#wake?.();
    }
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
