/**
 * WebSocket framing (RFC 6455 section 5), server side: client frames in, unmasked binary frames out. The
 * reader streams: a binary frame's payload is handed on as it arrives, in as many pieces as the socket reads
 * it, never buffered whole, so a frame costs no memory beyond its bytes in flight and the MQTT framer's own
 * size limit is the only one that applies. Pure: no I/O.
 */

/** Frame opcodes (section 5.2). */
const CONTINUATION = 0x0;
const TEXT = 0x1;
const BINARY = 0x2;
const CLOSE = 0x8;
const PING = 0x9;
const PONG = 0xa;

/** Close codes (section 7.4.1). */
export const CloseCode = {
  normal: 1000,
  protocolError: 1002,
  unsupportedData: 1003,
  invalidData: 1007,
} as const;

/** Close codes an endpoint may put in a close frame (RFC 6455 section 7.4): not 1004-1006 or 1015. */
function sendableCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

/**
 * Why the reading stopped: the peer's close frame (`peer`), or a frame the reader refuses, with the close
 * code to answer.
 */
export interface FrameEnd {
  readonly code: number;
  readonly reason: string;
  readonly peer: boolean;
}

/** A control frame's payload is at most 125 bytes; the longest header is 14. */
const MAX_CONTROL = 125;
const MAX_HEADER = 14;

export class FrameReader {
  /** A header split across reads, or a control frame's payload being gathered. */
  #pending = new Uint8Array(MAX_HEADER + MAX_CONTROL);
  #pendingLength = 0;
  /** Payload bytes of the current frame still to come; -1 while reading a header. */
  #remaining = -1;
  #opcode = 0;
  #mask = new Uint8Array(4);
  /** Payload bytes of the current frame read so far, for the mask's phase. */
  #offset = 0;
  /** A data message whose final frame has not come yet. */
  #fragmented = false;
  #failed = false;

