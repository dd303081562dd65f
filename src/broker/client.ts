/**
 * One connected client: the MQTT 3.1/3.1.1/5.0 state machine for a single connection. It turns frames into
 * packets, enforces the rules of each packet, and talks to the broker; it never sees the socket itself.
 * Both protocol versions share every path; what only MQTT 5.0 has (reason codes, properties, topic aliases,
 * enhanced authentication) is switched on by `#version`.
 */

import { authenticate, type AuthResult } from "../auth/authenticate.ts";
import type { AuthStep } from "../auth/enhanced.ts";
import { AuthExchange } from "../auth/exchange.ts";
import {
  type DecodeError,
  decodePacket,
  type Packet,
  type ProtocolVersion,
  type QoS,
  type SubscribePacket,
  type UnsubscribePacket,
} from "../protocol/codec.ts";
import { type ConnectPacket, decodeConnect, encodeConnack, peekProtocol } from "../protocol/connect.ts";
import { encodeAuth, encodeDisconnect } from "../protocol/control.ts";
import { type AckPacket, encodeAck, PINGRESP, type PublishPacket } from "../protocol/hot.ts";
import { encodeSuback, encodeUnsuback } from "../protocol/subscribe.ts";
import type { Properties } from "../protocol/properties.ts";
import { CONNACK_REASON, ConnackCode } from "../protocol/codes.ts";
import { hex, Reason, V5_CONNACK_OF_V3 } from "../protocol/reason_codes.ts";
import { copyBytes, isUtf8 } from "../protocol/fields.ts";
import { FrameReader, type FrameSink } from "../protocol/frame.ts";
import { isValidTopicName, parseFilter } from "../protocol/topic.ts";
import { planSubscribe } from "./subscribe_plan.ts";
import { capExpiry } from "./limits.ts";
import { quote } from "../observe/log.ts";
import { type Connection, type ConnectionHandler, formatAddress } from "../transport/connection.ts";
import type { Broker } from "./broker.ts";
import { type Message, messageFromPublish, willFromConnect } from "./message.ts";
import { NEVER_EXPIRES, type Outlet, type PendingWill, type Session } from "./session.ts";
import { type PublishEncoder, V3_PUBLISH, V5PublishEncoder } from "./wire.ts";

const PROTOCOL_NAMES: Record<number, string> = { 3: "MQTT 3.1", 4: "MQTT 3.1.1", 5: "MQTT 5.0" };
/** MQTT 3.1 caps client ids at 23 characters (3.1 spec, CONNECT payload). */
const MQTT31_MAX_CLIENT_ID = 23;
/** The Receive Maximum of a client that sends none (MQTT 5.0 section 3.1.2.11.3). */
const DEFAULT_RECEIVE_MAXIMUM = 65535;

type State = "connecting" | "authenticating" | "connected" | "closed";

/** How the listener a client arrived on identifies it. */
export interface ClientIdentity {
  /** The verified client certificate's subject CN is the username (TLS `use_identity_as_username`). */
  readonly certificateAsUsername: boolean;
}

const PLAIN: ClientIdentity = { certificateAsUsername: false };

export class Client implements ConnectionHandler, FrameSink, Outlet {
  readonly #broker: Broker;
  readonly #conn: Connection;
  readonly #frames: FrameReader;
  readonly #onClose: (client: Client) => void;
  readonly #identity: ClientIdentity;
  #state: State = "connecting";
  #version: ProtocolVersion = 4;
  #clientId = "";
  #session: Session | null = null;
  #will: PendingWill | null = null;
  /** 1.5 x the keep-alive in ms [MQTT-3.1.2-24]; before CONNECT, the connect timeout; 0 for none. */
  #silenceLimit: number;
  /** Monotonic time of the last bytes received, so a wall-clock step cannot disconnect everyone at once. */
  #lastActivity = performance.now();
  // What an MQTT 5.0 client asked for in CONNECT (the 3.1.1 values are the defaults).
  #inflightWindow: number;
  #maxPacketSize = Infinity;
  #problemInformation = true;
  /** The Session Expiry Interval the client asked for in CONNECT (a 0 there cannot be changed later). */
  #askedExpiry = 0;
  /** This connection's PUBLISH form: version, outbound topic aliases, Maximum Packet Size. */
  #publishEncoder: PublishEncoder = V3_PUBLISH;
  /** Inbound topic aliases set by the client on this connection. */
  #inAliases: Map<number, { topic: string; bytes: Uint8Array }> | undefined;
  /** The Authentication Method of CONNECT, if the client used enhanced authentication. */
  #authMethod: string | undefined;
  #auth: AuthExchange | undefined;
  /** Whether the client id of the CONNECT being authenticated was assigned by the broker. */
  #assigned = false;
  /** Frames that arrived while an authentication step was running, to be handled after it. */
  #held: Uint8Array[] | undefined;
  /** The CONNECT's password is being checked (asynchronously, against the password file). */
  #verifying = false;
  #heldBytes = 0;

