/**
 * A byte-level MQTT client over a real TCP socket, for what real client libraries refuse to send:
 * malformed packets, protocol violations, exact packet sequences. It decodes what the broker sends with
 * mqtt-packet and records whether (and when) the broker closed the connection.
 */

import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import type * as MP from "mqtt-packet";
import { Buffer } from "node:buffer";
import type { TestBroker } from "./broker.ts";
import { within } from "./wait.ts";

export type Packet = MP.Packet;
export type Publish = MP.IPublishPacket;
export type QoS = MP.QoS;

/**
 * The optional fields of a PUBLISH; a QoS 1 or 2 PUBLISH without `messageId` gets the client's next id.
 * `properties` are sent only by a client at MQTT 5.
 */
export interface PublishOptions {
  qos?: QoS;
  messageId?: number;
  retain?: boolean;
  dup?: boolean;
  properties?: MP.IPublishPacket["properties"];
}

/**
 * One topic filter of a SUBSCRIBE: `[topic, qos]`, or with MQTT 5's subscription options (No Local, Retain As
 * Published, Retain Handling) as mqtt-packet spells them.
 */
export type Subscription = [topic: string, qos: QoS] | MP.ISubscription;

/** The optional fields of a SUBSCRIBE: its packet id (the client's next by default) and MQTT 5 properties. */
export interface SubscribeOptions {
  messageId?: number;
  properties?: MP.ISubscribePacket["properties"];
}

export class RawClient implements AsyncDisposable {
  readonly #conn: Deno.TcpConn;
  readonly #packets: Packet[] = [];
  // deno-lint-ignore no-explicit-any -- mqtt-packet's Parser typings omit its event payloads
  readonly #parser: any;
  #wake: (() => void) | null = null;
  #ended = false;
  #parseError: Error | null = null;
  #readLoop: Promise<void>;
  #connack: MP.IConnackPacket | null = null;
  #lastPacketId = 0;
  /** The protocol level packets are encoded and decoded at. */
  readonly version: 3 | 4 | 5;