  /**
   * Reads `chunk`, which becomes the reader's: binary payload is unmasked in place and handed to `data` as
   * views into it, a ping's payload to `ping`. Returns why to close, after which it reads nothing more.
   */
  read(
    chunk: Uint8Array,
    data: (bytes: Uint8Array) => void,
    ping: (payload: Uint8Array) => void,
  ): FrameEnd | undefined {
    if (this.#failed) return undefined;
    let at = 0;
    while (at < chunk.length) {
      if (this.#remaining < 0) {
        const header = this.#readHeader(chunk, at);
        if (header === undefined) return undefined; // The rest of the header is in a later read.
        at = header.next;
        if (header.event) return this.#fail(header.event);
        if (this.#remaining === 0 && this.#opcode >= CLOSE) {
          const event = this.#control(new Uint8Array(0), ping);
          if (event) return event;
        }
        continue;
      }
      const take = Math.min(this.#remaining, chunk.length - at);
      const piece = chunk.subarray(at, at + take);
      unmask(piece, this.#mask, this.#offset);
      at += take;
      this.#offset += take;
      this.#remaining -= take;
      if (this.#opcode >= CLOSE) {
        this.#pending.set(piece, this.#pendingLength);
        this.#pendingLength += take;
        if (this.#remaining === 0) {
          const event = this.#control(this.#pending.slice(0, this.#pendingLength), ping);
          this.#pendingLength = 0;
          if (event) return event;
        }
      } else if (take > 0) {
        data(piece);
      }
      if (this.#remaining === 0) this.#remaining = -1;
    }
    return undefined;
  }

  /** Parses a header starting at `at` (after any part kept from earlier reads). */
  #readHeader(
    chunk: Uint8Array,
    at: number,
  ): { next: number; event?: FrameEnd } | undefined {
    // Gather into #pending until the whole header is there; most headers arrive whole, but not all.
    const kept = this.#pendingLength;
    const available = Math.min(MAX_HEADER - kept, chunk.length - at);
    this.#pending.set(chunk.subarray(at, at + available), kept);
    const bytes = this.#pending;
    const have = kept + available;
    if (have < 2) return this.#keep(have);
    const fin = (bytes[0] & 0x80) !== 0;
    const opcode = bytes[0] & 0x0f;
    // Judged from the first two bytes: an unmasked frame has no mask to wait for.
    if ((bytes[0] & 0x70) !== 0) return { next: chunk.length, event: protocolError("reserved bits set") };
    if ((bytes[1] & 0x80) === 0) {
      return { next: chunk.length, event: protocolError("client frame not masked") };
    }
    let length = bytes[1] & 0x7f;
    const lengthBytes = length === 126 ? 2 : length === 127 ? 8 : 0;
    const size = 2 + lengthBytes + 4;
    if (have < size) return this.#keep(have);
    const next = at + size - kept;
    this.#pendingLength = 0;
    if (lengthBytes === 2) length = (bytes[2] << 8) | bytes[3];
    if (lengthBytes === 8) {
      if (bytes[2] & 0x80) return { next, event: protocolError("frame length over 2^63") };
      // Above 2^53 the number is no longer exact, but no MQTT packet is anywhere near that (256 MB at most).
      length = 0;
      for (let i = 2; i < 10; i++) length = length * 256 + bytes[i];
    }
    this.#mask.set(bytes.subarray(2 + lengthBytes, size));
    this.#offset = 0;
    this.#remaining = length;
    this.#opcode = opcode;
    const event = this.#checkOpcode(opcode, fin, length);
    return event ? { next, event } : { next };
  }

  #keep(have: number): undefined {
    this.#pendingLength = have;
    return undefined;
  }

  #checkOpcode(opcode: number, fin: boolean, length: number): FrameEnd | undefined {
    switch (opcode) {
      case TEXT:
        // MQTT 5.0 section 6 / 3.1.1 section 6: only binary frames carry MQTT.
        return { code: CloseCode.unsupportedData, reason: "MQTT needs binary frames", peer: false };
      case BINARY:
        if (this.#fragmented) return protocolError("new message inside a fragmented one");
        this.#fragmented = !fin;
        return undefined;
      case CONTINUATION:
        if (!this.#fragmented) return protocolError("continuation frame without a message");
        this.#fragmented = !fin;
        return undefined;
      case CLOSE:
      case PING:
      case PONG:
        if (!fin) return protocolError("fragmented control frame");
        if (length > MAX_CONTROL) return protocolError("control frame over 125 bytes");
        return undefined;
      default:
        return protocolError(`unknown opcode ${opcode}`);
    }
  }

  /** A whole control frame: why to close, if it says so. */
  #control(payload: Uint8Array, ping: (payload: Uint8Array) => void): FrameEnd | undefined {
    this.#remaining = -1;
    switch (this.#opcode) {
      case PING:
        ping(payload);
        return undefined;
      case CLOSE: {
        if (payload.length === 1) return this.#fail(protocolError("close frame of 1 byte"));
        const code = payload.length >= 2 ? (payload[0] << 8) | payload[1] : CloseCode.normal;
        if (!sendableCode(code)) return this.#fail(protocolError(`close code ${code} may not be sent`));
        let reason: string;
        try {
          reason = new TextDecoder("utf-8", { fatal: true }).decode(payload.subarray(2));
        } catch {
          return this.#fail({ code: CloseCode.invalidData, reason: "close reason not UTF-8", peer: false });
        }
        return this.#fail({ code, reason, peer: true });
      }
      default:
        return undefined; // A pong: nothing to do (the broker sends no pings).
    }
  }

  #fail(event: FrameEnd): FrameEnd {
    this.#failed = true;
    return event;
  }
}

function protocolError(reason: string): FrameEnd {
  return { code: CloseCode.protocolError, reason, peer: false };
}

/** XORs `bytes` in place with the mask, starting at the mask's phase `offset`. */
function unmask(bytes: Uint8Array, mask: Uint8Array, offset: number): void {
  for (let i = 0; i < bytes.length; i++) bytes[i] ^= mask[(offset + i) & 3];
}

/** The header of an unmasked server frame with FIN set: `opcode`, `length` payload bytes. */
export function frameHeader(opcode: number, length: number): Uint8Array {
  if (length < 126) return Uint8Array.of(0x80 | opcode, length);
  if (length < 0x10000) return Uint8Array.of(0x80 | opcode, 126, length >> 8, length & 0xff);
  const header = new Uint8Array(10);
  header[0] = 0x80 | opcode;
  header[1] = 127;
  // Lengths here are far below 2^32; the high four bytes stay 0.
  new DataView(header.buffer).setUint32(6, length);
  return header;
}

/** Opcodes a server sends. */
export const Opcode = { binary: BINARY, close: CLOSE, pong: PONG } as const;

/** A close frame's payload: the code, then the reason (at most 123 bytes of it). */
export function closePayload(code: number, reason: string): Uint8Array {
  let text = new TextEncoder().encode(reason);
  if (text.length > MAX_CONTROL - 2) {
    // Cut before a character's first byte, so the reason stays UTF-8 (RFC 6455 section 8.1).
    let end = MAX_CONTROL - 2;
    while ((text[end] & 0xc0) === 0x80) end--;
    text = text.subarray(0, end);
  }
  const payload = new Uint8Array(2 + text.length);
  payload[0] = code >> 8;
  payload[1] = code & 0xff;
  payload.set(text, 2);
  return payload;
}
