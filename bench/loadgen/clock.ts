/**
 * The clock every generator process shares, so a subscriber in one process can subtract a send time
 * stamped in another.
 *
 * It is `performance.timeOrigin + performance.now()`: Deno derives timeOrigin as one reading of the wall
 * clock minus the monotonic time elapsed since the runtime started, both read back to back, and now() is
 * that monotonic clock (CLOCK_MONOTONIC). Two processes therefore disagree only by the wall-to-monotonic
 * offset each captured, which Linux changes only when the wall clock is stepped (slewing moves both
 * clocks alike). Measured against the kernel's CLOCK_MONOTONIC ("now at" in /proc/timer_list), ten
 * processes started together agreed within about 2 us. Kernel clocks readable from JS would be no better
 * and are not reachable here: Deno 2.9 refuses every /proc read without --allow-all, and the other
 * unprivileged anchor, the whole-second edge of Deno.osUptime(), jitters by tens of microseconds. A step
 * of the wall clock while the processes start is the one failure; `wallSkewMs` lets the main process
 * detect it.
 *
 * Times are nanoseconds since a base chosen by the main process (a recent epoch millisecond), so they stay
 * far below 2^53 and exact in a double.
 */
export class SharedClock {
  readonly #offsetMs: number;

  constructor(readonly baseMs: number) {
    this.#offsetMs = performance.timeOrigin - baseMs;
  }

  /** Nanoseconds since `baseMs` on the shared clock. */
  nowNs(): number {
    return (this.#offsetMs + performance.now()) * 1e6;
  }

  /** Milliseconds from now until shared time `ns` (negative when past). */
  msUntil(ns: number): number {
    return (ns - this.nowNs()) / 1e6;
  }
}

/**
 * Wall clock minus this process's view of it, in milliseconds. Near 0 (Date.now() truncates to the ms)
 * unless the wall clock was stepped after this process captured its time origin; processes whose values
 * differ by more than a couple of milliseconds do not share a clock any more.
 */
export function wallSkewMs(): number {
  return Date.now() - (performance.timeOrigin + performance.now());
}