  /** `onClose` runs once when the connection is over, whoever ended it. */
  constructor(
    broker: Broker,
    conn: Connection,
    onClose: (client: Client) => void,
    identity: ClientIdentity = PLAIN,
  ) {
    this.#broker = broker;
    this.#conn = conn;
    this.#onClose = onClose;
    this.#identity = identity;
    this.#frames = new FrameReader(broker.config.limits.max_packet_size);
    this.#silenceLimit = broker.config.mqtt.connect_timeout * 1000;
    this.#inflightWindow = broker.config.limits.max_inflight_messages;
  }

  // --- ConnectionHandler -------------------------------------------------------------------------------

  data(chunk: Uint8Array): void {
    if (this.#state === "closed") return;
    // Judge the first packet by its first byte, so a stranger cannot make the broker buffer a large
    // non-CONNECT body until the connect timeout [MQTT-3.1.0-1].
    if (this.#state === "connecting" && this.#frames.pendingBytes === 0 && chunk[0] >> 4 !== 1) {
      return this.#fail(Reason.protocolError, "first packet is not CONNECT [MQTT-3.1.0-1]");
    }
    this.#lastActivity = performance.now();
    const error = this.#frames.push(chunk, this);
    if (error) {
      this.#fail(error.kind === "too_large" ? Reason.packetTooLarge : Reason.malformedPacket, error.message);
    }
  }

  closed(): void {
    if (this.#state === "connecting" || this.#state === "authenticating") {
      // Health checks and port scans do this all the time; not worth an info line.
      const log = this.#broker.log;
      if (log.debugEnabled) log.debug(`connection from ${this.#peer()} closed before CONNECT completed`);
      return this.#close(null, true);
    }
    this.#close("connection lost", true);
  }

  // --- Outlet --------------------------------------------------------------------------------------------

  get version(): ProtocolVersion {
    return this.#version;
  }

  write(bytes: Uint8Array): void {
    this.#conn.write(bytes);
  }

  writeEdited(bytes: Uint8Array, at: number, value: number, flags: number): void {
    this.#conn.writeEdited(bytes, at, value, flags);
  }

  get buffered(): number {
    return this.#conn.buffered;
  }

  get inflightWindow(): number {
    return this.#inflightWindow;
  }

  publishBytes(
    message: Message,
    qos: QoS,
    retain: boolean,
    subscriptionIds: readonly number[] | undefined,
  ): Uint8Array | null {
    return this.#publishEncoder.encode(message, qos, retain, subscriptionIds);
  }

  takeOver(): void {
    this.#closeWith(
      Reason.sessionTakenOver,
      "session taken over by a new connection with the same client id",
      true,
    );
  }

  /** The broker is stopping: close without publishing the will. */
  shutdown(): void {
    this.#closeWith(Reason.serverShuttingDown, "broker shutting down", false);
  }

  // --- Packets -------------------------------------------------------------------------------------------

