/**
 * The server-side RFC 6455 frame reader (src/transport/websocket_frames.ts) on frames built here, by a
 * small encoder of the test's own (never the module's): streaming reads cut at every point, lengths of each
 * size, control frames inside fragmented messages, the close frame, and every frame the reader must refuse.
 * Also the server's frame header and close payload, against values computed by hand.
 */

import assert from "node:assert/strict";
import {
  CloseCode,
  closePayload,
  type FrameEnd,
  frameHeader,
  FrameReader,
  Opcode,
} from "../../src/transport/websocket_frames.ts";
import { concat, pattern } from "../helpers/bytes.ts";

// --- A client frame encoder of the test's own -----------------------------------------------------------

const CONTINUATION = 0x0, TEXT = 0x1, BINARY = 0x2, CLOSE = 0x8, PING = 0x9, PONG = 0xa;

interface FrameOptions {
  fin?: boolean;
  /** The three reserved bits, as a number 0-7 (RSV1 is 4). */
  rsv?: number;
  /** False: no mask bit, no masking key (what a server sends, and a client must not). */
  masked?: boolean;
  mask?: readonly number[];
  /** Force the 64-bit length form with these 8 bytes (the payload is then `payload` whatever they say). */
  length64?: readonly number[];
}

/** One frame as a client writes it: masked unless told otherwise, the length in its shortest form. */
function frame(
  opcode: number,
  payload: Uint8Array | number[] | string,
  options: FrameOptions = {},
): Uint8Array {
  const body = typeof payload === "string"
    ? new TextEncoder().encode(payload)
    : payload instanceof Uint8Array
    ? payload
    : Uint8Array.from(payload);
  const { fin = true, rsv = 0, masked = true, mask = [0x37, 0xfa, 0x21, 0x3d] } = options;
  const n = body.length;
  const maskBit = masked ? 0x80 : 0;
  let length: number[];
  if (options.length64) length = [maskBit | 127, ...options.length64];
  else if (n < 126) length = [maskBit | n];
  else if (n < 65536) length = [maskBit | 126, Math.floor(n / 256), n % 256];
  else {
    // Eight bytes, big-endian, by division: no DataView or shifts shared with the module.
    const bytes: number[] = [];
    let rest = n;
    for (let i = 0; i < 8; i++) {
      bytes.unshift(rest % 256);
      rest = Math.floor(rest / 256);
    }
    length = [maskBit | 127, ...bytes];
  }
  const head = [(fin ? 0x80 : 0) | (rsv << 4) | opcode, ...length, ...(masked ? mask : [])];
  const out = new Uint8Array(head.length + n);
  out.set(head);
  for (let i = 0; i < n; i++) out[head.length + i] = masked ? body[i] ^ mask[i % 4] : body[i];
  return out;
}

/** Joins byte runs. */
function cat(...parts: Uint8Array[]): Uint8Array {
  return concat(parts);
}

// --- Driving the reader ----------------------------------------------------------------------------

interface Outcome {
  /** Every payload piece handed to `data`, copied. */
  pieces: Uint8Array[];
  /** The pieces joined. */
  data: Uint8Array;
  /** Every ping payload, copied. */
  pings: Uint8Array[];
  /** What each read returned. */
  ends: (FrameEnd | undefined)[];
  /** The one end, if any read returned one. */
  end: FrameEnd | undefined;
}

/** Feeds `chunks` (each copied first: the reader unmasks in place) to `reader` in order. */
function feed(chunks: Uint8Array[], reader = new FrameReader()): Outcome {
  const pieces: Uint8Array[] = [];
  const pings: Uint8Array[] = [];
  const ends: (FrameEnd | undefined)[] = [];
  for (const chunk of chunks) {
    ends.push(reader.read(
      chunk.slice(),
      (bytes) => pieces.push(bytes.slice()),
      (payload) => pings.push(payload.slice()),
    ));
  }
  const found = ends.filter((e) => e !== undefined);
  assert.ok(found.length <= 1, `more than one read returned an end: ${JSON.stringify(ends)}`);
  return { pieces, data: cat(...pieces), pings, ends, end: found[0] };
}

