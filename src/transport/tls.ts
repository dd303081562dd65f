/**
 * MQTT over TLS through `node:tls`, which can request and verify client certificates (`Deno.listenTls`
 * cannot). It serves sockets exactly as `tcp.ts` does once the handshake is over; the verified client
 * certificate's subject goes into the connection's PeerInfo, so the protocol layer sees an identity and never
 * a TLS detail.
 */

import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import type net from "node:net";
import tls from "node:tls";
import { type Logger, oncePerKind } from "../observe/log.ts";
import type { Acceptor, Listener, PeerInfo } from "./connection.ts";
import { serveSockets, type SocketListenerOptions, type SocketTransport } from "./tcp.ts";

/** A TLS listener that cannot start; `message` is the one line to show (it names the file). */
export class TlsSetupError extends Error {}

/** What a listener that terminates TLS is configured with (a `tls` or a `wss` listener). */
export interface TlsConfig {
  readonly cert_file: string;
  readonly key_file: string;
  readonly ca_file: string;
  readonly require_client_certificate: boolean;
}

export async function listenTls(
  config: TlsConfig,
  options: SocketListenerOptions,
  /** How long a client has for its TLS handshake, milliseconds (the connect timeout). */
  timeoutMs: number,
  accept: Acceptor,
  log: Logger,
): Promise<Listener> {
  return serveSockets(
    { type: "tls", ...await tlsServer("tls", config, timeoutMs, log) },
    options,
    accept,
    log,
  );
}

/**
 * The TLS part of a socket transport: a node:tls server with the listener's certificates, which hands on
 * sockets once their handshake is over, and what a verified client certificate says about the peer.
 */
export async function tlsServer(
  type: PeerInfo["transport"],
  config: TlsConfig,
  timeoutMs: number,
  log: Logger,
): Promise<Pick<SocketTransport, "create" | "describe" | "stop">> {
  const { cert, key } = await loadServerCertificate(config);
  const ca = config.ca_file === "" ? undefined : await readPem(config.ca_file, "ca_file");
  if (ca !== undefined) checkCertificates(ca, config.ca_file);
  const options: tls.TlsOptions = {
    cert,
    key,
    ca,
    // With a CA, ask every client for a certificate; refuse the handshake without a valid one only if required.
    requestCert: ca !== undefined,
    rejectUnauthorized: config.require_client_certificate,
    handshakeTimeout: timeoutMs,
  };
  const handshakeFailed = oncePerKind(log);
  /**
   * Sockets in their handshake, by peer address: a stopping listener closes them rather than wait for the
   * handshake timeout. (The secure socket is another object than the raw one; the peer address ties them.)
   */
  const handshaking = new Map<string, net.Socket>();
  const peerOf = (socket: net.Socket) => `${socket.remoteAddress}:${socket.remotePort}`;
  return {
    create(onSocket) {
      const server = tls.createServer(options, (socket) => {
        handshaking.delete(peerOf(socket));
        socket.setNoDelay(true);
        onSocket(socket);
      });
      server.on("connection", (raw: net.Socket) => {
        const at = peerOf(raw);
        handshaking.set(at, raw);
        raw.once("close", () => handshaking.delete(at));
      });
      // A failed handshake (no or a bad client certificate, plain TCP on the TLS port) never reaches MQTT; one
      // line per kind of failure at info, each one at debug.
      server.on("tlsClientError", (error: Error, socket: tls.TLSSocket) => {
        // Deno's node:tls often no longer knows the peer's address once the handshake has failed.
        const from = socket.remoteAddress ? ` from ${socket.remoteAddress}` : "";
        handshakeFailed(error.message, `${type} handshake${from} failed: ${error.message}`);
        socket.destroy();
      });
      return server;
    },
    describe: certificateOf,
    stop() {
      for (const raw of handshaking.values()) raw.destroy();
    },
  };
}

/**
 * Reads a listener's certificate and key. A certificate that does not parse, a key that does not, or a key
 * that is not the certificate's is a start-up error here rather than a failed handshake for every client
 * later (Deno's node:tls checks none of these when the server is made).
 */
async function loadServerCertificate(config: TlsConfig): Promise<{ cert: string; key: string }> {
  const cert = await readPem(config.cert_file, "cert_file");
  const key = await readPem(config.key_file, "key_file");
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert);
  } catch (error) {
    throw new TlsSetupError(`cert_file ${config.cert_file}: not a certificate (${reason(error)})`);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (error) {
    throw new TlsSetupError(`key_file ${config.key_file}: not a private key (${reason(error)})`);
  }
  if (!certificate.checkPrivateKey(privateKey)) {
    throw new TlsSetupError(`key_file ${config.key_file} is not the key of cert_file ${config.cert_file}`);
  }
  return { cert, key };
}

/** Every certificate in a CA file must parse, and there must be one: a broken file would refuse every client. */
function checkCertificates(pem: string, path: string): void {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new TlsSetupError(`ca_file ${path}: no certificate in it`);
  for (const block of blocks) {
    try {
      new X509Certificate(block);
    } catch (error) {
      throw new TlsSetupError(`ca_file ${path}: not a certificate (${reason(error)})`);
    }
  }
}

function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The verified client certificate's subject, if the handshake verified one. */
function certificateOf(socket: net.Socket): Partial<PeerInfo> {
  const tlsSocket = socket as tls.TLSSocket;
  if (!tlsSocket.authorized) return {};
  const certificate = tlsSocket.getPeerCertificate();
  if (!certificate?.subject) return {};
  const subject = Object.entries(certificate.subject).map(([k, v]) => `${k}=${v}`).join(", ");
  const cn = certificate.subject.CN;
  return { certificate: { subject, commonName: Array.isArray(cn) ? cn[0] : cn } };
}

async function readPem(path: string, field: string): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    const why = error instanceof Deno.errors.NotFound
      ? "no such file"
      : error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotCapable
      ? "permission denied"
      : error instanceof Error
      ? error.message
      : String(error);
    throw new TlsSetupError(`${field} ${path}: ${why}`);
  }
  if (!text.includes("-----BEGIN ")) throw new TlsSetupError(`${field} ${path}: not a PEM file`);
  return text;
}
