/**
 * The ticker's thread (see ticker.ts): sleeps until each slot with Atomics.wait and posts one message per
 * slot, until the control cell turns 1.
 */

import { SharedClock } from "./clock.ts";

export interface TickerStart {
  control: Int32Array;
  firstNs: number;
  periodNs: number;
  baseMs: number;
}

/** Aim a microsecond past each slot so that rounding never wakes a publisher just before it is due. */
const LATE_NS = 1000;

/** The worker-thread globals used here; the program is type-checked with the main thread's globals. */
interface ThreadScope {
  onmessage: ((event: MessageEvent<TickerStart>) => void) | null;
  postMessage(message: unknown): void;
  close(): void;
}

function run({ control, firstNs, periodNs, baseMs }: TickerStart, scope: ThreadScope): void {
  const clock = new SharedClock(baseMs);
  let next = firstNs + LATE_NS;
  while (Atomics.load(control, 0) === 0) {
    const waitMs = (next - clock.nowNs()) / 1e6;
    if (waitMs > 0) {
      Atomics.wait(control, 0, 0, waitMs);
      continue;
    }
    scope.postMessage(null);
    next += periodNs;
    const now = clock.nowNs();
    // A slot missed entirely (the thread was descheduled) is skipped: publishers catch up by count.
    if (next < now) next += Math.ceil((now - next) / periodNs) * periodNs;
  }
}

const scope = globalThis as unknown as ThreadScope;
scope.onmessage = (event) => {
  run(event.data, scope);
  scope.close();
};
