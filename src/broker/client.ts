/**
 * One connected client: the MQTT 3.1/3.1.1 state machine for a single connection. It turns frames into
 * packets, enforces the rules of each packet, and talks to the broker; it never sees the socket itself.
 */

import { authenticate } from "../auth/authenticate.ts";
import {
  decodePacket,
  type Packet,
  type ProtocolVersion,
  type QoS,
  type SubscribePacket,
  type UnsubscribePacket,
} from "../protocol/codec.ts";
import {
  type ConnectPacket,
  decodeConnect,
  encodeConnack,
  encodeSuback,
  peekProtocol,
} from "../protocol/connect.ts";
import { encodeAck, PINGRESP, type PublishPacket } from "../protocol/hot.ts";
import { CONNACK_REASON, ConnackCode } from "../protocol/codes.ts";
import { FrameReader, type FrameSink } from "../protocol/frame.ts";
import { isValidTopicFilter, isValidTopicName } from "../protocol/topic.ts";
import { quote } from "../observe/log.ts";
import { type Connection, type ConnectionHandler, formatAddress } from "../transport/connection.ts";
import type { Broker } from "./broker.ts";
import type { Message } from "./message.ts";
import type { Outlet, Session } from "./session.ts";

const PROTOCOL_NAMES: Record<number, string> = { 3: "MQTT 3.1", 4: "MQTT 3.1.1", 5: "MQTT 5.0" };
/** MQTT 3.1 caps client ids at 23 characters (3.1 spec, CONNECT payload). */
const MQTT31_MAX_CLIENT_ID = 23;

type State = "connecting" | "connected" | "closed";

export class Client implements ConnectionHandler, FrameSink, Outlet {
  readonly #broker: Broker;
  readonly #conn: Connection;
  readonly #frames: FrameReader;
  readonly #onClose: (client: Client) => void;
  #state: State = "connecting";
  #version: ProtocolVersion = 4;
  #clientId = "";
  #session: Session | null = null;
  #will: Message | null = null;
  /** 1.5 x the keep-alive in ms [MQTT-3.1.2-24]; before CONNECT, the connect timeout; 0 for none. */
  #silenceLimit: number;
  /** Monotonic time of the last bytes received, so a wall-clock step cannot disconnect everyone at once. */
  #lastActivity = performance.now();

  /** `onClose` runs once when the connection is over, whoever ended it. */
  constructor(broker: Broker, conn: Connection, onClose: (client: Client) => void) {
    this.#broker = broker;
    this.#conn = conn;
    this.#onClose = onClose;
    this.#frames = new FrameReader(broker.config.limits.max_packet_size);
    this.#silenceLimit = broker.config.mqtt.connect_timeout * 1000;
  }

  // --- ConnectionHandler -------------------------------------------------------------------------------

  data(chunk: Uint8Array): void {
    if (this.#state === "closed") return;
    // Judge the first packet by its first byte, so a stranger cannot make the broker buffer a large
    // non-CONNECT body until the connect timeout [MQTT-3.1.0-1].
    if (this.#state === "connecting" && this.#frames.pendingBytes === 0 && chunk[0] >> 4 !== 1) {
      return this.#protocolError("first packet is not CONNECT [MQTT-3.1.0-1]");
    }
    this.#lastActivity = performance.now();
    const error = this.#frames.push(chunk, this);
    if (error) this.#protocolError(error.message);
  }

  closed(): void {
    if (this.#state === "connecting") {
      // Health checks and port scans do this all the time; not worth an info line.
      const log = this.#broker.log;
      if (log.debugEnabled) log.debug(`connection from ${this.#peer()} closed before sending CONNECT`);
      return this.#close(null, true);
    }
    this.#close("connection lost", true);
  }

  // --- Outlet --------------------------------------------------------------------------------------------

  write(bytes: Uint8Array): void {
    this.#conn.write(bytes);
  }

  get buffered(): number {
    return this.#conn.buffered;
  }

  takeOver(): void {
    this.#close("session taken over by a new connection with the same client id", true);
  }

  /** The broker is stopping: close without publishing the will. */
  shutdown(): void {
    this.#close("broker shutting down", false);
  }

  // --- Packets -------------------------------------------------------------------------------------------

  /** FrameSink: one whole packet from the FrameReader; false once the connection is closed. */
  frame(frame: Uint8Array): boolean {
    if (this.#state === "connecting") {
      this.#connect(frame);
    } else {
      const packet = decodePacket(frame, this.#version);
      if ("kind" in packet) this.#protocolError(`malformed packet: ${packet.message}`);
      else this.#handle(packet);
    }
    return this.#state !== "closed";
  }

  #handle(packet: Packet): void {
    switch (packet.cmd) {
      case "publish":
        return this.#publish(packet);
      case "puback":
        return this.#broker.delivery.acknowledged(this.#session!, packet.messageId);
      case "pubrec":
        return this.#broker.delivery.received(this.#session!, packet.messageId);
      case "pubrel":
        this.#session!.releaseInboundQos2(packet.messageId);
        return this.write(encodeAck("pubcomp", packet.messageId));
      case "pubcomp":
        return this.#broker.delivery.completed(this.#session!, packet.messageId);
      case "subscribe":
        return this.#subscribe(packet);
      case "unsubscribe":
        return this.#unsubscribe(packet);
      case "pingreq":
        return this.write(PINGRESP);
      case "disconnect":
        // A clean DISCONNECT discards the will [MQTT-3.14.4-3].
        return this.#close("client sent DISCONNECT", false);
      case "connect":
        return this.#protocolError("second CONNECT on one connection [MQTT-3.1.0-2]");
      default:
        return this.#protocolError(`${packet.cmd.toUpperCase()} is never sent by a client`);
    }
  }

  #connect(frame: Uint8Array): void {
    const protocol = peekProtocol(frame);
    if (!protocol) return this.#protocolError("malformed packet: CONNECT too short");
    if (protocol.name !== "MQTT" && protocol.name !== "MQIsdp") {
      return this.#protocolError(`unknown protocol name ${quote(protocol.name)} [MQTT-3.1.2-1]`);
    }
    // The top bit marks a bridge (Mosquitto's try_private); the level is in the rest.
    const level = protocol.level & 0x7f;
    if (!(protocol.name === "MQTT" && level === 4) && !(protocol.name === "MQIsdp" && level === 3)) {
      return this.#refuse(
        ConnackCode.unacceptableProtocolVersion,
        `protocol level ${level} is not supported`,
      );
    }
    const connect = decodeConnect(frame);
    if ("kind" in connect) return this.#protocolError(`malformed packet: ${connect.message}`);
    this.#version = connect.protocolVersion;
    this.#clientId = connect.clientId;

