/**
 * CPU time and memory, of this process and of the broker.
 *
 * A process's own CPU comes from getrusage (node:process cpuUsage: user + system of every thread, in
 * microseconds), which is what mqttload reads for itself. /proc/self/stat would do as well, but Deno 2.9
 * refuses any /proc read without --allow-all, which the generator does not ask for.
 * For the broker, /proc/PID/stat and /proc/PID/status are read directly when permitted and otherwise
 * through `cat` (--allow-run), twice per run.
 */

import process from "node:process";

/** User + system CPU seconds of this process so far. */
export function selfCpuSeconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

export interface ProcSample {
  /** utime + stime of every thread, seconds; -1 when unknown. */
  cpuS: number;
  /** VmRSS in KiB; -1 when unknown. */
  rssKb: number;
}

/** Linux reports stat times in USER_HZ, 100 on every architecture Deno runs on. */
const USER_HZ = 100;

export function parseStatCpu(stat: string): number {
  const close = stat.lastIndexOf(")");
  if (close < 0) return -1;
  // Fields after ") " start at field 3 (state); utime and stime are fields 14 and 15.
  const fields = stat.slice(close + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / USER_HZ : -1;
}

export function parseStatusRss(status: string): number {
  const m = /^VmRSS:\s*(\d+)/m.exec(status);
  return m ? Number(m[1]) : -1;
}

/** The broker's CPU and RSS now; -1 for what cannot be read (no pid, process gone). */
export async function sampleProcess(pid: number): Promise<ProcSample> {
  if (pid <= 0) return { cpuS: -1, rssKb: -1 };
  const stat = `/proc/${pid}/stat`;
  const status = `/proc/${pid}/status`;
  let text: string;
  try {
    text = (await Deno.readTextFile(stat)) + "\n\0\n" + (await Deno.readTextFile(status));
  } catch (error) {
    if (!(error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied)) {
      return { cpuS: -1, rssKb: -1 };
    }
    text = await catFiles(stat, status);
  }
  const [statText, statusText = ""] = text.split("\n\0\n");
  return { cpuS: statText ? parseStatCpu(statText) : -1, rssKb: parseStatusRss(statusText) };
}

async function catFiles(stat: string, status: string): Promise<string> {
  try {
    // printf puts the same separator between the two files as the direct path does.
    const out = await new Deno.Command("sh", {
      args: ["-c", 'cat "$1" && printf "\\n\\0\\n" && cat "$2"', "sh", stat, status],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    return out.success ? new TextDecoder().decode(out.stdout) : "";
  } catch {
    return "";
  }
}