  private constructor(conn: Deno.TcpConn, version: 3 | 4 | 5) {
    this.#conn = conn;
    this.version = version;
    this.#parser = mqttPacket.parser({ protocolVersion: version });
    this.#parser.on("packet", (packet: Packet) => {
      this.#packets.push(packet);
      this.#notify();
    });
    this.#parser.on("error", (error: Error) => {
      this.#parseError = new Error(`the broker sent bytes the test client cannot parse: ${error.message}`);
      this.#notify();
    });
    this.#readLoop = this.#read();
  }

  /** Opens a TCP connection; `version` tells the decoder how to read the broker's packets. */
  static async open(port: number, version: 3 | 4 | 5 = 4): Promise<RawClient> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    // Each write leaves at once: small packets would otherwise wait on Nagle's algorithm and delayed ACKs.
    conn.setNoDelay(true);
    return new RawClient(conn, version);
  }

  /**
   * Opens a connection and completes CONNECT/CONNACK with `fields` merged over a 3.1.1 clean session (at
   * `protocolVersion` 5: Clean Start 1, no properties), asserting the broker accepted it: return code 0 at
   * 3.1 and 3.1.1, reason code 0 at 5. The CONNACK stays in `connack`.
   */
  static async connected(port: number, fields: Partial<MP.IConnectPacket> = {}): Promise<RawClient> {
    const version = fields.protocolVersion ?? 4;
    const client = await RawClient.open(port, version);
    try {
      const connack = await client.connect(fields);
      if (version === 5 && connack.reasonCode !== 0) {
        throw new Error(
          `CONNECT refused with reason code 0x${connack.reasonCode?.toString(16)}: ${
            JSON.stringify(connack)
          }`,
        );
      }
      if (version !== 5 && connack.returnCode !== 0) {
        throw new Error(`CONNECT refused with return code ${connack.returnCode}`);
      }
    } catch (error) {
      await client.close();
      throw error;
    }
    return client;
  }

  /**
   * A client connected as `fields` (see `connected`) and subscribed to `filters`, asserting each was granted
   * the QoS asked for (at MQTT 5, SUBACK's reason codes 0 to 2 are those QoS).
   */
  static async subscriber(
    port: number,
    fields: Partial<MP.IConnectPacket>,
    filters: Subscription[],
  ): Promise<RawClient> {
    const client = await RawClient.connected(port, fields);
    try {
      const asked = filters.map((filter) => Array.isArray(filter) ? filter[1] : filter.qos);
      assert.deepEqual(await client.subscribe(filters), asked, "granted QoS");
    } catch (error) {
      await client.close();
      throw error;
    }
    return client;
  }

  /** Sends CONNECT (3.1.1 clean session unless overridden) and returns the CONNACK. */
  async connect(fields: Partial<MP.IConnectPacket> = {}): Promise<MP.IConnackPacket> {
    await this.send(connectPacket(fields));
    this.#connack = await this.expect("connack");
    return this.#connack;
  }

  /** The CONNACK that `connect` (or `connected`) got: at MQTT 5, its reason code and properties. */
  get connack(): MP.IConnackPacket {
    if (!this.#connack) throw new Error("no CONNACK yet: connect first");
    return this.#connack;
  }

  /** The session present flag of the CONNACK that `connect` (or `connected`) got. */
  get sessionPresent(): boolean {
    return this.connack.sessionPresent;
  }

  /**
   * Sends SUBSCRIBE and returns its SUBACK's granted QoS list (at MQTT 5, its reason codes); the SUBACK must
   * carry the same packet id.
   */
  async subscribe(filters: Subscription[], options: SubscribeOptions = {}): Promise<number[]> {
    const { messageId = this.#nextPacketId(), properties } = options;
    await this.send({
      cmd: "subscribe",
      messageId,
      subscriptions: filters.map((filter) =>
        Array.isArray(filter) ? { topic: filter[0], qos: filter[1] } : filter
      ),
      ...(properties === undefined ? {} : { properties }),
    });
    const suback = await this.expect("suback");
    assert.equal(suback.messageId, messageId, "[MQTT-3.8.4-2] SUBACK carries the SUBSCRIBE's packet id");
    return suback.granted as number[];
  }

  /**
   * Sends UNSUBSCRIBE and returns its UNSUBACK's reason codes (MQTT 5; none at 3.1.1); the UNSUBACK must
   * carry the same packet id.
   */
  async unsubscribe(topics: string[], messageId = this.#nextPacketId()): Promise<number[]> {
    await this.send({ cmd: "unsubscribe", messageId, unsubscriptions: topics });
    const unsuback = await this.expect("unsuback");
    assert.equal(
      unsuback.messageId,
      messageId,
      "[MQTT-3.10.4-4] UNSUBACK carries the UNSUBSCRIBE's packet id",
    );
    return unsuback.granted ?? [];
  }

  /**
   * Sends a PUBLISH (QoS 0, not retained, unless `options` say otherwise) and nothing more; returns its
   * packet id.
   */
  async publish(
    topic: string,
    payload: string | Uint8Array,
    options: PublishOptions = {},
  ): Promise<number | undefined> {
    const messageId = options.messageId ?? ((options.qos ?? 0) > 0 ? this.#nextPacketId() : undefined);
    await this.send(publishPacket(topic, payload, { ...options, messageId }));
    return messageId;
  }

  /**
   * Publishes and completes the QoS flow, checking every packet id: PUBACK; PUBREC, PUBREL, PUBCOMP; for
   * QoS 0, a PINGREQ answered before anything else. On return the broker has handled the message.
   */
  async publishAcked(
    topic: string,
    payload: string | Uint8Array,
    options: PublishOptions = {},
  ): Promise<void> {
    const qos = options.qos ?? 0;
    const messageId = await this.publish(topic, payload, options);
    if (qos === 0) {
      await this.assertIdle();
    } else if (qos === 1) {
      assert.equal((await this.expect("puback")).messageId, messageId, "PUBACK's packet id");
    } else {
      assert.equal((await this.expect("pubrec")).messageId, messageId, "PUBREC's packet id");
      await this.send({ cmd: "pubrel", messageId });
      assert.equal((await this.expect("pubcomp")).messageId, messageId, "PUBCOMP's packet id");
    }
  }

  /** Asserts the next packet is a PUBLISH of `payload` on `topic` (at `qos`, if given) and returns it. */
  async expectPublish(topic: string, payload: string, qos?: QoS, ms?: number): Promise<Publish> {
    return assertPublish(await this.next(ms), topic, payload, qos);
  }

  /** Sends PINGREQ and returns every packet the broker sent before its PINGRESP. */
  async ping(): Promise<Packet[]> {
    await this.send({ cmd: "pingreq" });
    const before: Packet[] = [];
    for (let packet = await this.next(); packet.cmd !== "pingresp"; packet = await this.next()) {
      before.push(packet);
    }
    return before;
  }

  /**
   * PINGREQ, and PINGRESP must come before anything else: the connection is open and the broker had nothing
   * else to send it (no message, no acknowledgement, no retained message after a SUBACK).
   */
  async assertIdle(): Promise<void> {
    const before = (await this.ping()).map(summary);
    assert.deepEqual(before, [], `expected nothing before PINGRESP, got ${JSON.stringify(before)}`);
  }

  /** Sends DISCONNECT and waits for the broker to close the socket; returns any packets it sent first. */
  async disconnect(ms?: number): Promise<Packet[]> {
    await this.send({ cmd: "disconnect" });
    return await this.closedByBroker(ms);
  }

  /** Sends one packet, encoded by mqtt-packet as MQTT `version` (the level the client was opened at). */
  async send(packet: Packet, version: 3 | 4 | 5 = this.version): Promise<void> {
    await this.sendBytes(mqttPacket.generate(packet, { protocolVersion: version }));
  }

  /** Sends raw bytes exactly as given. */
  async sendBytes(bytes: Uint8Array): Promise<void> {
    for (let at = 0; at < bytes.length;) at += await this.#conn.write(bytes.subarray(at));
  }

  /** The next packet from the broker; rejects if the connection closes first or nothing comes in time. */
  async next(ms?: number): Promise<Packet> {
    await within(
      this.#waitFor(() => this.#packets.length > 0 || this.#ended),
      "a packet from the broker",
      ms,
    );
    if (this.#parseError) throw this.#parseError;
    const packet = this.#packets.shift();
    if (!packet) throw new Error("the broker closed the connection instead of sending a packet");
    return packet;
  }

  /** The next packet, asserting its type. */
  async expect<C extends Packet["cmd"]>(cmd: C, ms?: number): Promise<Extract<Packet, { cmd: C }>> {
    const packet = await this.next(ms);
    if (packet.cmd !== cmd) throw new Error(`expected ${cmd}, got ${JSON.stringify(summary(packet))}`);
    return packet as Extract<Packet, { cmd: C }>;
  }

  /** Resolves once the broker has closed the connection; returns the packets it sent before closing. */
  async closedByBroker(ms?: number): Promise<Packet[]> {
    await within(this.#waitFor(() => this.#ended), "the broker to close the connection", ms);
    if (this.#parseError) throw this.#parseError;
    return this.#packets.splice(0);
  }

  /**
   * Asserts the broker closes the connection without sending anything (more). Fails as soon as a packet
   * arrives instead, so a broker that answers does not cost a timeout.
   */
  async assertClosedSilently(ms?: number): Promise<void> {
    const outcome = await this.next(ms).then(summary, (error: Error) => error);
    if (!(outcome instanceof Error)) {
      assert.fail(`the broker sent ${JSON.stringify(outcome)} instead of closing`);
    }
    assert.match(outcome.message, /closed the connection/);
  }

  /** True if the broker has closed the connection (without waiting). */
  get isClosed(): boolean {
    return this.#ended;
  }

  /** Packets received and not yet taken. */
  get pending(): readonly Packet[] {
    return this.#packets;
  }

  /** Closes the socket from our side (no DISCONNECT) and waits for the read loop to end. */
  async close(): Promise<void> {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
    await this.#readLoop;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #read(): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await this.#conn.read(buffer);
        if (n === null) break;
        this.#parser.parse(Buffer.from(buffer.subarray(0, n)));
      }
    } catch {
      // reset by the broker, or closed by us
    }
    this.#ended = true;
    this.#notify();
  }

  #waitFor(ready: () => boolean): Promise<void> {
    if (ready()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (ready()) {
          this.#wake = null;
          resolve();
        } else {
          this.#wake = check;
        }
      };
      this.#wake = check;
    });
  }

  #notify(): void {
    this.#wake?.();
  }

  /** The next packet id for this client's own PUBLISH and SUBSCRIBE packets: 1 to 65535, then 1 again. */
  #nextPacketId(): number {
    this.#lastPacketId = this.#lastPacketId % 0xffff + 1;
    return this.#lastPacketId;
  }
}

