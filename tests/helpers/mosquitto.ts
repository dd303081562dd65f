/**
 * Debian's mosquitto_pub and mosquitto_sub (package mosquitto-clients), run as real processes against a
 * test broker. `.ci/run` installs them; without them these tests fail and say what to install.
 */

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a mosquitto client to completion; it is killed if it outlives `ms` (the test then fails on its output). */
export async function runMosquittoTool(
  tool: "mosquitto_pub" | "mosquitto_sub",
  args: string[],
  ms = 10_000,
): Promise<ToolResult> {
  const child = spawnMosquittoTool(tool, args);
  const timer = setTimeout(() => child.kill("SIGKILL"), ms);
  try {
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

/** Starts a mosquitto client with piped stdout/stderr; the caller must await `output()` or `status`. */
export function spawnMosquittoTool(
  tool: "mosquitto_pub" | "mosquitto_sub",
  args: string[],
): Deno.ChildProcess {
  try {
    return new Deno.Command(tool, { args, stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(`${tool} is not installed: apt-get install mosquitto-clients (.ci/run does this)`);
    }
    throw error;
  }
}
