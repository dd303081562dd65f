/**
 * A connection's outgoing bytes for the current event-loop turn. Every transport queues through one: what a
 * turn queues goes out in one write (one syscall, one TLS record run, one WebSocket frame), and the packet-id
 * edits of `Connection.writeEdited` are applied in the copy that one write needs anyway.
 */

/** Where a flushed turn's bytes go: the socket's write, the WebSocket's send. */
export type Sink = (bytes: Uint8Array) => void;

/** Outboxes with bytes queued in this turn; one microtask flushes them all. */
let toFlush: Outbox[] = [];

function flushAll(): void {
  const outboxes = toFlush;
  toFlush = [];
  for (const outbox of outboxes) outbox.flush();
}

export class Outbox {
  readonly #sink: Sink;
  #chunks: Uint8Array[] = [];
  /** The edits of queued chunks, four numbers each: chunk index, at, value, flags. */
  #edits: number[] | undefined;
  #queued = 0;

  constructor(sink: Sink) {
    this.#sink = sink;
  }

  /** Bytes queued and not yet given to the sink. */
  get queued(): number {
    return this.#queued;
  }

  /** Queues `bytes`, with the edit `Connection.writeEdited` describes unless `at` is negative. */
  add(bytes: Uint8Array, at: number, value: number, flags: number): void {
    if (this.#queued === 0) {
      if (toFlush.length === 0) queueMicrotask(flushAll);
      toFlush.push(this);
    }
    if (at >= 0) (this.#edits ??= []).push(this.#chunks.length, at, value, flags);
    this.#chunks.push(bytes);
    this.#queued += bytes.length;
  }

  /** Gives everything queued to the sink in one call. */
  flush(): void {
    const chunks = this.#chunks;
    const edits = this.#edits;
    const length = this.#queued;
    if (length === 0) return;
    this.discard();
    this.#sink(chunks.length === 1 && !edits ? chunks[0] : concat(chunks, edits, length));
  }

  /** Forgets what is queued: the peer is gone. */
  discard(): void {
    this.#chunks = [];
    this.#edits = undefined;
    this.#queued = 0;
  }
}

/** The chunks in one buffer, each edit applied to its chunk's copy. */
function concat(chunks: Uint8Array[], edits: number[] | undefined, length: number): Uint8Array {
  const out = new Uint8Array(length);
  const starts = edits ? new Array<number>(chunks.length) : undefined;
  let at = 0;
  for (let i = 0; i < chunks.length; i++) {
    if (starts) starts[i] = at;
    out.set(chunks[i], at);
    at += chunks[i].length;
  }
  if (edits && starts) {
    for (let e = 0; e < edits.length; e += 4) {
      const start = starts[edits[e]];
      const value = edits[e + 2];
      out[start + edits[e + 1]] = value >> 8;
      out[start + edits[e + 1] + 1] = value & 0xff;
      out[start] |= edits[e + 3];
    }
  }
  return out;
}
