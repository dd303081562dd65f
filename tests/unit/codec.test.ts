import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import { Buffer } from "node:buffer";
import { decodePacket } from "../../src/protocol/codec.ts";
import { encodeAck, encodePublish } from "../../src/protocol/hot.ts";
import { withPacketId } from "../helpers/bytes.ts";

const utf8 = (text: string) => new TextEncoder().encode(text);

Deno.test("codec: the PUBLISH encoder writes what mqtt-packet writes, for every QoS, flag and size", () => {
  for (const qos of [0, 1, 2] as const) {
    for (const retain of [false, true]) {
      for (const size of [0, 5, 200, 70000]) {
        const payload = Buffer.alloc(size, 0x61);
        const topic = "sensors/ü/temp";
        const ours = withPacketId(encodePublish(utf8(topic), payload, qos, retain), 513);
        const theirs = mqttPacket.generate({
          cmd: "publish",
          topic,
          payload,
          qos,
          retain,
          dup: false,
          messageId: qos > 0 ? 513 : undefined,
        });
        if (qos === 0) assert.deepEqual([...encodePublish(utf8(topic), payload, 0, retain)], [...theirs]);
        else assert.deepEqual([...ours], [...theirs], `qos ${qos} retain ${retain} size ${size}`);
      }
    }
  }
});

Deno.test("codec: packetIdOffset finds the id, so one encoded message serves many packet ids", () => {
  const encoded = encodePublish(utf8("a"), utf8("x"), 1, false);
  const first = withPacketId(encoded, 1);
  const second = withPacketId(encoded, 2, true);
  // Layout: header, length, topic length (2), "a", packet id (2), "x".
  assert.deepEqual([...first.subarray(5, 7)], [0, 1]);
  assert.deepEqual([...second.subarray(5, 7)], [0, 2]);
  assert.deepEqual([...encoded.subarray(5, 7)], [0, 0]);
  assert.equal(encoded[0] & 0x08, 0); // the shared bytes keep DUP clear
  assert.equal(second[0] & 0x08, 0x08);
});

Deno.test("codec: acknowledgements match mqtt-packet", () => {
  for (const cmd of ["puback", "pubrec", "pubrel", "pubcomp", "unsuback"] as const) {
    assert.deepEqual(
      [...encodeAck(cmd, 0x1234)],
      [...mqttPacket.generate({ cmd, messageId: 0x1234 } as mqttPacket.Packet)],
      cmd,
    );
  }
});

/** How a 3.1.1 connection reads these bytes once CONNECT is done. */
function decodeAfterConnect(bytes: number[]): string {
  const result = decodePacket(Uint8Array.from(bytes), 4);
  return "kind" in result ? `malformed: ${result.message}` : result.cmd;
}

Deno.test("codec: fixed-size packets must have their exact remaining length in 3.1.1", () => {
  assert.equal(decodeAfterConnect([0x40, 0x02, 0x00, 0x01]), "puback");
  assert.match(decodeAfterConnect([0x40, 0x03, 0x00, 0x01, 0x00]), /^malformed/);
  assert.match(decodeAfterConnect([0xc0, 0x01, 0x00]), /^malformed/);
  assert.match(decodeAfterConnect([0xe0, 0x01, 0x00]), /^malformed/);
});

Deno.test("codec: [MQTT-1.5.3-1] ill-formed UTF-8 in a topic is malformed; well-formed U+FFFD is not", () => {
  const publish = (topic: number[]) => [0x30, 2 + topic.length + 1, 0, topic.length, ...topic, 0x21];
  assert.match(decodeAfterConnect(publish([0x61, 0xc3, 0x28])), /UTF-8/);
  assert.match(decodeAfterConnect(publish([0xed, 0xa0, 0x80])), /UTF-8/); // an encoded surrogate
  assert.equal(decodeAfterConnect(publish([0x61, 0xef, 0xbf, 0xbd])), "publish");
  assert.match(decodeAfterConnect(publish([0x61, 0x00])), /U\+0000/);
});

Deno.test("codec: [MQTT-2.3.1-1] packet id 0 is malformed where an id is required", () => {
  assert.match(decodeAfterConnect([0x32, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00]), /identifier/);
  assert.match(decodeAfterConnect([0x82, 0x06, 0x00, 0x00, 0x00, 0x01, 0x61, 0x00]), /identifier/);
  assert.match(decodeAfterConnect([0x40, 0x02, 0x00, 0x00]), /identifier/);
});

/** mqtt-packet's reading of a frame, for comparison with the hand-written hot path. */
function reference(frame: Uint8Array): Record<string, unknown> | "error" {
  let result: Record<string, unknown> | "error" = "error";
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  parser.on("packet", (p: mqttPacket.Packet) => result = { ...p });
  parser.on("error", () => result = "error");
  parser.parse(Buffer.from(frame));
  return result;
}

function ours(frame: Uint8Array): Record<string, unknown> | "error" {
  const result = decodePacket(frame, 4);
  return "kind" in result ? "error" : { ...result };
}

Deno.test("codec: the hand-written PUBLISH and ack decoder reads what mqtt-packet reads", () => {
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const topics = ["a", "a/b/c", "", "sensors/ü/温度", "$SYS/x", "x".repeat(300)];
  for (let i = 0; i < 300; i++) {
    const qos = Math.floor(random() * 3) as 0 | 1 | 2;
    const packet = {
      cmd: "publish" as const,
      topic: topics[i % topics.length],
      payload: Buffer.alloc(Math.floor(random() * 2000), i & 0xff),
      qos,
      retain: random() < 0.5,
      dup: qos > 0 && random() < 0.5,
      messageId: qos > 0 ? 1 + Math.floor(random() * 65535) : undefined,
    };
    const frame = mqttPacket.generate(packet);
    const theirs = reference(frame);
    const mine = ours(frame);
    if (theirs === "error" || mine === "error") {
      assert.fail(`decode failed for ${JSON.stringify(packet.topic)}`);
    }
    for (const key of ["topic", "qos", "retain", "dup", "messageId"]) {
      assert.equal(mine[key], theirs[key], `${key} of packet ${i}`);
    }
    assert.deepEqual([...(mine.payload as Uint8Array)], [...(theirs.payload as Uint8Array)]);
  }
  for (const cmd of ["puback", "pubrec", "pubrel", "pubcomp"] as const) {
    const frame = mqttPacket.generate({ cmd, messageId: 4242 });
    assert.deepEqual(ours(frame), { cmd, messageId: 4242, reasonCode: 0 });
  }
});

Deno.test("codec: the hot path refuses what mqtt-packet refuses, and what the spec adds", () => {
  const cases: [string, number[]][] = [
    ["QoS 3", [0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01]],
    ["topic length past the end", [0x30, 0x03, 0x00, 0x09, 0x61]],
    ["packet id missing", [0x32, 0x03, 0x00, 0x01, 0x61]],
    ["PUBREL flags 0000", [0x60, 0x02, 0x00, 0x01]],
    ["PUBACK flags 0010", [0x42, 0x02, 0x00, 0x01]],
    ["PINGREQ flags", [0xc1, 0x00]],
    ["DISCONNECT flags", [0xe1, 0x00]],
  ];
  for (const [name, bytes] of cases) assert.equal(ours(Uint8Array.from(bytes)), "error", name);
  // Stricter than mqtt-packet, as the spec requires of a server.
  assert.equal(ours(Uint8Array.from([0x38, 0x04, 0x00, 0x01, 0x61, 0x21])), "error", "DUP on QoS 0");
  assert.equal(ours(Uint8Array.from([0x32, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00])), "error", "packet id 0");
});
