/**
 * A byte-level MQTT client over a real TCP socket, for what real client libraries refuse to send:
 * malformed packets, protocol violations, exact packet sequences. It decodes what the broker sends with
 * mqtt-packet and records whether (and when) the broker closed the connection.
 */

import mqttPacket from "mqtt-packet";
import type * as MP from "mqtt-packet";
import { Buffer } from "node:buffer";
import { within } from "./wait.ts";

export type Packet = MP.Packet;

export class RawClient implements AsyncDisposable {
  readonly #conn: Deno.TcpConn;
  readonly #packets: Packet[] = [];
  // deno-lint-ignore no-explicit-any -- mqtt-packet's Parser typings omit its event payloads
  readonly #parser: any;
  #wake: (() => void) | null = null;
  #ended = false;
  #parseError: Error | null = null;
  #readLoop: Promise<void>;

  private constructor(conn: Deno.TcpConn, version: 3 | 4 | 5) {
    this.#conn = conn;
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
    return new RawClient(conn, version);
  }

  /**
   * Opens a connection and completes CONNECT/CONNACK with `fields` merged over a 3.1.1 clean session,
   * asserting the broker accepted it.
   */
  static async connected(port: number, fields: Partial<MP.IConnectPacket> = {}): Promise<RawClient> {
    const version = fields.protocolVersion ?? 4;
    const client = await RawClient.open(port, version);
    const connack = await client.connect(fields);
    if (connack.returnCode !== 0) {
      await client.close();
      throw new Error(`CONNECT refused with return code ${connack.returnCode}`);
    }
    return client;
  }

  /** Sends CONNECT (3.1.1 clean session unless overridden) and returns the CONNACK. */
  async connect(fields: Partial<MP.IConnectPacket> = {}): Promise<MP.IConnackPacket> {
    const version = fields.protocolVersion ?? 4;
    await this.send({
      cmd: "connect",
      protocolId: version === 3 ? "MQIsdp" : "MQTT",
      protocolVersion: version,
      clientId: "",
      clean: true,
      keepalive: 0,
      ...fields,
    } as MP.IConnectPacket);
    return await this.expect("connack");
  }

  /** Sends one packet, encoded by mqtt-packet as MQTT `version` (3.1.1 by default). */
  async send(packet: Packet, version: 3 | 4 | 5 = 4): Promise<void> {
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
