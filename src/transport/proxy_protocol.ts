/**
 * The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2) that a load balancer sends
 * before the client's first byte, so that the broker sees the real client address and, from a proxy that
 * ends TLS, whether the client's certificate was verified. Bytes in, a result out: which peers may send a
 * header at all is the caller's decision (`address_range.ts`).
 */

import { copyBytes, decodeString } from "../protocol/fields.ts";
import { addressText, parseIPv4, parseIPv6 } from "./address_range.ts";

export interface ProxyAddress {
  readonly address: string;
  readonly port: number;
}

export interface ProxySsl {
  /** PP2_CLIENT_SSL: the client connected over TLS to the proxy. */
  readonly tls: boolean;
  /** The client presented a certificate (PP2_CLIENT_CERT_CONN or PP2_CLIENT_CERT_SESS). */
  readonly clientCertificate: boolean;
  /** The verify field is 0. HAProxy sends 0 also when there was no certificate to verify. */
  readonly verified: boolean;
  readonly version?: string;
  readonly commonName?: string;
  readonly cipher?: string;
  readonly signatureAlgorithm?: string;
  readonly keyAlgorithm?: string;
}

export interface ProxyHeader {
  readonly version: 1 | 2;
  /** "local": the proxy's own connection (a health check), no client behind it. v1 UNKNOWN is "proxy". */
  readonly command: "proxy" | "local";
  /** The real client; absent for LOCAL, v1 UNKNOWN, AF_UNSPEC and AF_UNIX. */
  readonly source?: ProxyAddress;
  readonly destination?: ProxyAddress;
  /** PP2_TYPE_AUTHORITY: the host name the client asked for (TLS SNI). */
  readonly authority?: string;
  /** PP2_TYPE_UNIQUE_ID: the proxy's opaque id for the connection, to match its logs. */
  readonly uniqueId?: Uint8Array;
  readonly ssl?: ProxySsl;
}

export type ProxyParse =
  | { readonly kind: "incomplete" }
  /** Close the connection; `reason` is a short phrase for one log line. */
  | { readonly kind: "invalid"; readonly reason: string }
  /** `length`: the header's bytes; the client's own stream starts there. */
  | { readonly kind: "header"; readonly header: ProxyHeader; readonly length: number };

const V2_SIGNATURE = Uint8Array.of(0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a);
const V1_PREFIX = new TextEncoder().encode("PROXY ");
/** The longest v1 line the spec allows, CRLF included. */
const V1_MAX_LENGTH = 107;
/** Signature, version and command, family, length. */
const V2_FIXED_LENGTH = 16;
/**
 * The most bytes after the fixed part that we accept, before reading them. The worst HAProxy can send is
 * just over 1 KB (IPv6 addresses, CRC32C, a 255-byte ALPN and authority, a 128-byte unique id, SSL with a
 * 64-character CN of 4-byte UTF-8 and cipher and algorithm names); real headers are 100-300 bytes. Twice the
 * worst leaves room for a few custom TLVs yet bounds what a peer can make us buffer before MQTT begins.
 */
const V2_MAX_LENGTH = 2048;
/** The address block's size for each family and transport byte we accept with the PROXY command. */
const V2_ADDRESS_BLOCK = new Map<number, number>([[0x00, 0], [0x11, 12], [0x21, 36], [0x31, 216]]);
const PP2_TYPE_AUTHORITY = 0x02;
const PP2_TYPE_CRC32C = 0x03;
const PP2_TYPE_UNIQUE_ID = 0x05;
const PP2_TYPE_SSL = 0x20;
const PP2_CLIENT_SSL = 0x01;
const PP2_CLIENT_CERT_CONN = 0x02;
const PP2_CLIENT_CERT_SESS = 0x04;
/** The spec's limit for PP2_TYPE_UNIQUE_ID. */
const UNIQUE_ID_MAX_LENGTH = 128;
type SslText = "version" | "commonName" | "cipher" | "signatureAlgorithm" | "keyAlgorithm";
const SSL_SUBTYPES = new Map<number, SslText>([
  [0x21, "version"],
  [0x22, "commonName"],
  [0x23, "cipher"],
  [0x24, "signatureAlgorithm"],
  [0x25, "keyAlgorithm"],
]);

const INCOMPLETE: ProxyParse = { kind: "incomplete" };
const invalid = (reason: string): ProxyParse => ({ kind: "invalid", reason });

/**
 * The PROXY header at the start of `bytes`. "incomplete" only while `bytes` can still grow into a valid
 * header: anything else is refused as soon as it is seen, so a client without a header is not kept waiting.
 */
