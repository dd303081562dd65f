import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import { Buffer } from "node:buffer";
import { encodeAckV3, encodePublishV3, PacketDecoder, withPacketId } from "../../src/protocol/codec.ts";

Deno.test("codec: the PUBLISH encoder writes what mqtt-packet writes, for every QoS, flag and size", () => {
  for (const qos of [0, 1, 2] as const) {
    for (const retain of [false, true]) {
      for (const size of [0, 5, 200, 70000]) {
        const payload = Buffer.alloc(size, 0x61);
        const topic = "sensors/ü/temp";
        const ours = withPacketId(encodePublishV3(topic, payload, qos, retain, false), 513);
        const theirs = mqttPacket.generate({
          cmd: "publish",
          topic,
          payload,
          qos,
          retain,
          dup: false,
          messageId: qos > 0 ? 513 : undefined,
        });
        if (qos === 0) assert.deepEqual([...encodePublishV3(topic, payload, 0, retain, false)], [...theirs]);
        else assert.deepEqual([...ours], [...theirs], `qos ${qos} retain ${retain} size ${size}`);
      }
    }
  }
});

Deno.test("codec: withPacketId copies, so one encoded message serves many packet ids", () => {
  const encoded = encodePublishV3("a", Buffer.from("x"), 1, false, false);
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
      [...encodeAckV3(cmd, 0x1234)],
      [...mqttPacket.generate({ cmd, messageId: 0x1234 } as mqttPacket.Packet)],
      cmd,
    );
  }
});

function decodeAfterConnect(bytes: number[]): string {
  const decoder = new PacketDecoder();
  const connect = mqttPacket.generate({ cmd: "connect", clientId: "c", protocolVersion: 4, keepalive: 0 });
  assert.equal((decoder.decode(connect) as mqttPacket.Packet).cmd, "connect");
  const result = decoder.decode(Buffer.from(bytes));
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
