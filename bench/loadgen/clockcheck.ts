/**
 * How well the generator's processes agree on the time (see clock.ts), measured by round trips.
 *
 *   deno run --allow-net --allow-read --allow-run bench/loadgen/clockcheck.ts [--rounds N] [--children K]
 *
 * An echo answers each ping, stamped t0 by the sender, with its own reading t1; the sender reads t2 when
 * the answer is back. theta = t1 - (t0 + t2) / 2 is the echo's clock minus the sender's, plus half the
 * difference between the two directions' delays. Measured once with the echo in the sender's own process
 * (same clock: theta is only that path asymmetry) and once per child process; the difference is the
 * clock error between processes. Only the fastest tenth of round trips count, where delays are least
 * disturbed by scheduling.
 */

import { SharedClock } from "./clock.ts";
import { readU64, writeU64 } from "./payload.ts";

interface Sample {
  rtt: number;
  theta: number;
}

/** Echo loop: for every 8-byte t0, answer t0 and our own time. */
async function echo(conn: Deno.Conn, clock: SharedClock): Promise<void> {
  const buf = new Uint8Array(8);
  const out = new Uint8Array(16);
  for (;;) {
    let got = 0;
    while (got < 8) {
      const n = await conn.read(buf.subarray(got));
      if (n === null) return;
      got += n;
    }
    const t1 = clock.nowNs();
    out.set(buf, 0);
    writeU64(out, 8, Math.round(t1));
    await conn.write(out);
  }
}

async function ping(conn: Deno.Conn, clock: SharedClock, rounds: number): Promise<Sample[]> {
  const req = new Uint8Array(8);
  const res = new Uint8Array(16);
  const samples: Sample[] = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = Math.round(clock.nowNs());
    writeU64(req, 0, t0);
    await conn.write(req);
    let got = 0;
    while (got < 16) {
      const n = await conn.read(res.subarray(got));
      if (n === null) throw new Error("echo closed");
      got += n;
    }
    const t2 = clock.nowNs();
    const t1 = readU64(res, 8);
    samples.push({ rtt: t2 - t0, theta: t1 - (t0 + t2) / 2 });
    // Let both sides go idle between pings, as publishers at a fixed rate do.
    if (i % 4 === 3) await new Promise((resolve) => setTimeout(resolve, 1));
  }
  return samples;
}

/** Median theta and RTT of the fastest tenth, in microseconds. */
function summarize(
  samples: Sample[],
): { rttMinUs: number; rttUs: number; thetaUs: number; spreadUs: number } {
  const fast = [...samples].sort((a, b) => a.rtt - b.rtt).slice(
    0,
    Math.max(5, Math.floor(samples.length / 10)),
  );
  const thetas = fast.map((s) => s.theta).sort((a, b) => a - b);
  const median = (xs: number[]) => xs[Math.floor(xs.length / 2)];
  return {
    rttMinUs: fast[0].rtt / 1e3,
    rttUs: median(fast.map((s) => s.rtt)) / 1e3,
    thetaUs: median(thetas) / 1e3,
    spreadUs: (thetas[Math.floor(thetas.length * 0.9)] - thetas[Math.floor(thetas.length * 0.1)]) / 1e3,
  };
}

async function main(args: string[]): Promise<void> {
  if (args[0] === "--echo") {
    const clock = new SharedClock(Number(args[2]));
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(args[1]) });
    conn.setNoDelay(true);
    await echo(conn, clock);
    return;
  }
  const flag = (name: string, fallback: number) => {
    const i = args.indexOf(name);
    return i >= 0 ? Number(args[i + 1]) : fallback;
  };
  const rounds = flag("--rounds", 2000);
  const children = flag("--children", 4);
  const clock = new SharedClock(Math.floor(performance.timeOrigin));
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });

  const self = Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const accepted = await listener.accept();
  const client = await self;
  for (const c of [accepted, client]) c.setNoDelay(true);
  const echoing = echo(accepted, clock);
  const inProcess = summarize(await ping(client, clock, rounds));
  client.close();
  await echoing;
  accepted.close();
  console.log(
    `same process:  RTT min ${inProcess.rttMinUs.toFixed(1)} us, theta ${inProcess.thetaUs.toFixed(1)} us ` +
      `(path asymmetry; 10-90% spread ${inProcess.spreadUs.toFixed(1)} us)`,
  );

  const me = new URL(import.meta.url);
  for (let k = 0; k < children; k++) {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-config",
        "--allow-net",
        me.href,
        "--echo",
        String(listener.addr.port),
        String(clock.baseMs),
      ],
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    const conn = await listener.accept();
    conn.setNoDelay(true);
    const s = summarize(await ping(conn, clock, rounds));
    conn.close();
    await child.status;
    console.log(
      `child ${k}:       RTT min ${s.rttMinUs.toFixed(1)} us, theta ${s.thetaUs.toFixed(1)} us ` +
        `(spread ${s.spreadUs.toFixed(1)} us) -> clock error ${
          (s.thetaUs - inProcess.thetaUs).toFixed(1)
        } us`,
    );
  }
  listener.close();
}

if (import.meta.main) await main(Deno.args);