/** `bytes` cut at `points` (ascending offsets). */
function cutAt(bytes: Uint8Array, ...points: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let from = 0;
  for (const point of points) {
    out.push(bytes.subarray(from, point));
    from = point;
  }
  out.push(bytes.subarray(from));
  return out;
}

/** `bytes` one byte per read. */
function bytewise(bytes: Uint8Array): Uint8Array[] {
  return Array.from(bytes, (b) => Uint8Array.of(b));
}

const protocolError = (reason: string): FrameEnd => ({ code: 1002, reason, peer: false });

/** Asserts `chunks` end the reading with `expected`, having delivered `before` bytes of data first. */
function assertRefused(
  chunks: Uint8Array[],
  expected: FrameEnd,
  before: Uint8Array = new Uint8Array(0),
): void {
  const outcome = feed(chunks);
  assert.deepEqual(outcome.end, expected);
  assert.deepEqual(outcome.data, before);
  assert.deepEqual(outcome.pings, []);
}

// --- Binary data -------------------------------------------------------------------------------------

Deno.test("frames: one masked binary frame is unmasked and handed on whole", () => {
  const payload = pattern(100);
  const { pieces, data, end, pings } = feed([frame(BINARY, payload)]);
  assert.equal(end, undefined);
  assert.equal(pieces.length, 1);
  assert.deepEqual(data, payload);
  assert.deepEqual(pings, []);
});

Deno.test("frames: a frame cut at every byte boundary, header and payload, gives the same data", () => {
  for (const size of [0, 1, 5, 125, 126, 300]) {
    const payload = pattern(size, size);
    const whole = frame(BINARY, payload, { mask: [0x01, 0x80, 0xfe, 0x7f] });
    for (let cut = 0; cut <= whole.length; cut++) {
      const outcome = feed(cutAt(whole, cut));
      assert.equal(outcome.end, undefined, `size ${size}, cut at ${cut}`);
      assert.deepEqual(outcome.data, payload, `size ${size}, cut at ${cut}`);
    }
    // And at two points, across the header and into the payload.
    for (let a = 0; a < Math.min(whole.length, 12); a++) {
      for (let b = a; b <= whole.length; b += 7) {
        assert.deepEqual(feed(cutAt(whole, a, b)).data, payload, `size ${size}, cut at ${a} and ${b}`);
      }
    }
    assert.deepEqual(feed(bytewise(whole)).data, payload, `size ${size}, one byte per read`);
  }
});

Deno.test("frames: 16-bit lengths (126, 65535) and 64-bit lengths (65536, 200000) are read exactly", () => {
  for (const size of [126, 1000, 65535, 65536, 200_000]) {
    const payload = pattern(size, size);
    const whole = frame(BINARY, payload);
    assert.equal(whole[1] & 0x7f, size < 65536 ? 126 : 127, `size ${size} length form`);
    const header = size < 65536 ? 8 : 14;
    // Whole, cut inside the header at each point, and cut inside the payload at a few.
    const cuts = [
      [],
      ...Array.from({ length: header }, (_, i) => [i + 1]),
      // In order and inside the frame (126 bytes is shorter than header + 4097).
      [...new Set([header + 1, header + 4097, whole.length - 3])].filter((p) => p < whole.length).sort((
        a,
        b,
      ) => a - b),
    ];
    for (const points of cuts) {
      const outcome = feed(cutAt(whole, ...points));
      assert.equal(outcome.end, undefined, `size ${size}, cut at ${points}`);
      assert.equal(outcome.data.length, size, `size ${size}, cut at ${points}`);
      assert.deepEqual(outcome.data, payload, `size ${size}, cut at ${points}`);
    }
  }
});

Deno.test("frames: a frame followed by the next one in the same read: both, in order; the rest of a header waits", () => {
  const [a, b, c] = [pattern(10, 1), pattern(200, 2), pattern(3, 3)];
  const stream = cat(frame(BINARY, a), frame(BINARY, b), frame(PING, "hi"), frame(BINARY, c));
  const outcome = feed([stream]);
  assert.equal(outcome.end, undefined);
  assert.deepEqual(outcome.pieces, [a, b, c]);
  assert.deepEqual(outcome.pings, [new TextEncoder().encode("hi")]);
  // The same stream cut at every point into two reads.
  for (let cut = 0; cut <= stream.length; cut++) {
    const split = feed(cutAt(stream, cut));
    assert.deepEqual(split.data, cat(a, b, c), `cut at ${cut}`);
    assert.equal(split.pings.length, 1, `cut at ${cut}`);
  }
});

