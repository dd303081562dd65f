/**
 * Reading what comes before a socket's stream proper (a PROXY header, a WebSocket upgrade request): bytes are
 * gathered until `parse` can decide, within a deadline, and nothing is read past that point by anyone else.
 */

import type net from "node:net";

/**
 * Feeds `first` and then what `socket` reads to `parse` (all bytes so far, and how many of them it has seen
 * before, so it can resume a scan) until it returns a result, then calls `done` with it and those bytes,
 * synchronously within the read, so that the next reader attached misses nothing. If no result comes within
 * `timeoutMs`, calls `late` instead. A socket that closes first ends it quietly.
 */
export function readPreamble<T>(
  socket: net.Socket,
  first: Uint8Array | undefined,
  timeoutMs: number,
  parse: (bytes: Uint8Array, seen: number) => T | undefined,
  done: (result: T, bytes: Uint8Array) => void,
  late: () => void,
): void {
  // Gathered in a buffer that doubles as it fills, so a request sent a byte at a time costs linear work.
  let gathered = new Uint8Array(0);
  let length = 0;
  const stop = () => {
    clearTimeout(timer);
    socket.off("data", onData);
    socket.off("close", stop);
  };
  const timer = setTimeout(() => {
    stop();
    late();
  }, timeoutMs);
  const onData = (chunk: Uint8Array) => {
    const seen = length;
    let bytes: Uint8Array;
    if (length === 0) {
      bytes = chunk; // Most preambles arrive whole: no copy then.
    } else {
      if (length + chunk.length > gathered.length) {
        const grown = new Uint8Array(Math.max(2 * gathered.length, length + chunk.length));
        grown.set(gathered.subarray(0, length));
        gathered = grown;
      }
      gathered.set(chunk, length);
      bytes = gathered.subarray(0, length + chunk.length);
    }
    const result = parse(bytes, seen);
    if (result === undefined) {
      if (length === 0) {
        gathered = new Uint8Array(Math.max(1024, 2 * chunk.length));
        gathered.set(chunk);
      }
      length = bytes.length;
      return;
    }
    stop();
    done(result, bytes);
  };
  socket.on("close", stop);
  socket.on("data", onData);
  if (first !== undefined && first.length > 0) onData(first);
}