  /** FrameSink: one whole packet from the FrameReader; false once the connection is closed. */
  frame(frame: Uint8Array): boolean {
    if (this.#verifying || (this.#state === "authenticating" && this.#auth?.busy)) {
      // A client should wait for the exchange; one that floods instead is not buffered without bound.
      this.#heldBytes += frame.length;
      if (this.#heldBytes > this.#broker.config.limits.max_packet_size) {
        this.#fail(Reason.protocolError, "too much data sent before authentication completed");
      } else {
        (this.#held ??= []).push(frame);
      }
    } else if (this.#state === "connecting") {
      this.#connect(frame);
    } else {
      const packet = decodePacket(frame, this.#version);
      if ("kind" in packet) this.#decodeFailed(packet);
      else this.#handle(packet);
    }
    return this.#state !== "closed";
  }

  #handle(packet: Packet): void {
    if (this.#state === "authenticating" && packet.cmd !== "auth" && packet.cmd !== "disconnect") {
      return this.#fail(Reason.protocolError, `${packet.cmd.toUpperCase()} before authentication completed`);
    }
    switch (packet.cmd) {
      case "publish":
        return this.#publish(packet);
      case "puback":
        return this.#broker.delivery.acknowledged(this.#session!, packet.messageId);
      case "pubrec":
        return this.#broker.delivery.received(this.#session!, packet.messageId, packet.reasonCode);
      case "pubrel":
        return this.#release(packet);
      case "pubcomp":
        return this.#broker.delivery.completed(this.#session!, packet.messageId);
      case "subscribe":
        return this.#subscribe(packet);
      case "unsubscribe":
        return this.#unsubscribe(packet);
      case "pingreq":
        return this.write(PINGRESP);
      case "disconnect":
        return this.#clientDisconnect(packet.reasonCode, packet.properties);
      case "auth":
        return this.#authPacket(packet.reasonCode, packet.properties);
      case "connect":
        return this.#fail(Reason.protocolError, "second CONNECT on one connection [MQTT-3.1.0-2]");
    }
  }

  #decodeFailed(error: DecodeError): void {
    if (error.kind === "protocol") this.#fail(Reason.protocolError, `protocol error: ${error.message}`);
    else this.#fail(Reason.malformedPacket, `malformed packet: ${error.message}`);
  }

  // --- CONNECT ---------------------------------------------------------------------------------------------

