/**
 * Delivery counts between worker processes, for the closed-loop window.
 *
 * A publisher may send only while fewer than --window of its messages are undelivered, and its
 * subscribers may live in other processes. Those processes tell the publisher's process how many of its
 * messages they received, over a mesh of loopback TCP connections (one hop, no relay through the main
 * process): each record is 8 bytes, publisher index and delivery count since the last record (u32 LE).
 *
 * A loopback write costs several microseconds of CPU on each side, so counts are not sent per turn: a
 * publisher's count goes out once it reaches `batch` (an eighth of the window: publishers wait for a
 * quarter of it to free up anyway), and whatever is left goes out after at most FLUSH_MS.
 */

import { Outbox } from "./outbox.ts";
import { readU32, writeU32 } from "./payload.ts";

const RECORD = 8;
const FLUSH_MS = 1;

export class PeerLinks {
  readonly port: number;
  readonly #listener: Deno.TcpListener;
  #out: (Deno.TcpConn | null)[] = [];
  #boxes: (Outbox | null)[] = [];
  #pumping: boolean[] = [];
  #incoming: Deno.TcpConn[] = [];
  #owner: number[] = [];
  #pending: Uint32Array = new Uint32Array(0);
  #dirty: number[] = [];
  #kept: number[] = [];
  #batch = 1;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #closed = false;
  #log: (message: string) => void = () => {};

  private constructor(listener: Deno.TcpListener) {
    this.#listener = listener;
    this.port = listener.addr.port;
  }

  /** Listens on a free loopback port, before anyone knows whether a mesh is needed. */
  static listen(): PeerLinks {
    return new PeerLinks(Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  }

  /**
   * Links to every other worker: connects out to each (to send) and accepts one connection from each
   * (to receive). `onCount(pub, n)` gets the deliveries other processes saw of publisher `pub`.
   * A link that fails later is only logged: workers stop in no particular order, and a window that stops
   * opening mid-run shows up as a stall anyway.
   */
  async link(
    self: number,
    ports: readonly number[],
    owner: readonly number[],
    batch: number,
    onCount: (pub: number, n: number) => void,
    log: (message: string) => void,
  ): Promise<void> {
    this.#owner = [...owner];
    this.#pending = new Uint32Array(owner.length);
    this.#batch = Math.max(1, batch);
    this.#log = log;
    const others = ports.length - 1;
    const accepting = (async () => {
      for (let k = 0; k < others; k++) {
        const conn = await this.#listener.accept();
        conn.setNoDelay(true);
        this.#incoming.push(conn);
        this.#read(conn, onCount);
      }
    })();
    const connecting = ports.map(async (port, w) => {
      if (w === self) return null;
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.setNoDelay(true);
      return conn;
    });
    this.#out = await Promise.all(connecting);
    this.#boxes = this.#out.map((conn) => conn === null ? null : new Outbox(4096));
    this.#pumping = this.#out.map(() => false);
    await accepting;
    this.#listener.close();
  }

  /** Counts one delivery of a publisher that runs elsewhere; sent at the next flush(). */
  count(pub: number): void {
    if (this.#pending[pub]++ === 0) this.#dirty.push(pub);
  }

  /** Sends the counts that reached a batch; schedules the rest. */
  flush(): void {
    this.#send(false);
  }

  #send(all: boolean): void {
    const dirty = this.#dirty;
    if (dirty.length === 0 || this.#closed) return;
    const kept = this.#kept;
    for (let k = 0; k < dirty.length; k++) {
      const pub = dirty[k];
      const n = this.#pending[pub];
      if (!all && n < this.#batch) {
        kept.push(pub);
        continue;
      }
      const box = this.#boxes[this.#owner[pub]];
      this.#pending[pub] = 0;
      if (box === null || box === undefined) continue;
      const at = box.reserve(RECORD);
      writeU32(box.buf, at, pub);
      writeU32(box.buf, at + 4, n);
      box.len += RECORD;
    }
    this.#dirty = kept;
    this.#kept = dirty;
    dirty.length = 0;
    if (kept.length > 0 && this.#timer === null) {
      this.#timer = setTimeout(() => {
        this.#timer = null;
        this.#send(true);
      }, FLUSH_MS);
    }
    for (let w = 0; w < this.#boxes.length; w++) {
      const box = this.#boxes[w];
      if (box !== null && box.len > 0 && !this.#pumping[w]) this.#pump(w, box);
    }
  }

  async #pump(w: number, box: Outbox): Promise<void> {
    const conn = this.#out[w];
    if (conn === null) return;
    this.#pumping[w] = true;
    try {
      while (box.len > 0) {
        const chunk = box.take();
        let off = await conn.write(chunk);
        while (off < chunk.length) off += await conn.write(chunk.subarray(off));
        box.written();
      }
    } catch (error) {
      if (!this.#closed) this.#log(`peer link to worker ${w}: ${message(error)}`);
    } finally {
      this.#pumping[w] = false;
    }
  }

  async #read(conn: Deno.TcpConn, onCount: (pub: number, n: number) => void): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    let held = 0;
    try {
      for (;;) {
        const n = await conn.read(buf.subarray(held));
        if (n === null) break;
        held += n;
        let pos = 0;
        for (; pos + RECORD <= held; pos += RECORD) onCount(readU32(buf, pos), readU32(buf, pos + 4));
        buf.copyWithin(0, pos, held);
        held -= pos;
      }
      if (!this.#closed) this.#log("peer link closed");
    } catch (error) {
      if (!this.#closed) this.#log(`peer link: ${message(error)}`);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    for (const conn of [...this.#out, ...this.#incoming]) {
      try {
        conn?.close();
      } catch { /* already closed */ }
    }
    try {
      this.#listener.close();
    } catch { /* closed after linking */ }
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