/** A CONNECT for mqtt-packet to encode: 3.1.1 (3.1 by `protocolVersion`), clean session, keep-alive 0. */
export function connectPacket(fields: Partial<MP.IConnectPacket> = {}): MP.IConnectPacket {
  const version = fields.protocolVersion ?? 4;
  return {
    cmd: "connect",
    protocolId: version === 3 ? "MQIsdp" : "MQTT",
    protocolVersion: version,
    clientId: "",
    clean: true,
    keepalive: 0,
    ...fields,
  } as MP.IConnectPacket;
}

/**
 * A PUBLISH packet for mqtt-packet to encode: QoS 0, not retained, not a duplicate, no properties, unless
 * `options` say.
 */
export function publishPacket(
  topic: string,
  payload: string | Uint8Array,
  options: PublishOptions = {},
): Publish {
  const { qos = 0, messageId, retain = false, dup = false, properties } = options;
  const body = typeof payload === "string" ? payload : Buffer.from(payload);
  const packet: Publish = { cmd: "publish", topic, payload: body, qos, messageId, retain, dup };
  if (properties !== undefined) packet.properties = properties;
  return packet;
}

/** Asserts `packet` is a PUBLISH of `payload` on `topic` (at `qos`, if given); returns it. */
export function assertPublish(packet: Packet, topic: string, payload: string, qos?: QoS): Publish {
  const seen = JSON.stringify(summary(packet));
  assert.equal(packet.cmd, "publish", `expected PUBLISH, got ${seen}`);
  assert.deepEqual([packet.topic, packet.payload.toString()], [topic, payload], `got ${seen}`);
  if (qos !== undefined) assert.equal(packet.qos, qos, `QoS of ${seen}`);
  return packet;
}

/**
 * Sends `bytes` from a fresh client connected as "offender" and asserts the broker closes that connection
 * without answering, counting exactly one protocol error.
 */
export async function assertClosesConnection(broker: TestBroker, bytes: Uint8Array): Promise<void> {
  await using client = await RawClient.connected(broker.port, { clientId: "offender" });
  await client.sendBytes(bytes);
  await client.assertClosedSilently();
  assert.equal(broker.server.metrics.protocolErrors, 1);
}

/** A packet without its payload buffers, for readable assertion messages. */
export function summary(packet: Packet): Record<string, unknown> {
  const { cmd, messageId } = packet as { cmd: string; messageId?: number };
  const out: Record<string, unknown> = { cmd, messageId };
  if (packet.cmd === "publish") {
    Object.assign(out, {
      topic: packet.topic,
      payload: packet.payload.toString(),
      qos: packet.qos,
      retain: packet.retain,
      dup: packet.dup,
    });
  }
  return out;
}
