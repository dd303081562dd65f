import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import { Buffer } from "node:buffer";
import { FrameReader } from "../../src/protocol/frame.ts";

function frames(reader: FrameReader, chunks: Uint8Array[]): { out: Uint8Array[]; error: string | null } {
  const out: Uint8Array[] = [];
  for (const chunk of chunks) {
    const error = reader.push(chunk, { frame: (f) => (out.push(f), true) });
    if (error) return { out, error: error.kind };
  }
  return { out, error: null };
}

const publish = (payloadSize: number) =>
  mqttPacket.generate({
    cmd: "publish",
    topic: "t",
    payload: Buffer.alloc(payloadSize, 7),
    qos: 0,
    retain: false,
    dup: false,
  });

Deno.test("frame: several packets in one chunk come out whole and in order", () => {
  const a = publish(3), b = publish(200), c = mqttPacket.generate({ cmd: "pingreq" });
  const { out, error } = frames(new FrameReader(1 << 20), [new Uint8Array([...a, ...b, ...c])]);
  assert.equal(error, null);
  assert.deepEqual(out.map((f) => [...f]), [[...a], [...b], [...c]]);
});

Deno.test("frame: a packet split at every possible byte boundary is reassembled", () => {
  const packet = publish(300); // two-byte remaining length, so the header itself can be split
  for (let cut = 1; cut < packet.length; cut++) {
    const { out } = frames(new FrameReader(1 << 20), [packet.subarray(0, cut), packet.subarray(cut)]);
    assert.deepEqual(out.map((f) => [...f]), [[...packet]], `split at ${cut}`);
  }
});

Deno.test("frame: one byte at a time", () => {
  const packet = publish(20000); // three-byte remaining length
  const { out } = frames(new FrameReader(1 << 20), [...packet].map((b) => new Uint8Array([b])));
  assert.equal(out.length, 1);
  assert.deepEqual([...out[0]], [...packet]);
});

Deno.test("frame: a frame whole in one chunk is a view into it (no copy); a split one has its own buffer", () => {
  // The transport hands over each chunk for good (src/transport/connection.ts), so views are safe and cheap.
  const packet = publish(4);
  const chunk = new Uint8Array([...packet, ...packet.subarray(0, 3)]);
  const reader = new FrameReader(1024);
  const first = frames(reader, [chunk]).out;
  assert.equal(first[0].buffer, chunk.buffer);
  const second = frames(reader, [packet.slice(3)]).out;
  assert.notEqual(second[0].buffer, chunk.buffer);
  chunk.fill(0);
  assert.deepEqual([...second[0]], [...packet]);
});

Deno.test("frame: [MQTT-1.5.5-1] a remaining length longer than four bytes is malformed", () => {
  const { error } = frames(new FrameReader(1 << 20), [new Uint8Array([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])]);
  assert.equal(error, "malformed");
});

Deno.test("frame: too large is refused from the fixed header alone, before the body", () => {
  const reader = new FrameReader(1024);
  // Announce 10 MB but send only the header: the error must come without waiting for the body.
  const { error } = frames(reader, [new Uint8Array([0x30, 0x80, 0xad, 0xe2, 0x04])]);
  assert.equal(error, "too_large");
  assert.equal(reader.pendingBytes, 0);
});

Deno.test("frame: a packet exactly at the maximum size is accepted, one byte more is not", () => {
  const packet = publish(100);
  assert.equal(frames(new FrameReader(packet.length), [packet]).out.length, 1);
  assert.equal(frames(new FrameReader(packet.length - 1), [packet]).error, "too_large");
});