Deno.test("frames: a zero-length binary frame delivers nothing and the next frame is read", () => {
  const payload = pattern(9);
  const alone = feed([frame(BINARY, [])]);
  assert.deepEqual([alone.end, alone.pieces], [undefined, []]);
  for (
    const chunks of [
      [cat(frame(BINARY, []), frame(BINARY, payload))],
      [frame(BINARY, []), frame(BINARY, payload)],
      bytewise(cat(frame(BINARY, []), frame(BINARY, []), frame(BINARY, payload))),
      [cat(frame(BINARY, [], { fin: false }), frame(CONTINUATION, []), frame(BINARY, payload))],
    ]
  ) {
    const outcome = feed(chunks);
    assert.equal(outcome.end, undefined);
    assert.ok(outcome.pieces.every((p) => p.length > 0), "no empty pieces handed on");
    assert.deepEqual(outcome.data, payload);
  }
});

Deno.test("frames: the mask's phase carries across reads that split the payload at offsets 1, 2, 3 mod 4", () => {
  const payload = pattern(23);
  const mask = [0xa1, 0xb2, 0xc3, 0xd4];
  const whole = frame(BINARY, payload, { mask });
  const header = 6;
  for (const first of [1, 2, 3, 5, 6, 7, 9, 10, 11]) {
    const outcome = feed(cutAt(whole, header + first));
    assert.deepEqual(outcome.data, payload, `payload split after ${first} bytes`);
    assert.deepEqual(outcome.pieces.map((p) => p.length), [first, payload.length - first]);
  }
  // Many pieces of 1, 2 and 3 bytes: every phase follows every other.
  const points: number[] = [];
  for (let at = header, step = 1; at < whole.length; at += step, step = step % 3 + 1) points.push(at);
  const outcome = feed(cutAt(whole, ...points));
  assert.deepEqual(outcome.data, payload);
  // And the phase restarts at 0 with the next frame's own mask.
  const second = frame(BINARY, payload, { mask: [0x10, 0x20, 0x30, 0x40] });
  assert.deepEqual(
    feed(cutAt(cat(whole, second), header + 5, whole.length + 6 + 2)).data,
    cat(payload, payload),
  );
});

Deno.test("frames: the pieces are views of the read chunk, unmasked in place", () => {
  const reader = new FrameReader();
  const payload = pattern(20);
  const chunk = frame(BINARY, payload);
  const seen: Uint8Array[] = [];
  reader.read(chunk, (bytes) => seen.push(bytes), () => {});
  assert.equal(seen.length, 1);
  assert.equal(seen[0].buffer, chunk.buffer);
  assert.deepEqual(chunk.subarray(6), payload);
});

// --- Fragmented messages and control frames -------------------------------------------------------------

Deno.test("frames: a binary message in continuation frames is one stream of data", () => {
  const [a, b, c] = [pattern(4, 1), pattern(130, 2), pattern(1, 3)];
  const stream = cat(
    frame(BINARY, a, { fin: false }),
    frame(CONTINUATION, b, { fin: false }),
    frame(CONTINUATION, c),
    // After the final frame, a new message may start.
    frame(BINARY, a),
  );
  for (const chunks of [[stream], bytewise(stream)]) {
    const outcome = feed(chunks);
    assert.equal(outcome.end, undefined);
    assert.deepEqual(outcome.data, cat(a, b, c, a));
  }
});

Deno.test("frames: a ping inside a fragmented message calls ping and the data continues; a pong is ignored", () => {
  const [a, b] = [pattern(50, 1), pattern(60, 2)];
  const stream = cat(
    frame(BINARY, a, { fin: false }),
    frame(PING, "are you there", { mask: [9, 8, 7, 6] }),
    frame(CONTINUATION, b, { fin: false }),
    frame(PONG, "unsolicited"),
    frame(PING, []),
    frame(CONTINUATION, a),
  );
  for (const chunks of [[stream], bytewise(stream), cutAt(stream, 30, 70, 100)]) {
    const outcome = feed(chunks);
    assert.equal(outcome.end, undefined);
    assert.deepEqual(outcome.data, cat(a, b, a));
    assert.deepEqual(outcome.pings.map((p) => new TextDecoder().decode(p)), ["are you there", ""]);
  }
});

