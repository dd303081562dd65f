/**
 * One-line, levelled logging. Every event worth knowing is one line on stderr:
 * `2026-11-24T22:20:01.123Z INFO  client "c1" connected from 127.0.0.1:50312`.
 * Client mistakes are logged as a reason, never as a stack trace.
 */

import type { LogLevel } from "../config/schema.ts";

const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };
const LABEL: Record<LogLevel, string> = { error: "ERROR", warn: "WARN ", info: "INFO ", debug: "DEBUG" };

/** Where finished lines go; tests pass an array-backed sink to read them back. */
export type LogSink = (line: string) => void;

export interface Logger {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  debug(message: string): void;
  /**
   * Whether info and debug lines are written, so a caller on a per-connection or per-message path skips
   * building a line nobody will see (quoting, peer lookups); that cost showed in the connect rate.
   */
  readonly infoEnabled: boolean;
  readonly debugEnabled: boolean;
}

const encoder = new TextEncoder();

/** Writes synchronously so a line is never lost when the process exits right after logging. */
export const stderrSink: LogSink = (line) => {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
};

export function createLogger(level: LogLevel, sink: LogSink = stderrSink): Logger {
  const max = RANK[level];
  const write = (at: LogLevel, message: string) => {
    if (RANK[at] <= max) sink(`${new Date().toISOString()} ${LABEL[at]} ${message}`);
  };
  return {
    error: (m) => write("error", m),
    warn: (m) => write("warn", m),
    info: (m) => write("info", m),
    debug: (m) => write("debug", m),
    infoEnabled: max >= RANK.info,
    debugEnabled: max >= RANK.debug,
  };
}

/**
 * A client-supplied string for a log line: JSON-quoted so control characters cannot forge a second line,
 * and cut short so a 64 KiB topic does not become a 64 KiB line.
 */
export function quote(text: string, max = 120): string {
  return JSON.stringify(text.length > max ? `${text.slice(0, max)}...` : text);
}

/** Kinds `oncePerKind` remembers; past that it starts over, so a scan from many addresses costs no memory. */
const KINDS_REMEMBERED = 1024;

/**
 * For failures a client can cause at will (a failed handshake, a refused upgrade): the first line of each
 * kind at info, the others at debug, so a scan or a broken client cannot flood the log.
 */
export function oncePerKind(log: Logger): (kind: string, line: string) => void {
  const seen = new Set<string>();
  return (kind, line) => {
    if (!seen.has(kind)) {
      if (seen.size >= KINDS_REMEMBERED) seen.clear();
      seen.add(kind);
      log.info(line);
    } else if (log.debugEnabled) log.debug(line);
  };
}