  #connect(frame: Uint8Array): void {
    const protocol = peekProtocol(frame);
    if (!protocol) return this.#fail(Reason.malformedPacket, "malformed packet: CONNECT too short");
    if (protocol.name !== "MQTT" && protocol.name !== "MQIsdp") {
      return this.#fail(Reason.protocolError, `unknown protocol name ${quote(protocol.name)} [MQTT-3.1.2-1]`);
    }
    // The top bit marks a bridge (Mosquitto's try_private); the level is in the rest.
    const level = protocol.level & 0x7f;
    const supported = protocol.name === "MQTT" ? level === 4 || level === 5 : level === 3;
    if (!supported) {
      return this.#refuse(
        ConnackCode.unacceptableProtocolVersion,
        `protocol level ${level} is not supported`,
      );
    }
    // From here on a failure is answered in the client's own version (a v5 CONNACK with a reason code).
    this.#version = level as ProtocolVersion;
    const connect = decodeConnect(frame);
    if ("kind" in connect) return this.#decodeFailed(connect);
    if (this.#identity.certificateAsUsername) {
      // As Mosquitto's use_identity_as_username: the certificate names the user, whatever CONNECT says.
      const commonName = this.#conn.peer.certificate?.commonName;
      if (commonName === undefined) {
        return this.#refuse(
          ConnackCode.notAuthorized,
          "no verified client certificate to take the username from",
        );
      }
      connect.username = commonName;
      connect.password = undefined;
    }
    this.#clientId = connect.clientId;
    const v5 = this.#version === 5;
    const config = this.#broker.config;
    const properties = connect.properties ?? {};
    if (v5) {
      this.#problemInformation = properties.requestProblemInformation !== 0;
      this.#maxPacketSize = properties.maximumPacketSize ?? Infinity;
      this.#inflightWindow = Math.min(
        config.limits.max_inflight_messages,
        properties.receiveMaximum ?? DEFAULT_RECEIVE_MAXIMUM,
      );
      this.#publishEncoder = new V5PublishEncoder(this.#maxPacketSize, properties.topicAliasMaximum ?? 0);
    }

    const will = connect.will;
    if (will) {
      if (!isValidTopicName(will.topic)) {
        return this.#fail(Reason.topicNameInvalid, `invalid will topic ${quote(will.topic)}`);
      }
      if (v5 && will.qos > config.mqtt.max_qos) {
        return this.#refuse(
          ConnackCode.notAuthorized,
          `will QoS ${will.qos} is not supported`,
          Reason.qosNotSupported,
        );
      }
      if (will.retain && !config.mqtt.retain_available) {
        return this.#refuse(
          ConnackCode.notAuthorized,
          "retained messages are not available",
          Reason.retainNotSupported,
        );
      }
    }
    if (
      this.#version === 3 && (connect.clientId.length === 0 || connect.clientId.length > MQTT31_MAX_CLIENT_ID)
    ) {
      return this.#refuse(ConnackCode.identifierRejected, "MQTT 3.1 client ids must have 1 to 23 characters");
    }
    let assigned = false;
    if (connect.clientId.length === 0) {
      // MQTT 5.0 assigns an id whatever Clean Start says [MQTT-3.1.3-6]; 3.1.1 needs clean session [MQTT-3.1.3-8].
      if (!v5 && !connect.clean) {
        return this.#refuse(
          ConnackCode.identifierRejected,
          "empty client id requires clean session [MQTT-3.1.3-8]",
        );
      }
      this.#clientId = `auto-${crypto.randomUUID()}`;
      assigned = true;
    }
    if (properties.authenticationMethod !== undefined) {
      this.#assigned = assigned;
      return this.#beginAuth(properties.authenticationMethod, connect, properties.authenticationData);
    }
    // A verified certificate taken as the username has authenticated the client already (as in Mosquitto).
    if (!this.#identity.certificateAsUsername) {
      const auth = authenticate(connect, config.auth, this.#broker.passwords);
      if (auth instanceof Promise) return this.#awaitPassword(auth, connect, assigned);
      if (!auth.ok) return this.#refuse(auth.code, auth.reason);
    }
    this.#accept(connect, assigned, undefined);
  }

  /** The password is being checked: packets sent meanwhile wait, as during an AUTH exchange. */
  #awaitPassword(check: Promise<AuthResult>, connect: ConnectPacket, assigned: boolean): void {
    this.#state = "authenticating";
    this.#verifying = true;
    check.then((auth) => {
      this.#verifying = false;
      if (this.#state === "closed") return;
      if (!auth.ok) return this.#refuse(auth.code, auth.reason);
      this.#accept(connect, assigned, undefined);
      this.#releaseHeld();
    }, (error) => {
      this.#verifying = false;
      if (this.#state === "closed") return;
      this.#broker.log.error(`password check failed: ${error instanceof Error ? error.message : error}`);
      this.#refuse(ConnackCode.serverUnavailable, "the password could not be checked");
    });
  }

  /** The CONNECT is authenticated: attach the session and send CONNACK. */
  #accept(connect: ConnectPacket, assigned: boolean, auth: Properties | undefined): void {
    const v5 = this.#version === 5;
    const mqtt = this.#broker.config.mqtt;
    const properties = connect.properties ?? {};
    let expiry: number;
    if (v5) {
      this.#askedExpiry = properties.sessionExpiryInterval ?? 0;
      expiry = capExpiry(this.#broker.config, this.#askedExpiry);
    } else {
      expiry = connect.clean ? 0 : mqtt.session_expiry === 0 ? NEVER_EXPIRES : mqtt.session_expiry;
    }
    const opened = this.#broker.openSession(this.#clientId, connect.clean, expiry, this);
    if ("refused" in opened) {
      return this.#refuse(ConnackCode.serverUnavailable, opened.reason, Reason.quotaExceeded);
    }
    this.#session = opened.session;
    this.#state = "connected";
    if (connect.will) this.#will = willFromConnect(connect.will, v5);
    const keepAlive = v5 && mqtt.server_keep_alive > 0 ? mqtt.server_keep_alive : connect.keepalive;
    if (v5) {
      const connack: Properties = { ...this.#broker.announcedLimits, ...auth };
      if (expiry !== this.#askedExpiry) connack.sessionExpiryInterval = expiry;
      if (assigned) connack.assignedClientIdentifier = this.#clientId;
      if (mqtt.server_keep_alive > 0) connack.serverKeepAlive = mqtt.server_keep_alive;
      if (properties.requestResponseInformation === 1 && mqtt.response_information !== "") {
        connack.responseInformation = mqtt.response_information;
      }
      this.write(encodeConnack(Reason.success, opened.present, 5, connack));
    } else {
      // MQTT 3.1 has no session-present flag: that CONNACK byte is reserved and must stay 0.
      this.write(encodeConnack(ConnackCode.accepted, this.#version === 4 && opened.present));
    }
    this.#silenceLimit = keepAlive * 1500;
    if (this.#broker.log.infoEnabled) this.#logConnected(connect, expiry, opened.present, keepAlive);
    this.#broker.delivery.resume(this.#session);
  }

  // --- Enhanced authentication (MQTT 5.0 section 4.12) -------------------------------------------------------

  #beginAuth(method: string, connect: ConnectPacket | undefined, data: Uint8Array | undefined): void {
    const peer = this.#conn.peer;
    const who = {
      clientId: this.#clientId,
      username: connect?.username,
      address: peer.address,
      port: peer.port,
      protocolVersion: 5 as const,
    };
    const auth = AuthExchange.begin(this.#broker.authenticators, method, who, connect);
    if (!auth) {
      const reason = `authentication method ${quote(method)} is not supported`;
      if (connect) return this.#refuse(ConnackCode.notAuthorized, reason, Reason.badAuthenticationMethod);
      return this.#fail(Reason.badAuthenticationMethod, reason);
    }
    this.#auth = auth;
    if (connect) this.#state = "authenticating";
    this.#authStep(auth, data);
  }

  #authStep(auth: AuthExchange, data: Uint8Array | undefined): void {
    auth.step(data, (step) => this.#authDone(auth, step));
  }

  #authDone(auth: AuthExchange, step: AuthStep): void {
    if (this.#state === "closed" || this.#auth !== auth) return;
    const reply = (data: Uint8Array | undefined): Properties => ({
      authenticationMethod: auth.method,
      authenticationData: data,
    });
    if (step.result === "continue") {
      this.write(encodeAuth(Reason.continueAuthentication, reply(step.data)));
    } else if (step.result === "fail") {
      this.#auth = undefined;
      // A failure must say so: a code below 0x80 would read as success.
      const code = step.code >= 0x80 ? step.code : Reason.notAuthorized;
      if (auth.connect) return this.#refuse(ConnackCode.notAuthorized, step.reason, code);
      return this.#fail(code, `re-authentication failed: ${step.reason}`);
    } else {
      this.#auth = undefined;
      this.#authMethod = auth.method;
      if (auth.connect) this.#accept(auth.connect, this.#assigned, reply(step.data));
      else this.write(encodeAuth(Reason.success, reply(step.data)));
    }
    this.#releaseHeld();
  }

  /** Frames held while a step or a password check ran, in order, until another step holds the rest. */
  #releaseHeld(): void {
    while (this.#held?.length && !this.#holding()) {
      const frame = this.#held.shift()!;
      this.#heldBytes -= frame.length;
      this.frame(frame);
    }
  }

  /** Closed, or waiting on an authentication step or a password check: frames must wait (or be dropped). */
  #holding(): boolean {
    return this.#state === "closed" || this.#verifying ||
      (this.#state === "authenticating" && this.#auth?.busy === true);
  }

  #authPacket(reasonCode: number, properties: Properties): void {
    const method = this.#auth?.method ?? this.#authMethod;
    if (method === undefined) {
      return this.#fail(
        Reason.protocolError,
        "AUTH without enhanced authentication in CONNECT (MQTT 5.0 section 4.12)",
      );
    }
    if (properties.authenticationMethod !== method) {
      return this.#fail(
        Reason.protocolError,
        "AUTH names a different authentication method (MQTT 5.0 section 4.12)",
      );
    }
    if (reasonCode === Reason.continueAuthentication && this.#auth && !this.#auth.busy) {
      return this.#authStep(this.#auth, properties.authenticationData);
    }
    if (reasonCode === Reason.reauthenticate && this.#state === "connected" && !this.#auth) {
      return this.#beginAuth(method, undefined, properties.authenticationData);
    }
    this.#fail(Reason.protocolError, `unexpected AUTH with reason code ${hex(reasonCode)}`);
  }

  // --- PUBLISH and acknowledgements ---------------------------------------------------------------------

  #publish(packet: PublishPacket): void {
    const v5 = this.#version === 5;
    const config = this.#broker.config;
    const { qos, messageId } = packet;
    let { topic, topicBytes } = packet;
    if (v5 && packet.topicAlias !== undefined) {
      const alias = packet.topicAlias;
      const maximum = config.mqtt.topic_alias_maximum;
      if (alias === 0 || alias > maximum) {
        return this.#fail(
          Reason.topicAliasInvalid,
          `topic alias ${alias} is outside 1..${maximum} [MQTT-3.3.2-9]`,
        );
      }
      if (topic.length === 0) {
        const known = this.#inAliases?.get(alias);
        if (!known) {
          return this.#fail(Reason.protocolError, `topic alias ${alias} was never set on this connection`);
        }
        topic = known.topic;
        topicBytes = known.bytes;
      } else {
        // A copy: the frame it points into would otherwise stay alive with the alias.
        (this.#inAliases ??= new Map()).set(alias, { topic, bytes: copyBytes(topicBytes) });
      }
    }
    if (v5 && topic.length === 0) {
      return this.#fail(
        Reason.protocolError,
        "PUBLISH has an empty topic and no Topic Alias (MQTT 5.0 3.3.2.1)",
      );
    }
    if (!isValidTopicName(topic)) {
      return this.#fail(Reason.topicNameInvalid, `invalid topic name ${quote(topic)} in PUBLISH`);
    }
    if (v5 && qos > config.mqtt.max_qos) {
      return this.#fail(Reason.qosNotSupported, `QoS ${qos} is above the maximum of ${config.mqtt.max_qos}`);
    }
    if (packet.retain && !config.mqtt.retain_available) {
      return this.#fail(
        Reason.retainNotSupported,
        "retained messages are not available (Retain Available is 0)",
      );
    }
    this.#broker.metrics.messagesReceived++;
    const session = this.#session!;
    if (qos === 2 && session.hasInboundQos2(messageId!)) {
      // Method B: a re-sent PUBLISH with a pending id is acknowledged, not delivered again.
      return this.write(encodeAck("pubrec", messageId!));
    }
    if (v5 && qos === 2 && session.inboundQos2Count >= config.limits.max_inflight_messages) {
      return this.#fail(
        Reason.receiveMaximumExceeded,
        `more than ${config.limits.max_inflight_messages} QoS 2 messages unacknowledged (Receive Maximum)`,
      );
    }
    let code: number = Reason.success;
    let reason: string | undefined;
    if (v5 && packet.payloadFormatIndicator === 1 && !isUtf8(packet.payload)) {
      code = Reason.payloadFormatInvalid;
      reason = "payload is not UTF-8 but its Payload Format Indicator says it is";
    } else {
      const result = this.#broker.publish(messageFromPublish(packet, topic, topicBytes, session, v5));
      if (result === "refused") {
        code = Reason.notAuthorized;
        reason = "only the broker publishes under $SYS";
        if (this.#broker.log.debugEnabled) {
          this.#broker.log.debug(`client ${quote(this.#clientId)} published to ${quote(topic)}: dropped`);
        }
      } else if (result === 0) {
        code = Reason.noMatchingSubscribers;
      }
    }
    if (qos === 0) return;
    // MQTT 3.1.1 acknowledges whatever happened; a v5 error code ends the flow, so no PUBREL will come.
    if (!v5) code = Reason.success;
    if (qos === 2 && code < 0x80) session.addInboundQos2(messageId!);
    const type = qos === 1 ? "puback" : "pubrec";
    if (reason === undefined) return this.write(encodeAck(type, messageId!, code));
    this.#writeWithReason((p) => encodeAck(type, messageId!, code, p), reason);
  }

  #release(packet: AckPacket): void {
    const known = this.#session!.releaseInboundQos2(packet.messageId);
    if (known || this.#version !== 5) return this.write(encodeAck("pubcomp", packet.messageId));
    this.#writeWithReason(
      (p) => encodeAck("pubcomp", packet.messageId, Reason.packetIdentifierNotFound, p),
      `no QoS 2 message with packet id ${packet.messageId} is waiting for PUBREL`,
    );
  }

  // --- SUBSCRIBE and UNSUBSCRIBE ----------------------------------------------------------------------------

  #subscribe(packet: SubscribePacket): void {
    const broker = this.#broker;
    const plan = planSubscribe(packet, this.#version, broker.config.mqtt);
    if ("violation" in plan) return this.#fail(plan.violation.code, plan.violation.reason);
    const session = this.#session!;
    const existed = plan.filters.map((f) => "key" in f && broker.subscribe(session, f.key, f.subscription));
    const codes = plan.filters.map((f) => "key" in f ? f.subscription.qos : f.refused);
    this.#writeWithReason((p) => encodeSuback(packet.messageId, codes, this.#version, p), plan.failure);
    plan.filters.forEach((f, i) => {
      if (!("key" in f)) return;
      // Never for a shared subscription (MQTT 5.0 section 4.8.2); Retain Handling 1 only for a new one, 2 never.
      const { group, retainHandling } = f.subscription;
      if (group === undefined && (retainHandling === 0 || (retainHandling === 1 && !existed[i]))) {
        broker.sendRetained(session, f.subscription);
      }
    });
    if (broker.log.debugEnabled) {
      const list = packet.subscriptions.map((s, i) => `${quote(s.topic)} (${codeName(codes[i])})`).join(", ");
      broker.log.debug(`client ${quote(this.#clientId)} subscribed to ${list}`);
    }
  }

  #unsubscribe(packet: UnsubscribePacket): void {
    const v5 = this.#version === 5;
    if (!v5) {
      const invalid = packet.unsubscriptions.find((filter) => "invalid" in parseFilter(filter));
      if (invalid !== undefined) {
        return this.#fail(Reason.protocolError, `invalid topic filter ${quote(invalid)} in UNSUBSCRIBE`);
      }
    }
    const codes = packet.unsubscriptions.map((filter) =>
      "invalid" in parseFilter(filter)
        ? Reason.topicFilterInvalid
        : this.#broker.unsubscribe(this.#session!, filter)
        ? Reason.success
        : Reason.noSubscriptionExisted
    );
    this.write(v5 ? encodeUnsuback(packet.messageId, codes) : encodeAck("unsuback", packet.messageId));
  }

  // --- DISCONNECT --------------------------------------------------------------------------------------------

  #clientDisconnect(reasonCode: number, properties: Properties | undefined): void {
    const expiry = properties?.sessionExpiryInterval;
    if (expiry !== undefined && this.#session) {
      if (this.#askedExpiry === 0 && expiry !== 0) {
        return this.#fail(
          Reason.protocolError,
          "DISCONNECT sets a Session Expiry Interval after CONNECT set 0 [MQTT-3.14.2-2]",
        );
      }
      this.#session.expiryInterval = capExpiry(this.#broker.config, expiry);
    }
    // Only a DISCONNECT with reason 0x00 discards the will [MQTT-3.14.4-3]: 0x04 asks for it, and an error
    // code is not a normal disconnection [MQTT-3.1.2-8].
    const suffix = reasonCode === 0 ? "" : ` (reason ${hex(reasonCode)})`;
    this.#close(`client sent DISCONNECT${suffix}`, reasonCode !== 0);
  }

  // --- Keep-alive and closing ------------------------------------------------------------------------------

  /**
   * Called by the server's sweep a few times a second (one timer for all connections, rather than one each):
   * closes a connection that has not sent CONNECT in time, or a client silent for 1.5 x its keep-alive
   * [MQTT-3.1.2-24].
   */
  checkSilence(now: number): void {
    if (this.#silenceLimit === 0 || now - this.#lastActivity < this.#silenceLimit) return;
    if (this.#state !== "connected") {
      const timeout = this.#broker.config.mqtt.connect_timeout;
      const what = this.#state === "connecting" ? "no CONNECT" : "authentication not completed";
      this.#fail(Reason.protocolError, `${what} within ${timeout}s`);
    } else {
      this.#fail(
        Reason.keepAliveTimeout,
        `keep-alive timeout (no packet for ${Math.round((now - this.#lastActivity) / 1000)}s)`,
      );
    }
  }

  /** Refuses a CONNECT: CONNACK with a non-zero return (or MQTT 5.0 reason) code, then close [MQTT-3.2.2-5]. */
  #refuse(code: ConnackCode, reason: string, v5Code: number = V5_CONNACK_OF_V3[code]): void {
    let said: string;
    if (this.#version === 5) {
      this.#writeWithReason((p) => encodeConnack(v5Code, false, 5, p), reason, true);
      said = `reason code ${hex(v5Code)}`;
    } else {
      this.write(encodeConnack(code, false));
      said = CONNACK_REASON[code];
    }
    const who = this.#clientId ? `client ${quote(this.#clientId)}` : "connection";
    const log = this.#broker.log;
    if (log.infoEnabled) log.info(`${who} from ${this.#peer()} refused: ${said}: ${reason}`);
    this.#close(null, false);
  }

  /**
   * Malformed input, a protocol violation or a timeout: tell an MQTT 5.0 client why (CONNACK before it is
   * connected, DISCONNECT after), then close, publishing the will [MQTT-3.1.2-8, MQTT-4.13.1-1].
   */
  #fail(code: number, reason: string): void {
    if (this.#state === "closed") return;
    this.#broker.metrics.protocolErrors++;
    if (this.#version === 5 && this.#state !== "connected") {
      this.#writeWithReason((p) => encodeConnack(code, false, 5, p), reason, true);
    }
    this.#closeWith(code, reason, true);
  }

  /** Ends the connection, first sending an MQTT 5.0 client DISCONNECT with `code` once it is connected. */
  #closeWith(code: number, reason: string, publishWill: boolean): void {
    if (this.#state === "connected" && this.#version === 5) {
      this.#writeWithReason((p) => encodeDisconnect(code, p), reason, true);
    }
    this.#close(reason, publishWill);
  }

  /** Ends the connection once; `reason` null means the caller already logged why. */
  #close(reason: string | null, publishWill: boolean): void {
    if (this.#state === "closed") return;
    const wasConnected = this.#state === "connected";
    this.#state = "closed";
    this.#conn.close();
    if (wasConnected) {
      const session = this.#session!;
      const will = publishWill && this.#will ? this.#will : undefined;
      if (session.outlet === this) this.#broker.detach(session, will);
      if (reason && this.#broker.log.infoEnabled) {
        this.#broker.log.info(`client ${quote(this.#clientId)} disconnected: ${reason}`);
      }
    } else if (reason && this.#broker.log.infoEnabled) {
      this.#broker.log.info(`connection from ${this.#peer()} closed before CONNECT completed: ${reason}`);
    }
    this.#onClose(this);
  }

  /**
   * Writes a packet built with a Reason String where the client allows one: always on CONNACK and DISCONNECT
   * (`always`), elsewhere only if it did not set Request Problem Information to 0 [MQTT-3.1.2-29]; and never
   * when the string would take the packet over the client's Maximum Packet Size [MQTT-3.1.2-25].
   */
  #writeWithReason(
    build: (properties?: Properties) => Uint8Array,
    reason: string | undefined,
    always = false,
  ) {
    if (this.#version === 5 && reason !== undefined && (always || this.#problemInformation)) {
      const bytes = build({ reasonString: reason });
      if (bytes.length <= this.#maxPacketSize) return this.write(bytes);
    }
    this.write(build());
  }

  #logConnected(connect: ConnectPacket, expiry: number, present: boolean, keepAlive: number): void {
    const kept = expiry === 0 ? "clean session" : present ? "resumed session" : "new persistent session";
    const user = connect.username !== undefined ? `, user ${quote(connect.username)}` : "";
    const { transport, proxy, certificate } = this.#conn.peer;
    const via = proxy ? ` via proxy ${formatAddress(proxy.address, proxy.port)}` : "";
    const subject = certificate ? `, certificate ${quote(certificate.subject)}` : "";
    this.#broker.log.info(
      `client ${quote(this.#clientId)} connected from ${this.#peer()}${via} over ${transport} ` +
        `(${PROTOCOL_NAMES[this.#version]}, ${kept}, keep-alive ${keepAlive}s${user}${subject})`,
    );
  }

  #peer(): string {
    return formatAddress(this.#conn.peer.address, this.#conn.peer.port);
  }
}

/** A SUBACK code as a log word. */
function codeName(code: number): string {
  return code <= 2 ? `QoS ${code}` : `refused ${hex(code)}`;
}
