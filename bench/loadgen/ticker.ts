/**
 * A precise metronome for fixed-rate publishing (the thread's code is ticker_thread.ts).
 *
 * Deno's timers round to milliseconds and fire 1-2 ms late (setTimeout(0) takes about 2 ms here), so
 * publishers due a quarter of a millisecond apart would leave together, queue behind each other in the
 * broker and inflate every latency. A worker thread instead sleeps with Atomics.wait, which takes
 * fractional milliseconds and wakes within microseconds, and posts one message per slot; the event loop
 * then publishes whatever is due.
 */

import type { TickerStart } from "./ticker_thread.ts";

export class Ticker {
  readonly #worker: Worker;
  /** [0] = 1 once stopped. */
  readonly #control = new Int32Array(new SharedArrayBuffer(4));

  /** Calls `onTick` at `firstNs`, then every `periodNs` (shared-clock ns), until stop(). */
  constructor(firstNs: number, periodNs: number, baseMs: number, onTick: () => void) {
    this.#worker = new Worker(new URL("./ticker_thread.ts", import.meta.url), { type: "module" });
    this.#worker.onmessage = onTick;
    const start: TickerStart = { control: this.#control, firstNs, periodNs, baseMs };
    this.#worker.postMessage(start);
  }

  stop(): void {
    Atomics.store(this.#control, 0, 1);
    Atomics.notify(this.#control, 0);
    this.#worker.terminate();
  }
}