export function parseProxyHeader(bytes: Uint8Array): ProxyParse {
  if (bytes.length === 0) return INCOMPLETE;
  const signature = bytes[0] === V2_SIGNATURE[0] ? V2_SIGNATURE : V1_PREFIX;
  const seen = Math.min(bytes.length, signature.length);
  for (let i = 0; i < seen; i++) {
    if (bytes[i] !== signature[i]) return invalid("no PROXY header");
  }
  if (seen < signature.length) return INCOMPLETE;
  return signature === V2_SIGNATURE ? parseV2(bytes) : parseV1(bytes);
}

/** The identity a verified client certificate gives, or undefined. */
export function verifiedCommonName(header: ProxyHeader): string | undefined {
  const ssl = header.ssl;
  // The client-certificate bits matter: HAProxy's verify field is 0 too when no certificate was presented.
  return ssl?.tls && ssl.clientCertificate && ssl.verified && ssl.commonName ? ssl.commonName : undefined;
}

/**
 * CRC32c (Castagnoli), as PP2_TYPE_CRC32C carries it; the four bytes at `zeroed` count as zeros, since the
 * checksum covers the header with its own field zeroed.
 */
export function crc32c(bytes: Uint8Array, zeroed = bytes.length): number {
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) {
    const byte = i >= zeroed && i < zeroed + 4 ? 0 : bytes[i];
    crc = CRC32C_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}

const CRC32C_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
  return c;
});

/** "PROXY TCP4|TCP6 source destination sport dport\r\n" or "PROXY UNKNOWN ...\r\n", strictly. */
function parseV1(bytes: Uint8Array): ProxyParse {
  const cr = indexOfCrlf(bytes, Math.min(bytes.length, V1_MAX_LENGTH));
  if (cr < 0) {
    return bytes.length < V1_MAX_LENGTH ? INCOMPLETE : invalid("no CRLF in 107 bytes of a v1 header");
  }
  const length = cr + 2;
  const fields = String.fromCharCode(...bytes.subarray(V1_PREFIX.length, cr)).split(" ");
  // The spec has the receiver ignore whatever follows UNKNOWN.
  if (fields[0] === "UNKNOWN") return { kind: "header", header: { version: 1, command: "proxy" }, length };
  if (fields.length !== 5) return invalid("malformed v1 header");
  const [protocol, sourceText, destinationText, sourcePort, destinationPort] = fields;
  const parse = protocol === "TCP4" ? parseIPv4 : protocol === "TCP6" ? parseIPv6 : undefined;
  if (parse === undefined) return invalid("unknown v1 protocol");
  const source = v1Address(parse(sourceText), sourcePort);
  const destination = v1Address(parse(destinationText), destinationPort);
  if (source === undefined || destination === undefined) return invalid(`bad ${protocol} address or port`);
  return { kind: "header", header: { version: 1, command: "proxy", source, destination }, length };
}

/** The index of the first CRLF before `end`, or -1. */
function indexOfCrlf(bytes: Uint8Array, end: number): number {
  for (let i = V1_PREFIX.length; i + 1 < end; i++) {
    if (bytes[i] === 0x0d && bytes[i + 1] === 0x0a) return i;
  }
  return -1;
}

function v1Address(address: Uint8Array | undefined, portText: string): ProxyAddress | undefined {
  if (address === undefined || !/^(0|[1-9][0-9]{0,4})$/.test(portText)) return undefined;
  const port = Number(portText);
  return port > 0xffff ? undefined : { address: addressText(address), port };
}

function parseV2(bytes: Uint8Array): ProxyParse {
  if (bytes.length < V2_FIXED_LENGTH) return INCOMPLETE;
  if (bytes[12] >> 4 !== 2) return invalid("unsupported v2 version");
  const command = bytes[12] & 0x0f;
  if (command > 1) return invalid("unknown v2 command");
  const length = bytes[14] << 8 | bytes[15];
  if (length > V2_MAX_LENGTH) return invalid("header too long");
  const end = V2_FIXED_LENGTH + length;
  if (command === 0) {
    // The spec has LOCAL's family and addresses ignored; like HAProxy, we skip its TLVs too: they describe
    // a connection with no client behind it.
    return bytes.length < end
      ? INCOMPLETE
      : { kind: "header", header: { version: 2, command: "local" }, length: end };
  }
  const family = bytes[13];
  const block = V2_ADDRESS_BLOCK.get(family);
  if (block === undefined) {
    return invalid(
      family >> 4 <= 3 && (family & 0x0f) === 2 ? "not a stream connection" : "unknown address family",
    );
  }
  if (length < block) return invalid("address block longer than the header");
  if (bytes.length < end) return INCOMPLETE;
  const tlvs = parseTlvs(bytes, V2_FIXED_LENGTH + block, end);
  if (typeof tlvs === "string") return invalid(tlvs);
  // AF_UNSPEC and AF_UNIX: the spec has the receiver keep the connection's own addresses.
  const size = family === 0x11 ? 4 : family === 0x21 ? 16 : 0;
  if (size === 0) return { kind: "header", header: { version: 2, command: "proxy", ...tlvs }, length: end };
  const at = V2_FIXED_LENGTH;
  const port = (i: number) => bytes[i] << 8 | bytes[i + 1];
  const source = { address: addressText(bytes.subarray(at, at + size)), port: port(at + 2 * size) };
  const destination = {
    address: addressText(bytes.subarray(at + size, at + 2 * size)),
    port: port(at + 2 * size + 2),
  };
  return {
    kind: "header",
    header: { version: 2, command: "proxy", source, destination, ...tlvs },
    length: end,
  };
}

