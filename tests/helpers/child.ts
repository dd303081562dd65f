/**
 * A child process left running while a test goes on, its output read as it prints: what mosquitto_sub
 * (mosquitto.ts) and the paho scripts (paho.ts) have in common.
 */

import { within } from "./wait.ts";

/** How a process ended: its exit code and everything it printed. */
export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * `lines(n)` waits for lines, `finished()` for the process to exit by itself. Disposing stops it (with the
 * signal given) if it still runs and waits for it to exit, so no process or pipe outlives the test.
 */
export class ChildLines implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #name: string;
  readonly #stopSignal: Deno.Signal;
  readonly #stdout: Promise<void>;
  readonly #stderr: Promise<string>;
  #text = "";
  #ended = false;
  #wake: (() => void) | null = null;

  /**
   * Takes over `child`, spawned with piped stdout and stderr; `name` says what it is in failure messages,
   * and disposing sends it `stopSignal`.
   */
  constructor(child: Deno.ChildProcess, name: string, stopSignal: Deno.Signal = "SIGTERM") {
    this.#child = child;
    this.#name = name;
    this.#stopSignal = stopSignal;
    this.#stdout = this.#readStdout();
    this.#stderr = new Response(child.stderr).text();
  }

  /**
   * Waits until `count` whole lines have been printed and returns them; fails as soon as the output ends
   * short of them, so a process that died does not cost a timeout.
   */
  async lines(count: number, ms?: number): Promise<string[]> {
    const enough = () => this.#text.split("\n").length > count;
    try {
      await within(
        new Promise<void>((resolve) => {
          const check = () => {
            if (!enough() && !this.#ended) return;
            this.#wake = null;
            resolve();
          };
          this.#wake = check;
          check();
        }),
        `${count} line(s) from ${this.#name}`,
        ms,
      );
    } catch (error) {
      throw new Error(`${(error as Error).message} (so far: ${JSON.stringify(this.#text)})`);
    }
    if (!enough()) {
      throw new Error(
        `${this.#name} ended after printing ${JSON.stringify(this.#text)}: ${await this.#stderr}`,
      );
    }
    return this.#text.split("\n").slice(0, count);
  }

  /** Waits for it to exit on its own and returns its exit code and everything it printed. */
  async finished(ms = 10_000): Promise<ToolResult> {
    const { code } = await within(this.#child.status, `${this.#name} to exit`, ms);
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
    this.kill(this.#stopSignal);
    await this.#child.status;
    await this.#stdout;
    await this.#stderr;
  }

  async #readStdout(): Promise<void> {
    for await (const chunk of this.#child.stdout.pipeThrough(new TextDecoderStream())) {
      this.#text += chunk;
      this.#wake?.();
    }
    this.#ended = true;
    this.#wake?.();
  }
}