Deno.test("frames: a pong alone delivers nothing and calls nothing", () => {
  const outcome = feed([frame(PONG, "x"), frame(PONG, []), frame(PONG, pattern(125))]);
  assert.deepEqual([outcome.end, outcome.pieces, outcome.pings], [undefined, [], []]);
});

Deno.test("frames: a ping's payload, up to 125 bytes and split over reads, is handed over whole and unmasked", () => {
  for (const size of [0, 1, 4, 125]) {
    const payload = pattern(size, size);
    const whole = frame(PING, payload);
    for (const chunks of [[whole], bytewise(whole), cutAt(whole, 7)]) {
      const outcome = feed(chunks);
      assert.equal(outcome.end, undefined);
      assert.deepEqual(outcome.pings, [payload], `size ${size}`);
      assert.deepEqual(outcome.pieces, []);
    }
  }
});

// --- The close frame -----------------------------------------------------------------------------------

Deno.test("frames: a close frame with a code and a reason ends the reading with both (peer: true)", () => {
  const payload = [0x0f, 0xa0, ...new TextEncoder().encode("going away, ça va")]; // 4000
  const whole = frame(CLOSE, payload);
  for (const chunks of [[whole], bytewise(whole), cutAt(whole, 3, 9)]) {
    const outcome = feed(chunks);
    assert.deepEqual(outcome.end, { code: 4000, reason: "going away, ça va", peer: true });
    assert.equal(outcome.ends.at(-1), outcome.end, "the read holding the frame's last byte returns it");
  }
  assert.deepEqual(feed([frame(CLOSE, [0x03, 0xe9])]).end, { code: 1001, reason: "", peer: true });
});

Deno.test("frames: a close frame without a payload is code 1000", () => {
  assert.deepEqual(feed([frame(CLOSE, [])]).end, { code: 1000, reason: "", peer: true });
  assert.deepEqual(feed(bytewise(frame(CLOSE, []))).end, { code: 1000, reason: "", peer: true });
});

Deno.test("frames: a close frame with a 1-byte payload is a protocol error (1002)", () => {
  assertRefused([frame(CLOSE, [0x03])], protocolError("close frame of 1 byte"));
});

Deno.test("frames: after an end, further reads deliver nothing, in the same read or later ones", () => {
  const data = pattern(8);
  const ends = [
    frame(CLOSE, [0x03, 0xe8]),
    frame(TEXT, "text"),
    frame(BINARY, data, { masked: false }),
    frame(CLOSE, [7]),
  ];
  for (const ending of ends) {
    const reader = new FrameReader();
    // Data before the end is delivered; frames after it in the same read are not.
    const first = feed([cat(frame(BINARY, data), ending, frame(BINARY, data), frame(PING, "p"))], reader);
    assert.ok(first.end, "the end");
    assert.deepEqual(first.data, data);
    assert.deepEqual(first.pings, []);
    // Later reads: nothing at all, and no second end.
    const later = feed([frame(BINARY, data), frame(PING, "p"), frame(CLOSE, [])], reader);
    assert.deepEqual([later.pieces, later.pings, later.ends], [[], [], [undefined, undefined, undefined]]);
  }
});

// --- Frames the reader refuses ---------------------------------------------------------------------------

Deno.test("frames: a reserved bit set (RSV1, RSV2, RSV3) is a protocol error, on data and control frames", () => {
  for (const rsv of [1, 2, 4, 7]) {
    for (const opcode of [BINARY, PING, CLOSE]) {
      const bad = frame(opcode, [1, 2], { rsv });
      assertRefused([bad], protocolError("reserved bits set"));
      assertRefused(bytewise(bad), protocolError("reserved bits set"));
    }
  }
});

Deno.test("frames: an unmasked client frame is a protocol error, data or control", () => {
  for (const opcode of [BINARY, PING, CLOSE, CONTINUATION]) {
    assertRefused([frame(opcode, [1, 2, 3, 4], { masked: false })], protocolError("client frame not masked"));
    assertRefused([frame(opcode, pattern(300), { masked: false })], protocolError("client frame not masked"));
  }
  // After good data in the same read, the good data is delivered first.
  const good = pattern(5);
  assertRefused(
    [cat(frame(BINARY, good), frame(BINARY, good, { masked: false }))],
    protocolError("client frame not masked"),
    good,
  );
});

