/**
 * Reading what comes before a socket's stream proper (a PROXY header, a WebSocket upgrade request): bytes are
 * gathered until `parse` can decide, within a deadline, and nothing is read past that point by anyone else.
 */

import type net from "node:net";

/**
 * Feeds `first` and then what `socket` reads to `parse` (all bytes so far, each time) until it returns a
 * result, then calls `done` with it and those bytes, synchronously within the read, so that the next reader
 * attached misses nothing. If no result comes within `timeoutMs`, calls `late` instead. A socket that closes
 * first ends it quietly.
 */
export function readPreamble<T>(
  socket: net.Socket,
  first: Uint8Array | undefined,
  timeoutMs: number,
  parse: (bytes: Uint8Array) => T | undefined,
  done: (result: T, bytes: Uint8Array) => void,
  late: () => void,
): void {
  let read: Uint8Array | undefined;
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
    read = read ? concat(read, chunk) : chunk;
    const result = parse(read);
    if (result === undefined) return;
    stop();
    done(result, read);
  };
  socket.on("close", stop);
  socket.on("data", onData);
  if (first !== undefined && first.length > 0) onData(first);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
