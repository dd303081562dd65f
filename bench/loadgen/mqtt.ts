/**
 * The few MQTT 3.1.1 packets a load generator needs, encoded by hand, and a decoder that frames the
 * broker's byte stream into packets without copying or allocating per packet.
 */

export const CONNECT = 1;
export const CONNACK = 2;
export const PUBLISH = 3;
export const PUBACK = 4;
export const SUBSCRIBE = 8;
export const SUBACK = 9;
export const PINGREQ = 12;
export const PINGRESP = 13;
export const DISCONNECT = 14;

/** Largest packet accepted from the broker, as in mqttload. */
export const MAX_PACKET = 64 * 1024 * 1024;

const utf8 = new TextEncoder();

function varintLength(value: number): number {
  return value < 128 ? 1 : value < 16384 ? 2 : value < 2097152 ? 3 : 4;
}

function writeVarint(buf: Uint8Array, pos: number, value: number): number {
  do {
    let byte = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) byte |= 0x80;
    buf[pos++] = byte;
  } while (value > 0);
  return pos;
}

/** Fixed header `b0` + remaining length, then `body`. */
function frame(b0: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + varintLength(body.length) + body.length);
  out[0] = b0;
  out.set(body, writeVarint(out, 1, body.length));
  return out;
}

function str(s: string): Uint8Array {
  const bytes = utf8.encode(s);
  if (bytes.length > 65535) throw new RangeError("MQTT string longer than 65535 bytes");
  const out = new Uint8Array(2 + bytes.length);
  out[0] = bytes.length >> 8;
  out[1] = bytes.length & 0xff;
  out.set(bytes, 2);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

/** CONNECT, MQTT 3.1.1, clean session, no will, no credentials. */
export function encodeConnect(clientId: string, keepalive: number): Uint8Array {
  const flags = new Uint8Array([4, 0x02, keepalive >> 8, keepalive & 0xff]);
  return frame(CONNECT << 4, concat([str("MQTT"), flags, str(clientId)]));
}

/** SUBSCRIBE with one filter. */
export function encodeSubscribe(packetId: number, filter: string, qos: number): Uint8Array {
  return frame(
    (SUBSCRIBE << 4) | 0x02,
    concat([new Uint8Array([packetId >> 8, packetId & 0xff]), str(filter), new Uint8Array([qos])]),
  );
}

export const PINGREQ_PACKET: Uint8Array = new Uint8Array([PINGREQ << 4, 0]);
export const DISCONNECT_PACKET: Uint8Array = new Uint8Array([DISCONNECT << 4, 0]);
export const PUBACK_BYTES = 4;

export function writePuback(buf: Uint8Array, pos: number, packetId: number): void {
  buf[pos] = PUBACK << 4;
  buf[pos + 1] = 2;
  buf[pos + 2] = packetId >> 8;
  buf[pos + 3] = packetId & 0xff;
}

/**
 * A complete PUBLISH to copy per message: only the packet id (QoS 1) and the payload header change, so a
 * publisher patches a copy of these bytes instead of encoding anew.
 */
export interface PublishTemplate {
  readonly bytes: Uint8Array;
  /** Offset of the packet id, or -1 at QoS 0. */
  readonly packetIdOffset: number;
  readonly payloadOffset: number;
}

export function publishTemplate(topic: string, qos: 0 | 1, size: number): PublishTemplate {
  const name = str(topic);
  const body = new Uint8Array(name.length + (qos ? 2 : 0) + size);
  body.set(name, 0);
  const payloadAt = name.length + (qos ? 2 : 0);
  body.fill(0x78, payloadAt); // 'x', as mqttload pads
  const bytes = frame((PUBLISH << 4) | (qos << 1), body);
  const headerLength = bytes.length - body.length;
  return {
    bytes,
    packetIdOffset: qos ? headerLength + name.length : -1,
    payloadOffset: headerLength + payloadAt,
  };
}

export class MalformedPacket extends Error {}

/**
 * Frames packets out of a byte stream that arrives in arbitrary pieces. The owner reads straight into
 * `space()`, calls `commit(n)`, then `next()` until it returns false; after each true, the packet is
 * `buf[body .. body + length)` with first byte `b0`, valid until the next `space()`.
 */
export class FrameDecoder {
  buf: Uint8Array;
  b0 = 0;
  body = 0;
  length = 0;
  #start = 0;
  #end = 0;
  /** Bytes the packet at `#start` needs in all, once its header is known and it did not fit. */
  #need = 0;

  constructor(initial = 32 * 1024, readonly maxPacket: number = MAX_PACKET) {
    this.buf = new Uint8Array(initial);
  }

  /** Unparsed bytes held. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /**
   * The free space at the end, for the next read: at least `min` bytes, and room for the whole of a
   * packet whose start is held.
   */
  space(min: number): Uint8Array {
    // Everything consumed (the usual case): the whole buffer, without allocating a view per read.
    if (this.#end === 0 && this.#need === 0 && this.buf.length >= min) return this.buf;
    const held = this.#end - this.#start;
    const needed = Math.max(min, this.#need - held);
    if (this.buf.length - this.#end < needed) {
      if (this.#start > 0) {
        this.buf.copyWithin(0, this.#start, this.#end);
        this.#start = 0;
        this.#end = held;
      }
      if (this.buf.length - this.#end < needed) {
        let size = this.buf.length * 2;
        while (size - held < needed) size *= 2;
        const grown = new Uint8Array(size);
        grown.set(this.buf.subarray(0, held));
        this.buf = grown;
      }
    }
    return this.buf.subarray(this.#end);
  }

  commit(n: number): void {
    this.#end += n;
  }

  /** Copies `bytes` in (tests, and callers that do not read into `space()`). */
  push(bytes: Uint8Array): void {
    this.space(bytes.length).set(bytes);
    this.commit(bytes.length);
  }

  /** Frames the next complete packet; false when the rest is incomplete. Throws MalformedPacket. */
  next(): boolean {
    const buf = this.buf;
    const start = this.#start;
    const avail = this.#end - start;
    if (avail < 2) return this.#idle();
    let length = 0;
    let multiplier = 1;
    let pos = start + 1;
    for (let i = 0;; i++) {
      if (i === 4) throw new MalformedPacket("malformed remaining length");
      if (pos >= this.#end) return this.#idle();
      const byte = buf[pos++];
      length += (byte & 0x7f) * multiplier;
      if ((byte & 0x80) === 0) break;
      multiplier *= 128;
    }
    if (length > this.maxPacket) throw new MalformedPacket("malformed remaining length");
    const total = pos - start + length;
    if (avail < total) {
      this.#need = total;
      return false;
    }
    this.#need = 0;
    this.b0 = buf[start];
    this.body = pos;
    this.length = length;
    this.#start = start + total;
    return true;
  }

  #idle(): false {
    if (this.#start === this.#end) this.#start = this.#end = 0;
    return false;
  }
}
