import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import { Buffer } from "node:buffer";
import { decodeConnect, encodeConnack, peekProtocol } from "../../src/protocol/connect.ts";
import { encodeSuback } from "../../src/protocol/subscribe.ts";

/** mqtt-packet's reading of a CONNECT, for comparison with the hand-written one. */
function reference(frame: Uint8Array): mqttPacket.IConnectPacket {
  let packet: mqttPacket.IConnectPacket | undefined;
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  parser.on("packet", (p: mqttPacket.Packet) => packet = p as mqttPacket.IConnectPacket);
  parser.parse(Buffer.from(frame));
  assert.ok(packet, "mqtt-packet could not parse the CONNECT");
  return packet;
}

Deno.test("connect: the hand-written CONNECT reader agrees with mqtt-packet for every flag combination", () => {
  for (const version of [3, 4] as const) {
    for (
      const will of [undefined, { topic: "w/t", payload: Buffer.from([0, 1, 255]), qos: 2, retain: true }]
    ) {
      for (
        const [username, password] of [[undefined, undefined], ["ü-user", undefined], ["u", Buffer.from("p")]]
      ) {
        for (const clean of [true, false]) {
          const frame = mqttPacket.generate({
            cmd: "connect",
            protocolId: version === 3 ? "MQIsdp" : "MQTT",
            protocolVersion: version,
            clientId: "client-é",
            clean,
            keepalive: 513,
            will: will as mqttPacket.IConnectPacket["will"],
            username: username as string | undefined,
            password: password as Buffer | undefined,
          });
          const ours = decodeConnect(frame);
          if ("kind" in ours) assert.fail(ours.message);
          const theirs = reference(frame);
          assert.equal(ours.protocolId, theirs.protocolId);
          assert.equal(ours.protocolVersion, theirs.protocolVersion);
          assert.equal(ours.clientId, theirs.clientId);
          assert.equal(ours.clean, theirs.clean);
          assert.equal(ours.keepalive, theirs.keepalive);
          assert.equal(ours.username, theirs.username);
          assert.deepEqual(ours.password && [...ours.password], theirs.password && [...theirs.password]);
          assert.equal(ours.will?.topic, theirs.will?.topic);
          assert.equal(ours.will?.qos, theirs.will?.qos);
          assert.equal(ours.will?.retain, theirs.will?.retain);
          assert.deepEqual(
            ours.will && [...ours.will.payload],
            theirs.will && [...(theirs.will.payload as Buffer)],
          );
        }
      }
    }
  }
});

/** A CONNECT for "MQTT" level 4 with these connect flags and payload bytes (keep-alive 0). */
function connect(flags: number, payload: number[]): Uint8Array {
  const body = [0, 4, 0x4d, 0x51, 0x54, 0x54, 4, flags, 0, 0, ...payload];
  return Uint8Array.from([0x10, body.length, ...body]);
}
const id = [0, 1, 0x63]; // client id "c"

Deno.test("connect: what the spec forbids in CONNECT is refused with a reason", () => {
  const cases: [string, Uint8Array, RegExp][] = [
    ["reserved flag [MQTT-3.1.2-3]", connect(0x03, id), /reserved CONNECT flag/],
    ["will QoS without will flag [MQTT-3.1.2-11]", connect(0x0a, id), /without the will flag/],
    ["will retain without will flag [MQTT-3.1.2-11]", connect(0x22, id), /without the will flag/],
    ["will QoS 3 [MQTT-3.1.2-14]", connect(0x1e, [...id, 0, 1, 0x77, 0, 0]), /will QoS must not be 3/],
    ["password without username [MQTT-3.1.2-22]", connect(0x42, [...id, 0, 1, 0x70]), /password flag/],
    ["trailing bytes [MQTT-3.1.4-1]", connect(0x02, [...id, 0xaa]), /bytes after its last field/],
    ["truncated client id", connect(0x02, [0, 5, 0x63]), /shorter than its fields/],
    ["U+0000 in client id [MQTT-1.5.3-2]", connect(0x02, [0, 1, 0x00]), /U\+0000/],
    ["bad UTF-8 in username [MQTT-1.5.3-1]", connect(0x82, [...id, 0, 2, 0xc3, 0x28]), /UTF-8/],
    ["header flags [MQTT-2.2.2-2]", Uint8Array.from([0x11, ...connect(0x02, id).subarray(1)]), /flag bits/],
  ];
  for (const [name, frame, reason] of cases) {
    const result = decodeConnect(frame);
    assert.ok("kind" in result, `${name} was accepted`);
    assert.match(result.message, reason, name);
  }
  assert.equal((decodeConnect(connect(0x02, id)) as { clientId: string }).clientId, "c");
});

Deno.test("connect: peekProtocol reads name and level, or says the frame is too short", () => {
  assert.deepEqual(peekProtocol(connect(0x02, id)), { name: "MQTT", level: 4 });
  assert.equal(peekProtocol(Uint8Array.from([0x10, 0x04, 0, 4, 0x4d, 0x51])), null);
});

Deno.test("connect: CONNACK and SUBACK bytes match mqtt-packet's", () => {
  for (const returnCode of [0, 1, 5]) {
    for (const sessionPresent of [false, true]) {
      assert.deepEqual(
        [...encodeConnack(returnCode, sessionPresent)],
        [...mqttPacket.generate({ cmd: "connack", returnCode, sessionPresent })],
      );
    }
  }
  for (const count of [1, 3, 126, 127, 200, 20000]) {
    const granted = Array.from({ length: count }, (_, i) => [0, 1, 2, 0x80][i % 4]);
    assert.deepEqual(
      [...encodeSuback(0x1234, granted)],
      [...mqttPacket.generate({ cmd: "suback", messageId: 0x1234, granted })],
      `${count} codes`,
    );
  }
});