    if (connect.will && !isValidTopicName(connect.will.topic)) {
      return this.#protocolError(`invalid will topic ${quote(connect.will.topic)}`);
    }
    const clean = connect.clean;
    if (
      this.#version === 3 && (connect.clientId.length === 0 || connect.clientId.length > MQTT31_MAX_CLIENT_ID)
    ) {
      return this.#refuse(ConnackCode.identifierRejected, "MQTT 3.1 client ids must have 1 to 23 characters");
    }
    if (connect.clientId.length === 0) {
      if (!clean) {
        return this.#refuse(
          ConnackCode.identifierRejected,
          "empty client id requires clean session [MQTT-3.1.3-8]",
        );
      }
      this.#clientId = `auto-${crypto.randomUUID()}`;
    }
    const auth = authenticate(connect, this.#broker.config.auth);
    if (!auth.ok) return this.#refuse(auth.code, auth.reason);

    const opened = this.#broker.openSession(this.#clientId, clean, this);
    if ("refused" in opened) return this.#refuse(opened.refused, opened.reason);
    this.#session = opened.session;
    this.#state = "connected";
    if (connect.will) this.#will = { ...connect.will };
    // MQTT 3.1 has no session-present flag: that CONNACK byte is reserved and must stay 0.
    const sessionPresent = this.#version === 4 && opened.present;
    this.write(encodeConnack(ConnackCode.accepted, sessionPresent));
    this.#silenceLimit = connect.keepalive * 1500;
    if (this.#broker.log.infoEnabled) this.#logConnected(connect, clean, opened.present);
    this.#broker.delivery.resume(this.#session);
  }

  #publish(packet: PublishPacket): void {
    const { topic, qos, messageId } = packet;
    if (!isValidTopicName(topic)) return this.#protocolError(`invalid topic name ${quote(topic)} in PUBLISH`);
    this.#broker.metrics.messagesReceived++;
    if (qos === 2) {
      // Method B: deliver on first receipt; a re-sent PUBLISH with a pending id is not delivered again.
      const session = this.#session!;
      if (!session.hasInboundQos2(messageId!)) {
        session.addInboundQos2(messageId!);
        this.#route(toMessage(packet));
      }
      return this.write(encodeAck("pubrec", messageId!));
    }
    this.#route(toMessage(packet));
    if (qos === 1) this.write(encodeAck("puback", messageId!));
  }

  /** Publishes a message from this client (a PUBLISH or its will). */
  #route(message: Message): void {
    // Only the broker publishes under $SYS; a client's message there is acknowledged and dropped.
    if (message.topic === "$SYS" || message.topic.startsWith("$SYS/")) {
      this.#broker.metrics.droppedSysTopic++;
      if (this.#broker.log.debugEnabled) {
        this.#broker.log.debug(
          `client ${quote(this.#clientId)} published to ${quote(message.topic)}: dropped`,
        );
      }
      return;
    }
    this.#broker.publish(message);
  }

  #subscribe(packet: SubscribePacket): void {
    const invalid = packet.subscriptions.find((s) => !isValidTopicFilter(s.topic));
    if (invalid) return this.#protocolError(`invalid topic filter ${quote(invalid.topic)} in SUBSCRIBE`);
    const broker = this.#broker;
    const session = this.#session!;
    const granted = packet.subscriptions.map((s) => Math.min(s.qos, broker.config.mqtt.max_qos) as QoS);
    packet.subscriptions.forEach((s, i) => broker.subscribe(session, s.topic, granted[i]));
    this.write(encodeSuback(packet.messageId!, granted));
    packet.subscriptions.forEach((s, i) => broker.sendRetained(session, s.topic, granted[i]));
    if (broker.log.debugEnabled) {
      const list = packet.subscriptions.map((s, i) => `${quote(s.topic)} (QoS ${granted[i]})`).join(", ");
      broker.log.debug(`client ${quote(this.#clientId)} subscribed to ${list}`);
    }
  }

  #unsubscribe(packet: UnsubscribePacket): void {
    const invalid = packet.unsubscriptions.find((filter) => !isValidTopicFilter(filter));
    if (invalid !== undefined) {
      return this.#protocolError(`invalid topic filter ${quote(invalid)} in UNSUBSCRIBE`);
    }
    for (const filter of packet.unsubscriptions) this.#broker.unsubscribe(this.#session!, filter);
    this.write(encodeAck("unsuback", packet.messageId!));
  }

  // --- Keep-alive and closing ------------------------------------------------------------------------------

  /**
   * Called by the server's sweep a few times a second (one timer for all connections, rather than one each):
   * closes a connection that has not sent CONNECT in time, or a client silent for 1.5 x its keep-alive
   * [MQTT-3.1.2-24].
   */
  checkSilence(now: number): void {
    if (this.#silenceLimit === 0 || now - this.#lastActivity < this.#silenceLimit) return;
    if (this.#state === "connecting") {
      this.#protocolError(`no CONNECT within ${this.#broker.config.mqtt.connect_timeout}s`);
    } else {
      this.#protocolError(
        `keep-alive timeout (no packet for ${Math.round((now - this.#lastActivity) / 1000)}s)`,
      );
    }
  }

  /** Refuses a CONNECT: CONNACK with a non-zero return code, then close [MQTT-3.2.2-5]. */
  #refuse(code: ConnackCode, reason: string): void {
    this.write(encodeConnack(code, false));
    const who = this.#clientId ? `client ${quote(this.#clientId)}` : "connection";
    const log = this.#broker.log;
    if (log.infoEnabled) log.info(`${who} from ${this.#peer()} refused: ${CONNACK_REASON[code]}: ${reason}`);
    this.#close(null, false);
  }

  /** Malformed input, a protocol violation or a timeout: close, publishing the will [MQTT-3.1.2-8]. */
  #protocolError(reason: string): void {
    if (this.#state === "closed") return;
    this.#broker.metrics.protocolErrors++;
    this.#close(reason, true);
  }

  /** Ends the connection once; `reason` null means the caller already logged why. */
  #close(reason: string | null, publishWill: boolean): void {
    if (this.#state === "closed") return;
    const wasConnected = this.#state === "connected";
    this.#state = "closed";
    this.#conn.close();
    if (wasConnected) {
      const session = this.#session!;
      if (session.outlet === this) this.#broker.detach(session);
      if (reason && this.#broker.log.infoEnabled) {
        this.#broker.log.info(`client ${quote(this.#clientId)} disconnected: ${reason}`);
      }
      if (publishWill && this.#will) this.#route(this.#will);
    } else if (reason && this.#broker.log.infoEnabled) {
      this.#broker.log.info(`connection from ${this.#peer()} closed before CONNECT completed: ${reason}`);
    }
    this.#onClose(this);
  }

  #logConnected(connect: ConnectPacket, clean: boolean, present: boolean): void {
    const session = clean ? "clean session" : present ? "resumed session" : "new persistent session";
    const user = connect.username !== undefined ? `, user ${quote(connect.username)}` : "";
    this.#broker.log.info(
      `client ${quote(this.#clientId)} connected from ${this.#peer()} (${PROTOCOL_NAMES[this.#version]}, ` +
        `${session}, keep-alive ${connect.keepalive}s${user})`,
    );
  }

  #peer(): string {
    return formatAddress(this.#conn.peer.address, this.#conn.peer.port);
  }
}

function toMessage(packet: PublishPacket): Message {
  const { topic, topicBytes, payload, qos, retain, frame } = packet;
  return { topic, topicBytes, payload, qos, retain, frame };
}
