/**
 * Splits a byte stream into whole MQTT packets ("frames").
 *
 * The framer reads only the fixed header, so it can refuse a packet that is too large or has a bad
 * remaining length before any of its body is buffered. A frame that arrived whole in one chunk is a view into
 * it, never a copy: a copy per frame (an ArrayBuffer each) cost fan-in QoS 0 about a third of its throughput.
 * That is safe because a transport never reuses a chunk's memory once it has handed it over (the Connection
 * contract in src/transport/connection.ts). A frame split across chunks is assembled in its own buffer. The
 * codec hands out views into the frame, so whoever keeps a message beyond the moment copies it into a compact
 * buffer of its own first (`storedCopy` in src/broker/message.ts), rather than holding a whole chunk.
 */

export type FrameError =
  | { kind: "malformed"; message: string }
  | { kind: "too_large"; message: string; size: number };

/** Told about each complete frame; returning false stops framing (the connection is closing). */
export interface FrameSink {
  frame(frame: Uint8Array): boolean;
}

/** Longest fixed header: one type byte and four remaining-length bytes. */
const MAX_HEADER = 5;

export class FrameReader {
  readonly #maxPacketSize: number;
  /** Fixed-header bytes of the next frame while it is split across chunks (made when first needed). */
  #head: Uint8Array | null = null;
  #headLength = 0;
  /** The frame being filled while its body is split across chunks. */
  #frame: Uint8Array | null = null;
  #filled = 0;

  constructor(maxPacketSize: number) {
    this.#maxPacketSize = maxPacketSize;
  }

  /** Bytes held for an incomplete frame (memory accounting and tests). */
  get pendingBytes(): number {
    return this.#frame ? this.#filled : this.#headLength;
  }

  push(chunk: Uint8Array, sink: FrameSink): FrameError | null {
    let at = 0;
    while (at < chunk.length) {
      if (this.#frame) {
        const take = Math.min(this.#frame.length - this.#filled, chunk.length - at);
        this.#frame.set(chunk.subarray(at, at + take), this.#filled);
        this.#filled += take;
        at += take;
        if (this.#filled < this.#frame.length) return null;
        const frame = this.#frame;
        this.#frame = null;
        if (!sink.frame(frame)) return null;
        continue;
      }
      if (this.#headLength === 0) {
        // Fast path: the whole fixed header is in this chunk.
        const header = readFixedHeader(chunk, at, chunk.length);
        if (header === "incomplete") {
          (this.#head ??= new Uint8Array(MAX_HEADER)).set(chunk.subarray(at), 0);
          this.#headLength = chunk.length - at;
          return null;
        }
        if (typeof header === "object") return header;
        const error = this.#checkSize(header);
        if (error) return error;
        if (at + header <= chunk.length) {
          const frame = chunk.subarray(at, at + header);
          at += header;
          if (!sink.frame(frame)) return null;
        } else {
          this.#startFrame(header, chunk.subarray(at));
          at = chunk.length;
        }
        continue;
      }
      // Slow path: the fixed header itself is split across chunks; take one byte at a time.
      const head = this.#head!;
      head[this.#headLength++] = chunk[at++];
      const header = readFixedHeader(head, 0, this.#headLength);
      if (header === "incomplete") continue;
      const headerLength = this.#headLength;
      this.#headLength = 0;
      if (typeof header === "object") return header;
      const error = this.#checkSize(header);
      if (error) return error;
      this.#startFrame(header, head.subarray(0, headerLength));
      if (this.#filled === header) {
        const frame = this.#frame!;
        this.#frame = null;
        if (!sink.frame(frame)) return null;
      }
    }
    return null;
  }

  #checkSize(total: number): FrameError | null {
    if (total <= this.#maxPacketSize) return null;
    return {
      kind: "too_large",
      size: total,
      message: `packet of ${total} bytes exceeds the maximum packet size of ${this.#maxPacketSize}`,
    };
  }

  #startFrame(total: number, first: Uint8Array): void {
    this.#frame = new Uint8Array(total);
    this.#frame.set(first, 0);
    this.#filled = first.length;
  }
}

/**
 * Total frame length (header included) from a fixed header at `bytes[at..end)`, "incomplete" when more
 * bytes are needed, or an error for a remaining length longer than four bytes [MQTT-1.5.5-1].
 */
function readFixedHeader(bytes: Uint8Array, at: number, end: number): number | "incomplete" | FrameError {
  let value = 0;
  let multiplier = 1;
  for (let i = 1; i <= 4; i++) {
    if (at + i >= end) return "incomplete";
    const byte = bytes[at + i];
    value += (byte & 0x7f) * multiplier;
    if ((byte & 0x80) === 0) return 1 + i + value;
    multiplier *= 128;
  }
  return { kind: "malformed", message: "remaining length is longer than four bytes" };
}

/** Length of the fixed header at the start of a buffer known to hold a complete one. */
export function fixedHeaderLength(bytes: Uint8Array): number {
  let i = 1;
  while (bytes[i] & 0x80) i++;
  return i + 1;
}