type Tlvs = Pick<ProxyHeader, "authority" | "uniqueId" | "ssl">;

/** The TLVs between `start` and `end` that we use, or why they are refused. */
function parseTlvs(bytes: Uint8Array, start: number, end: number): Tlvs | string {
  const tlvs: { -readonly [K in keyof Tlvs]: Tlvs[K] } = {};
  let checksumAt = -1;
  const error = eachTlv(bytes, start, end, "TLV", (type, from, to) => {
    switch (type) {
      case PP2_TYPE_CRC32C:
        if (checksumAt >= 0) return "repeated CRC32C TLV";
        if (to - from !== 4) return "CRC32C TLV not 4 bytes";
        checksumAt = from;
        return undefined;
      case PP2_TYPE_AUTHORITY:
        if (tlvs.authority !== undefined) return "repeated authority TLV";
        tlvs.authority = text(bytes, from, to);
        return tlvs.authority === undefined ? "authority TLV not UTF-8 text" : undefined;
      case PP2_TYPE_UNIQUE_ID:
        if (tlvs.uniqueId !== undefined) return "repeated unique ID TLV";
        if (to - from > UNIQUE_ID_MAX_LENGTH) return "unique ID TLV longer than 128 bytes";
        tlvs.uniqueId = copyBytes(bytes.subarray(from, to));
        return undefined;
      case PP2_TYPE_SSL: {
        if (tlvs.ssl !== undefined) return "repeated SSL TLV";
        const ssl = parseSsl(bytes, from, to);
        if (typeof ssl === "string") return ssl;
        tlvs.ssl = ssl;
        return undefined;
      }
    }
    // NOOP, ALPN, NETNS and types of later versions of the spec tell the broker nothing it uses.
    return undefined;
  });
  if (error !== undefined) return error;
  if (checksumAt >= 0 && crc32c(bytes.subarray(0, end), checksumAt) !== readU32(bytes, checksumAt)) {
    return "checksum mismatch";
  }
  return tlvs;
}

/** PP2_TYPE_SSL's value: client flags, verify result, then sub-TLVs. */
function parseSsl(bytes: Uint8Array, start: number, end: number): ProxySsl | string {
  if (end - start < 5) return "SSL TLV shorter than 5 bytes";
  const texts: { [K in SslText]?: string } = {};
  const error = eachTlv(bytes, start + 5, end, "SSL sub-TLV", (type, from, to) => {
    const field = SSL_SUBTYPES.get(type);
    if (field === undefined) return undefined;
    if (texts[field] !== undefined) return `repeated SSL ${field}`;
    texts[field] = text(bytes, from, to);
    return texts[field] === undefined ? `SSL ${field} not UTF-8 text` : undefined;
  });
  if (error !== undefined) return error;
  const client = bytes[start];
  return {
    tls: (client & PP2_CLIENT_SSL) !== 0,
    clientCertificate: (client & (PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS)) !== 0,
    verified: readU32(bytes, start + 1) === 0,
    ...texts,
  };
}

/**
 * Calls `visit` with each type(1) length(2) value between `start` and `end`; the first error, its own or
 * `visit`'s, ends the walk. The TLVs must fill the space exactly, as HAProxy requires.
 */
function eachTlv(
  bytes: Uint8Array,
  start: number,
  end: number,
  what: string,
  visit: (type: number, from: number, to: number) => string | undefined,
): string | undefined {
  for (let at = start; at < end;) {
    if (end - at < 3) return `truncated ${what}`;
    const from = at + 3, to = from + (bytes[at + 1] << 8 | bytes[at + 2]);
    if (to > end) return `${what} overruns its space`;
    const error = visit(bytes[at], from, to);
    if (error !== undefined) return error;
    at = to;
  }
  return undefined;
}

/** Well-formed UTF-8 without U+0000 (so a CN "admin\0.evil" cannot pass for "admin"), or undefined. */
function text(bytes: Uint8Array, from: number, to: number): string | undefined {
  const value = decodeString(bytes, from, to);
  return typeof value === "string" ? value : undefined;
}

function readU32(bytes: Uint8Array, at: number): number {
  return (bytes[at] << 24 | bytes[at + 1] << 16 | bytes[at + 2] << 8 | bytes[at + 3]) >>> 0;
}