Deno.test({
  // Bug: the reader takes every header to have a 4-byte masking key, whatever the mask bit says, so an
  // unmasked frame is refused only once 4 bytes past its length field have come. An unmasked frame with a
  // payload under 4 bytes (a 2-byte PINGREQ, an empty ping or close) that nothing follows is never refused:
  // the peer waits for its answer and the broker for the rest of a header that does not exist.
  name: "frames: an unmasked frame with a payload under 4 bytes is refused as soon as its header is read",
  // A regression test: found by review, fixed in websocket_frames.ts.
  fn() {
    for (const payload of [[], [0xc0], [0xc0, 0x00], [1, 2, 3]]) {
      for (const opcode of [BINARY, PING, CLOSE]) {
        assertRefused([frame(opcode, payload, { masked: false })], protocolError("client frame not masked"));
      }
    }
  },
});

Deno.test("frames: an unknown opcode (3-7, 0xB-0xF) is a protocol error", () => {
  for (const opcode of [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]) {
    assertRefused([frame(opcode, [0])], protocolError(`unknown opcode ${opcode}`));
  }
});

Deno.test("frames: a text frame is refused with 1003 (MQTT needs binary frames)", () => {
  const expected = { code: CloseCode.unsupportedData, reason: "MQTT needs binary frames", peer: false };
  assert.equal(expected.code, 1003);
  assertRefused([frame(TEXT, "hello")], expected);
  assertRefused([frame(TEXT, [])], expected);
  assertRefused([frame(TEXT, "hel", { fin: false })], expected);
  assertRefused(bytewise(frame(TEXT, "hello")), expected);
});

Deno.test("frames: a fragmented control frame is a protocol error", () => {
  for (const opcode of [PING, PONG, CLOSE]) {
    assertRefused([frame(opcode, [0x03, 0xe8], { fin: false })], protocolError("fragmented control frame"));
  }
});

Deno.test("frames: a control frame over 125 bytes is a protocol error; 125 is fine", () => {
  for (const opcode of [PING, PONG, CLOSE]) {
    assertRefused([frame(opcode, pattern(126))], protocolError("control frame over 125 bytes"));
    assertRefused([frame(opcode, pattern(1000))], protocolError("control frame over 125 bytes"));
  }
  assert.equal(feed([frame(PING, pattern(125))]).end, undefined);
  assert.equal(feed([frame(PONG, pattern(125))]).end, undefined);
  assert.equal(feed([frame(CLOSE, [0x03, 0xe8, ...new Array(123).fill(0x61)])]).end?.peer, true);
});

Deno.test("frames: a close code that may not be sent is a protocol error; a reason not UTF-8 is 1007", () => {
  for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000]) {
    assertRefused(
      [frame(CLOSE, [code >> 8, code & 0xff])],
      protocolError(`close code ${code} may not be sent`),
    );
  }
  for (const code of [1000, 1001, 1003, 1007, 1014, 3000, 4999]) {
    assert.deepEqual(feed([frame(CLOSE, [code >> 8, code & 0xff])]).end, { code, reason: "", peer: true });
  }
  assert.deepEqual(feed([frame(CLOSE, [0x03, 0xe8, 0xc3, 0x28])]).end, {
    code: 1007,
    reason: "close reason not UTF-8",
    peer: false,
  });
});

Deno.test("frames: a continuation frame without a message started is a protocol error", () => {
  assertRefused([frame(CONTINUATION, [1])], protocolError("continuation frame without a message"));
  // Also after a message that has ended.
  const a = pattern(3);
  assertRefused(
    [cat(frame(BINARY, a, { fin: false }), frame(CONTINUATION, a), frame(CONTINUATION, a))],
    protocolError("continuation frame without a message"),
    cat(a, a),
  );
});

