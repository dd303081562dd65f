import assert from "node:assert/strict";
import { type Message, storedCopy } from "../../src/broker/message.ts";

/** A message whose frame is a view into a larger network chunk, the way FrameReader hands them out. */
function messageInChunk(): { message: Message; chunk: Uint8Array } {
  const chunk = new Uint8Array(4096).fill(0xee);
  const frame = chunk.subarray(100, 100 + 9);
  frame.set([0x30, 7, 0, 1, 0x74, 0x61, 0x62, 0x63, 0x64]); // PUBLISH "t" QoS 0, payload "abcd"
  const message: Message = {
    topic: "t",
    topicBytes: frame.subarray(4, 5),
    payload: frame.subarray(5),
    qos: 0,
    retain: true,
    frame,
  };
  return { message, chunk };
}

Deno.test("storedCopy: the kept message owns a buffer the size of its frame, not the chunk", () => {
  const { message, chunk } = messageInChunk();
  const kept = storedCopy(message);
  assert.equal(kept.frame!.buffer.byteLength, 9);
  assert.equal(kept.payload.buffer, kept.frame!.buffer);
  assert.equal(kept.topicBytes!.buffer, kept.frame!.buffer);
  chunk.fill(0);
  assert.deepEqual([...kept.payload], [0x61, 0x62, 0x63, 0x64]);
  assert.deepEqual([...kept.topicBytes!], [0x74]);
  assert.equal(kept.topic, "t");
  assert.equal(kept.retain, true);
});

Deno.test("storedCopy: made once per message and shared, and a copy of a copy is itself", () => {
  const { message } = messageInChunk();
  const kept = storedCopy(message);
  assert.equal(storedCopy(message), kept);
  assert.equal(storedCopy(kept), kept);
});

Deno.test("storedCopy: a message without a frame (a will) gets its own payload and properties", () => {
  const chunk = new Uint8Array([1, 2, 3, 4, 0x26, 0, 1, 0x6b, 0, 1, 0x76]);
  const message: Message = {
    topic: "w",
    payload: chunk.subarray(0, 4),
    properties: chunk.subarray(4),
    qos: 1,
    retain: false,
  };
  const kept = storedCopy(message);
  chunk.fill(0);
  assert.deepEqual([...kept.payload], [1, 2, 3, 4]);
  assert.deepEqual([...kept.properties!], [0x26, 0, 1, 0x6b, 0, 1, 0x76]);
});

Deno.test("copyBytes: a real copy even of a Node Buffer, whose slice() is a view", async () => {
  const { Buffer } = await import("node:buffer");
  const { copyBytes } = await import("../../src/protocol/fields.ts");
  const chunk = Buffer.from([1, 2, 3, 4]);
  const view = chunk.slice(1, 3);
  const copy = copyBytes(chunk.subarray(1, 3));
  chunk.fill(9);
  assert.deepEqual([...view], [9, 9], "the premise: Buffer.slice shares memory");
  assert.deepEqual([...copy], [2, 3]);
});

Deno.test("Session.compactMessages: queued messages of a session gone offline stop holding their chunks", async () => {
  const { Session } = await import("../../src/broker/session.ts");
  const session = new Session("s", 60);
  const { message } = messageInChunk();
  for (let i = 0; i < 3; i++) {
    session.enqueue({
      message,
      qos: 1,
      retain: false,
      subscriptionIds: undefined,
      share: undefined,
      packetId: 0,
      released: false,
    });
  }
  session.dequeue();
  const sent = {
    message,
    qos: 1 as const,
    retain: false,
    subscriptionIds: undefined,
    share: undefined,
    packetId: 0,
    released: false,
  };
  session.addInflight(sent);
  session.compactMessages(storedCopy);
  assert.equal(session.inflight.get(sent.packetId)!.message.frame!.buffer.byteLength, 9, "inflight too");
  assert.equal(session.queued, 2);
  for (let next = session.dequeue(); next; next = session.dequeue()) {
    assert.equal(next.message.frame!.buffer.byteLength, 9);
  }
});
