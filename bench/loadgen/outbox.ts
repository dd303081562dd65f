/**
 * Outgoing bytes of one socket, gathered during a turn of the event loop and written with one call.
 *
 * Deno's conn.write() keeps using the buffer it was given until its promise settles, so two buffers take
 * turns: one is being written while the other fills. Neither is reallocated in steady state.
 */
export class Outbox {
  /** The buffer being filled; bytes [0, len) are waiting. */
  buf: Uint8Array;
  len = 0;
  /** Bytes handed to write() and not yet confirmed. */
  writing = 0;
  #spare: Uint8Array;

  constructor(initial = 4096) {
    this.buf = new Uint8Array(initial);
    this.#spare = new Uint8Array(initial);
  }

  /** Bytes not yet on the wire. */
  get pending(): number {
    return this.len + this.writing;
  }

  /** Makes room for `n` more bytes; returns where they go in `buf` (which may be a new array). */
  reserve(n: number): number {
    const need = this.len + n;
    if (need > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < need) size *= 2;
      const grown = new Uint8Array(size);
      grown.set(this.buf.subarray(0, this.len));
      this.buf = grown;
    }
    return this.len;
  }

  append(bytes: Uint8Array): void {
    const at = this.reserve(bytes.length);
    this.buf.set(bytes, at);
    this.len += bytes.length;
  }

  /** Hands the waiting bytes over for writing; the other buffer becomes the one that fills. */
  take(): Uint8Array {
    const full = this.buf;
    const n = this.len;
    this.buf = this.#spare;
    this.#spare = full;
    this.len = 0;
    this.writing = n;
    return full.subarray(0, n);
  }

  /** The bytes from the last take() are written. */
  written(): void {
    this.writing = 0;
  }

  /** Drops everything waiting (the connection is going away). */
  clear(): void {
    this.len = 0;
  }
}
