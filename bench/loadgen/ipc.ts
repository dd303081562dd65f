/**
 * What the main process and its workers say to each other: one JSON object per line, main -> worker on the
 * worker's stdin, worker -> main on its stdout (stderr is left to diagnostics).
 *
 *   worker: hello {peerPort}          listening for its peers, clock ready
 *   main:   init {config}             the worker's clients; it connects, subscribes, links to peers
 *   worker: ready {connect stats}     every handshake and SUBACK done (or failed)
 *   main:   go {t0}                   everyone starts publishing at shared time t0
 *   worker: progress {...}            every few ms while something changes, at once when published
 *   main:   stop                      end of the run: disconnect and report
 *   worker: result {...}              counters, histogram, CPU time; then it exits
 */

import type { SparseHistogram } from "./histogram.ts";
import type { Options } from "./options.ts";

/** Everything a worker needs to run its share of the clients: the run's options it uses, and its share. */
export interface WorkerConfig extends
  Pick<
    Options,
    | "host"
    | "port"
    | "qos"
    | "size"
    | "count"
    | "rate"
    | "window"
    | "inflight"
    | "pubTime"
    | "keepalive"
    | "parallel"
    | "hsTimeout"
    | "prefix"
    | "topics"
    | "wildcard"
    | "transport"
    | "wsPath"
  > {
  worker: number;
  /** PEM CA certificates trusted for tls and wss (the main process reads --cafile; workers read no files). */
  caCerts: string[];
  /** Client ids are `<clientIdBase>-s3`, `-p0`, `-c42`. */
  clientIdBase: string;
  npubs: number;
  nsubs: number;
  pubs: number[];
  subs: number[];
  /** Idle connections (conns mode) and the index of the first, for client ids. */
  conns: number;
  connsFrom: number;
  /** Worker running each publisher, by global index. */
  pubOwner: number[];
  /** Peer listener ports by worker index; empty when no delivery counts cross processes. */
  peers: number[];
  /** Base of the shared clock, epoch milliseconds. */
  baseMs: number;
  verbose: boolean;
}

export interface ConnectStats {
  ok: number;
  failed: number;
  /** Shared-clock ns of the first handshake start and the last success; 0 when none. */
  first: number;
  last: number;
  subscribed: number;
  grantedLower: boolean;
}

export interface Progress {
  sent: number;
  /** Deliveries owed for what this worker's publishers sent: sum of sent x fanout. */
  expected: number;
  received: number;
  acked: number;
  /** Shared-clock ns of the last delivery; 0 when none. */
  lastRecv: number;
  /** Every publisher here is done (count reached or cut, nothing awaiting PUBACK). */
  published: boolean;
  tPubDone: number;
  errors: number;
}

export interface Failure {
  errors: number;
  /** First error, `sub3: connection closed by broker`. */
  firstError: string;
  /** Shared-clock ns of that first error, to pick the earliest over workers. */
  firstErrorAt: number;
  /** Handshake failure reasons and their counts. */
  fails: Record<string, number>;
  dropped: number;
}

export interface WorkerResult extends Progress, Failure {
  connect: ConnectStats;
  dups: number;
  gaps: number;
  hist: SparseHistogram;
  /** CPU seconds of this worker from go to stop. */
  cpuS: number;
  wallSkewMs: number;
}

export type ToWorker =
  | { t: "init"; config: WorkerConfig }
  | { t: "go"; t0: number }
  | { t: "stop" };

export type FromWorker =
  | { t: "hello"; peerPort: number; wallSkewMs: number }
  | { t: "ready"; connect: ConnectStats; failure: Failure }
  | { t: "progress"; progress: Progress }
  | { t: "result"; result: WorkerResult };

const encoder = new TextEncoder();

/** Writes one message as a line; synchronous so that messages never interleave. */
export function writeMessage(out: { writeSync(p: Uint8Array): number }, message: unknown): void {
  const bytes = encoder.encode(JSON.stringify(message) + "\n");
  let off = 0;
  while (off < bytes.length) off += out.writeSync(bytes.subarray(off));
}

/** The lines of a byte stream, without their newlines. */
export async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of stream) {
    pending += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      yield pending.slice(0, nl);
      pending = pending.slice(nl + 1);
    }
  }
  pending += decoder.decode();
  if (pending !== "") yield pending;
}

/** Parses a line from the other side; both sides are this program, so a tag check is enough. */
export function parseMessage<T extends { t: string }>(line: string): T {
  const value: unknown = JSON.parse(line);
  if (typeof value !== "object" || value === null || typeof (value as { t?: unknown }).t !== "string") {
    throw new Error(`not a loadgen message: ${line.slice(0, 80)}`);
  }
  return value as T;
}