Deno.test("frames: a new binary frame inside a fragmented message is a protocol error", () => {
  const a = pattern(3);
  assertRefused(
    [frame(BINARY, a, { fin: false }), frame(BINARY, a)],
    protocolError("new message inside a fragmented one"),
    a,
  );
  assertRefused(
    [cat(frame(BINARY, a, { fin: false }), frame(PONG, []), frame(BINARY, a, { fin: false }))],
    protocolError("new message inside a fragmented one"),
    a,
  );
});

Deno.test("frames: a 64-bit length with the top bit set is a protocol error", () => {
  const bad = frame(BINARY, [], { length64: [0x80, 0, 0, 0, 0, 0, 0, 1] });
  assert.equal(bad.length, 14);
  assertRefused([bad], protocolError("frame length over 2^63"));
  assertRefused(bytewise(bad), protocolError("frame length over 2^63"));
  // Just under the limit is a length (huge, never complete), not an error.
  const huge = frame(BINARY, [], { length64: [0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff] });
  assert.equal(feed([huge, pattern(100)]).end, undefined);
});

// --- What the server writes ----------------------------------------------------------------------------

Deno.test("frames: frameHeader for lengths 0, 125, 126, 65535, 65536, 1e6 (FIN, no mask, shortest length)", () => {
  const cases: [number, number[]][] = [
    [0, [0x82, 0x00]],
    [125, [0x82, 0x7d]],
    [126, [0x82, 0x7e, 0x00, 0x7e]],
    [65535, [0x82, 0x7e, 0xff, 0xff]],
    [65536, [0x82, 0x7f, 0, 0, 0, 0, 0x00, 0x01, 0x00, 0x00]],
    // 1,000,000 = 0x000F4240
    [1_000_000, [0x82, 0x7f, 0, 0, 0, 0, 0x00, 0x0f, 0x42, 0x40]],
  ];
  for (const [length, expected] of cases) {
    assert.deepEqual([...frameHeader(Opcode.binary, length)], expected, `length ${length}`);
  }
  assert.deepEqual([...frameHeader(Opcode.close, 2)], [0x88, 0x02]);
  assert.deepEqual([...frameHeader(Opcode.pong, 0)], [0x8a, 0x00]);
  assert.deepEqual(Opcode, { binary: 2, close: 8, pong: 10 });
});

Deno.test("frames: closePayload is the code big-endian, then the reason, cut to 123 bytes", () => {
  assert.deepEqual([...closePayload(1000, "")], [0x03, 0xe8]);
  assert.deepEqual([...closePayload(CloseCode.protocolError, "bad")], [0x03, 0xea, 0x62, 0x61, 0x64]);
  assert.deepEqual([...closePayload(4999, "")], [0x13, 0x87]);
  const long = "x".repeat(200);
  const payload = closePayload(1011, long);
  assert.equal(payload.length, 125);
  assert.deepEqual([...payload.subarray(0, 2)], [0x03, 0xf3]);
  assert.equal(new TextDecoder().decode(payload.subarray(2)), "x".repeat(123));
  assert.equal(closePayload(1000, "y".repeat(123)).length, 125);
  assert.equal(closePayload(1000, "y".repeat(124)).length, 125);
  assert.deepEqual(CloseCode, {
    normal: 1000,
    protocolError: 1002,
    unsupportedData: 1003,
    invalidData: 1007,
  });
});

Deno.test({
  // Latent bug: closePayload cuts the reason at 123 bytes, not at a character boundary, so a long reason
  // with multi-byte characters ends in a broken UTF-8 sequence, and RFC 6455 section 8.1 has the client fail
  // the connection (1007) instead of closing cleanly. Unreachable today: every reason the broker sends is
  // ASCII (the reader's own fixed strings).
  name: "frames: closePayload keeps the reason valid UTF-8 when it cuts it",
  // A regression test: found by review, fixed in websocket_frames.ts.
  fn() {
    const payload = closePayload(1000, "é".repeat(100)); // 200 bytes
    assert.ok(payload.length <= 125);
    const reason = new TextDecoder("utf-8", { fatal: true }).decode(payload.subarray(2));
    assert.equal(reason, "é".repeat(61));
  },
});

Deno.test("frames: a server frame (unmasked) fed back to the reader is refused: the reader is the server's", () => {
  const body = pattern(10);
  const serverFrame = cat(frameHeader(Opcode.binary, body.length), body);
  assertRefused([serverFrame], protocolError("client frame not masked"));
});
