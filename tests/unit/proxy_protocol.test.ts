import assert from "node:assert/strict";
import {
  crc32c,
  parseProxyHeader,
  type ProxyParse,
  verifiedCommonName,
} from "../../src/transport/proxy_protocol.ts";

const ascii = (text: string) => new TextEncoder().encode(text);
const hex = (text: string) => Uint8Array.from(text.match(/../g)!, (pair) => parseInt(pair, 16));
const u16 = (n: number) => [n >> 8, n & 0xff];

const SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
const PROXY = 0x21, LOCAL = 0x20;
const INET = 0x11, INET6 = 0x21, UNIX = 0x31, UNSPEC = 0x00;
/** 192.0.2.10:51000 -> 198.51.100.1:1883 */
const INET_BLOCK = [192, 0, 2, 10, 198, 51, 100, 1, ...u16(51000), ...u16(1883)];

function v2(command: number, family: number, rest: number[]): Uint8Array {
  return Uint8Array.from([...SIGNATURE, command, family, ...u16(rest.length), ...rest]);
}

function tlv(type: number, value: number[] | string): number[] {
  const bytes = typeof value === "string" ? [...ascii(value)] : value;
  return [type, ...u16(bytes.length), ...bytes];
}

/** PP2_TYPE_SSL: client flags, verify result, sub-TLVs. */
function ssl(client: number, verify: number, ...subTlvs: number[][]): number[] {
  return tlv(0x20, [
    client,
    verify >>> 24,
    (verify >> 16) & 0xff,
    (verify >> 8) & 0xff,
    verify & 0xff,
    ...subTlvs.flat(),
  ]);
}

/** A v2 IPv4 header whose TLVs end with a CRC32C TLV: the right checksum, or `wrong` xor'd into it. */
function withCrc(tlvs: number[], wrong = 0): Uint8Array {
  const header = v2(PROXY, INET, [...INET_BLOCK, ...tlvs, ...tlv(0x03, [0, 0, 0, 0])]);
  const crc = (crc32c(header) ^ wrong) >>> 0;
  header.set([crc >>> 24, (crc >> 16) & 0xff, (crc >> 8) & 0xff, crc & 0xff], header.length - 4);
  return header;
}

function parsed(bytes: Uint8Array): Extract<ProxyParse, { kind: "header" }> {
  const result = parseProxyHeader(bytes);
  assert.ok(result.kind === "header", JSON.stringify(result));
  return result;
}

function reason(bytes: Uint8Array): string {
  const result = parseProxyHeader(bytes);
  assert.ok(result.kind === "invalid", JSON.stringify(result));
  return result.reason;
}

// Captured from HAProxy 2.6.12 (Debian 12) in mode tcp, frontend `bind ... ssl crt ... ca-file ... verify
// optional`, through `openssl s_client` with an EC P-256 client certificate (CN=device-7) from the same CA;
// each capture ends with the client's first bytes ("hi\n", a CONNECT) after the header.
/** `server ... send-proxy-v2-ssl-cn`, client certificate presented. */
const HAPROXY_SSL_CN =
  "0d0a0d0a000d0a515549540a211100297f0000017f000001c5d6c9b520001a0700000000210007544c5376312e3322" +
  "00086465766963652d3768690a";
/** The same without a client certificate: client flags 0x01, and verify is 0 all the same. */
const HAPROXY_NO_CERT =
  "0d0a0d0a000d0a515549540a2111001e7f0000017f000001c5dec9b520000f0100000000210007544c5376312e33" +
  "68690a";
/**
 * `send-proxy-v2 proxy-v2-options ssl,cert-cn,ssl-cipher,cert-sig,cert-key,authority,crc32c,unique-id` with
 * a unique-id-format, client SNI mqtt.example: HAProxy's own CRC32C, independent of ours.
 */
const HAPROXY_ALL =
  "0d0a0d0a000d0a515549540a211100a07f0000017f0000019324a1950300044d2e3c0402000c6d7174742e6578616d" +
  "706c6505002937463030303030313a393332345f37463030303030313a413139355f36423036353844335f303030322000" +
  "4f0700000000210007544c5376312e332200086465766963652d37250005454332353624001165636473612d776974682d53" +
  "4841323536230016544c535f4145535f3235365f47434d5f53484133383468690a";
/** `send-proxy-v2-ssl-cn`, client mosquitto_pub 2.0.11 with --cert/--key: the CONNECT follows. */
const HAPROXY_MOSQUITTO =
  "0d0a0d0a000d0a515549540a211100297f0000017f000001b3bac9b520001a0700000000210007544c5376312e" +
  "332200086465766963652d37100c00044d5154540402003c0000";
/** `server ... send-proxy` (v1), client on [::1]. */
const HAPROXY_V1_TCP6 = "50524f58592054435036203a3a31203a3a312034363138362036303730390d0a68690a";

Deno.test("proxy: crc32c gives the CRC-32C check value and treats the zeroed field as zeros", () => {
  assert.equal(crc32c(ascii("123456789")), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(0)), 0);
  const bytes = ascii("abcdefgh");
  assert.equal(crc32c(bytes, 2), crc32c(ascii("ab\0\0\0\0gh")));
});

Deno.test("proxy: v1 TCP4, TCP6 and UNKNOWN", () => {
  const tcp4 = parsed(ascii("PROXY TCP4 192.0.2.10 198.51.100.1 51000 1883\r\nMQTT"));
  assert.deepEqual(tcp4.header, {
    version: 1,
    command: "proxy",
    source: { address: "192.0.2.10", port: 51000 },
    destination: { address: "198.51.100.1", port: 1883 },
  });
  assert.equal(tcp4.length, 47);

  // IPv6 comes out as node:net prints it, whatever the spelling on the wire.
  const tcp6 = parsed(ascii("PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::ffff:192.0.2.1 0 65535\r\n"));
  assert.deepEqual(tcp6.header.source, { address: "2001:db8::1", port: 0 });
  assert.deepEqual(tcp6.header.destination, { address: "::ffff:192.0.2.1", port: 65535 });

  assert.deepEqual(parsed(ascii("PROXY UNKNOWN\r\n")), {
    kind: "header",
    header: { version: 1, command: "proxy" },
    length: 15,
  });
  // The spec's longest line, 107 bytes; what follows UNKNOWN is ignored.
  const longest =
    "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff " +
    "65535 65535\r\n";
  assert.equal(longest.length, 107);
  assert.deepEqual(parsed(ascii(longest)), {
    kind: "header",
    header: { version: 1, command: "proxy" },
    length: 107,
  });
  assert.deepEqual(parsed(ascii("PROXY UNKNOWN whatever \x01\r\n")).header, { version: 1, command: "proxy" });
});

Deno.test("proxy: v1 is strict about spaces, addresses, ports and the 107-byte line", () => {
  const bad = [
    "PROXY TCP4  192.0.2.10 198.51.100.1 51000 1883\r\n",
    "PROXY TCP4 192.0.2.10 198.51.100.1 51000 1883 \r\n",
    "PROXY TCP4 192.0.2.10 198.51.100.1 51000\r\n",
    "PROXY tcp4 192.0.2.10 198.51.100.1 51000 1883\r\n",
    "PROXY TCP5 192.0.2.10 198.51.100.1 51000 1883\r\n",
    "PROXY UDP4 192.0.2.10 198.51.100.1 51000 1883\r\n",
    "PROXY TCP4 192.0.2.010 198.51.100.1 51000 1883\r\n",
    "PROXY TCP4 192.0.2.256 198.51.100.1 51000 1883\r\n",
    "PROXY TCP4 192.0.2 198.51.100.1 51000 1883\r\n",
    "PROXY TCP4 ::1 198.51.100.1 51000 1883\r\n",
    "PROXY TCP6 192.0.2.10 ::1 51000 1883\r\n",
    "PROXY TCP6 fe80::1%eth0 ::1 51000 1883\r\n",
    "PROXY TCP6 1::2::3 ::1 51000 1883\r\n",
    "PROXY TCP4 192.0.2.10 198.51.100.1 051000 1883\r\n",
    "PROXY TCP4 192.0.2.10 198.51.100.1 65536 1883\r\n",
    "PROXY TCP4 192.0.2.10 198.51.100.1 -1 1883\r\n",
    "PROXY TCP4 192.0.2.10 198.51.100.1 +1 1883\r\n",
    "PROXY TCP4 192.0.2.10 198.51.100.1 51000 1883\n\r\n",
    "PROXY UNKNOWNX\r\n",
    "PROXY \r\n",
  ];
  for (const line of bad) reason(ascii(line));
  assert.equal(
    reason(ascii("PROXY TCP4 192.0.2.10 198.51.100.1 51000 0x10\r\n")),
    "bad TCP4 address or port",
  );
  // No CRLF within 107 bytes: refused at the 107th byte, not before.
  const long = "PROXY UNKNOWN " + "x".repeat(91) + "\r\n";
  assert.equal(long.length, 107);
  parsed(ascii(long));
  const tooLong = "PROXY UNKNOWN " + "x".repeat(92) + "\r\n";
  assert.equal(parseProxyHeader(ascii(tooLong.slice(0, 106))).kind, "incomplete");
  assert.equal(reason(ascii(tooLong.slice(0, 107))), "no CRLF in 107 bytes of a v1 header");
  assert.equal(reason(ascii(tooLong)), "no CRLF in 107 bytes of a v1 header");
});

Deno.test("proxy: v2 PROXY over IPv4 and IPv6; the length points at the client's first byte", () => {
  const mqtt = [0x10, 0x0c, 0x00, 0x04];
  const bytes = Uint8Array.from([...v2(PROXY, INET, INET_BLOCK), ...mqtt]);
  const inet = parsed(bytes);
  assert.deepEqual(inet.header, {
    version: 2,
    command: "proxy",
    source: { address: "192.0.2.10", port: 51000 },
    destination: { address: "198.51.100.1", port: 1883 },
  });
  assert.equal(inet.length, 28);
  assert.deepEqual([...bytes.subarray(inet.length)], mqtt);

  const source = [0x20, 0x01, 0x0d, 0xb8, ...new Array(11).fill(0), 1];
  const mapped = [...new Array(10).fill(0), 0xff, 0xff, 10, 1, 2, 3];
  const inet6 = parsed(v2(PROXY, INET6, [...source, ...mapped, ...u16(1), ...u16(8883)]));
  assert.deepEqual(inet6.header.source, { address: "2001:db8::1", port: 1 });
  assert.deepEqual(inet6.header.destination, { address: "::ffff:10.1.2.3", port: 8883 });
  assert.equal(inet6.length, 52);
});

Deno.test("proxy: v2 LOCAL, AF_UNSPEC and AF_UNIX carry no client address", () => {
  assert.deepEqual(parsed(v2(LOCAL, UNSPEC, [])), {
    kind: "header",
    header: { version: 2, command: "local" },
    length: 16,
  });
  // LOCAL's family and block are ignored, whatever they hold.
  const local = parsed(Uint8Array.from([...v2(LOCAL, 0xff, [1, 2, 3]), 0x10]));
  assert.deepEqual(local, { kind: "header", header: { version: 2, command: "local" }, length: 19 });
  assert.deepEqual(parsed(v2(PROXY, UNSPEC, [])).header, { version: 2, command: "proxy" });
  const unix = parsed(
    v2(PROXY, UNIX, [...ascii("/run/a.sock".padEnd(108, "\0")), ...new Array(108).fill(0)]),
  );
  assert.deepEqual(unix, { kind: "header", header: { version: 2, command: "proxy" }, length: 232 });
  // TLVs still count after an address-less block.
  assert.equal(parsed(v2(PROXY, UNSPEC, tlv(0x02, "mqtt.example"))).header.authority, "mqtt.example");
});

Deno.test("proxy: v2 AUTHORITY, UNIQUE_ID; NOOP, ALPN and unknown types are ignored", () => {
  const header = parsed(
    v2(PROXY, INET, [
      ...INET_BLOCK,
      ...tlv(0x04, [0, 0, 0]),
      ...tlv(0x01, "mqtt"),
      ...tlv(0x02, "brökér.example"),
      ...tlv(0x05, [1, 2, 3]),
      ...tlv(0xe0, []),
      ...tlv(0x30, "netns"),
    ]),
  ).header;
  assert.equal(header.authority, "brökér.example");
  assert.deepEqual(header.uniqueId, Uint8Array.of(1, 2, 3));
  assert.equal(header.ssl, undefined);
  assert.equal(
    reason(v2(PROXY, INET, [...INET_BLOCK, ...tlv(0x02, [0x6d, 0xc3, 0x28])])),
    "authority TLV not UTF-8 text",
  );
  reason(v2(PROXY, INET, [...INET_BLOCK, ...tlv(0x02, [0x6d, 0x00])]));
  assert.equal(
    reason(v2(PROXY, INET, [...INET_BLOCK, ...tlv(0x05, new Array(129).fill(7))])),
    "unique ID TLV longer than 128 bytes",
  );
  parsed(v2(PROXY, INET, [...INET_BLOCK, ...tlv(0x05, new Array(128).fill(7))]));
});

Deno.test("proxy: v2 SSL with a CN: the identity needs TLS, a client certificate and verify 0", () => {
  const cn = tlv(0x22, "device-7");
  const version = tlv(0x21, "TLSv1.3");
  const cases: [number, number, number[][], string | undefined][] = [
    [0x07, 0, [version, cn], "device-7"], // PP2_CLIENT_SSL | CERT_CONN | CERT_SESS
    [0x03, 0, [cn], "device-7"], // CERT_CONN only
    [0x05, 0, [cn], "device-7"], // CERT_SESS only (a resumed session)
    [0x07, 1, [cn], undefined], // not verified
    [0x07, 0x80000000, [cn], undefined],
    [0x01, 0, [cn], undefined], // no client certificate: verify is 0 all the same
    [0x06, 0, [cn], undefined], // not TLS
    [0x07, 0, [tlv(0x22, "")], undefined],
    [0x07, 0, [version], undefined],
  ];
  for (const [client, verify, subTlvs, identity] of cases) {
    const header = parsed(v2(PROXY, INET, [...INET_BLOCK, ...ssl(client, verify, ...subTlvs)])).header;
    assert.equal(verifiedCommonName(header), identity, `client ${client} verify ${verify}`);
  }
  assert.equal(verifiedCommonName({ version: 2, command: "proxy" }), undefined);

  const full = parsed(
    v2(PROXY, INET, [
      ...INET_BLOCK,
      ...ssl(
        0x07,
        0,
        version,
        tlv(0x22, "Gerät 7"),
        tlv(0x23, "TLS_AES_256_GCM_SHA384"),
        tlv(0x24, "ecdsa-with-SHA256"),
        tlv(0x25, "EC256"),
        tlv(0x26, "x25519"), // a sub-type from a later spec: ignored
      ),
    ]),
  ).header;
  assert.deepEqual(full.ssl, {
    tls: true,
    clientCertificate: true,
    verified: true,
    version: "TLSv1.3",
    commonName: "Gerät 7",
    cipher: "TLS_AES_256_GCM_SHA384",
    signatureAlgorithm: "ecdsa-with-SHA256",
    keyAlgorithm: "EC256",
  });
  assert.deepEqual(parsed(v2(PROXY, INET, [...INET_BLOCK, ...ssl(0, 5)])).header.ssl, {
    tls: false,
    clientCertificate: false,
    verified: false,
  });
});

Deno.test("proxy: malformed SSL TLVs are refused", () => {
  const header = (sslTlv: number[]) => v2(PROXY, INET, [...INET_BLOCK, ...sslTlv]);
  assert.equal(reason(header(tlv(0x20, [7, 0, 0, 0]))), "SSL TLV shorter than 5 bytes");
  assert.equal(
    reason(header(tlv(0x20, [7, 0, 0, 0, 0, 0x22, 0, 9, 0x41]))),
    "SSL sub-TLV overruns its space",
  );
  assert.equal(reason(header(tlv(0x20, [7, 0, 0, 0, 0, 0x22, 0]))), "truncated SSL sub-TLV");
  assert.equal(reason(header(ssl(7, 0, tlv(0x22, [0xff])))), "SSL commonName not UTF-8 text");
  // A NUL could make "admin\0.evil" pass for "admin" in whatever reads the name next.
  assert.equal(reason(header(ssl(7, 0, tlv(0x22, "admin\0.evil")))), "SSL commonName not UTF-8 text");
  assert.equal(reason(header(ssl(7, 0, tlv(0x22, "a"), tlv(0x22, "b")))), "repeated SSL commonName");
  assert.equal(reason(header([...ssl(7, 0), ...ssl(7, 0)])), "repeated SSL TLV");
});

Deno.test("proxy: v2 CRC32C is checked over the whole header with the field zeroed", () => {
  const tlvs = [...tlv(0x02, "mqtt.example"), ...ssl(7, 0, tlv(0x22, "device-7"))];
  assert.equal(parsed(withCrc(tlvs)).header.authority, "mqtt.example");
  assert.equal(parsed(withCrc([])).length, 35);
  assert.equal(reason(withCrc(tlvs, 1)), "checksum mismatch");
  assert.equal(reason(withCrc([], 0x80000000)), "checksum mismatch");
  // The checksum covers the addresses too.
  const tampered = withCrc(tlvs);
  tampered[19] ^= 1;
  assert.equal(reason(tampered), "checksum mismatch");
  assert.equal(reason(v2(PROXY, INET, [...INET_BLOCK, ...tlv(0x03, [0, 0, 0])])), "CRC32C TLV not 4 bytes");
  const twice = v2(PROXY, INET, [...INET_BLOCK, ...tlv(0x03, [0, 0, 0, 0]), ...tlv(0x03, [0, 0, 0, 0])]);
  assert.equal(reason(twice), "repeated CRC32C TLV");
});

Deno.test("proxy: invalid v2 fixed fields, lengths and TLVs", () => {
  assert.equal(reason(v2(0x11, INET, INET_BLOCK)), "unsupported v2 version");
  assert.equal(reason(v2(0x31, INET, INET_BLOCK)), "unsupported v2 version");
  assert.equal(reason(v2(0x22, INET, INET_BLOCK)), "unknown v2 command");
  assert.equal(reason(v2(0x2f, INET, INET_BLOCK)), "unknown v2 command");
  for (const dgram of [0x12, 0x22, 0x32, 0x02]) {
    assert.equal(reason(v2(PROXY, dgram, INET_BLOCK)), "not a stream connection", `family ${dgram}`);
  }
  for (const family of [0x01, 0x10, 0x13, 0x41, 0xff]) {
    assert.equal(reason(v2(PROXY, family, INET_BLOCK)), "unknown address family", `family ${family}`);
  }
  assert.equal(reason(v2(PROXY, INET, INET_BLOCK.slice(0, 11))), "address block longer than the header");
  assert.equal(reason(v2(PROXY, INET6, INET_BLOCK)), "address block longer than the header");
  assert.equal(reason(v2(PROXY, UNIX, new Array(215).fill(0))), "address block longer than the header");
  // Refused from the length field alone, not after waiting for the bytes it announces.
  assert.equal(reason(Uint8Array.from([...SIGNATURE, PROXY, INET, ...u16(2049)])), "header too long");
  assert.equal(reason(Uint8Array.from([...SIGNATURE, LOCAL, UNSPEC, ...u16(0xffff)])), "header too long");
  parsed(v2(PROXY, INET, [...INET_BLOCK, ...tlv(0xe0, new Array(2048 - 12 - 3).fill(0))]));
  assert.equal(reason(v2(PROXY, INET, [...INET_BLOCK, 0x04, 0])), "truncated TLV");
  assert.equal(reason(v2(PROXY, INET, [...INET_BLOCK, 0x04])), "truncated TLV");
  assert.equal(reason(v2(PROXY, INET, [...INET_BLOCK, 0x04, 0, 1])), "TLV overruns its space");
  assert.equal(
    reason(v2(PROXY, INET, [...INET_BLOCK, ...tlv(0x02, "a"), ...tlv(0x02, "a")])),
    "repeated authority TLV",
  );
  assert.equal(
    reason(v2(PROXY, INET, [...INET_BLOCK, ...tlv(0x05, [1]), ...tlv(0x05, [1])])),
    "repeated unique ID TLV",
  );
});

Deno.test("proxy: headers captured from HAProxy 2.6", () => {
  const sslCn = hex(HAPROXY_SSL_CN);
  const withCn = parsed(sslCn);
  assert.deepEqual(withCn.header, {
    version: 2,
    command: "proxy",
    source: { address: "127.0.0.1", port: 50646 },
    destination: { address: "127.0.0.1", port: 51637 },
    ssl: { tls: true, clientCertificate: true, verified: true, version: "TLSv1.3", commonName: "device-7" },
  });
  assert.equal(new TextDecoder().decode(sslCn.subarray(withCn.length)), "hi\n");
  assert.equal(verifiedCommonName(withCn.header), "device-7");

  const noCert = parsed(hex(HAPROXY_NO_CERT)).header;
  assert.deepEqual(noCert.ssl, { tls: true, clientCertificate: false, verified: true, version: "TLSv1.3" });
  assert.equal(verifiedCommonName(noCert), undefined);

  const allBytes = hex(HAPROXY_ALL);
  const all = parsed(allBytes);
  assert.equal(all.header.authority, "mqtt.example");
  assert.equal(new TextDecoder().decode(all.header.uniqueId), "7F000001:9324_7F000001:A195_6B0658D3_0002");
  assert.deepEqual(all.header.ssl, {
    tls: true,
    clientCertificate: true,
    verified: true,
    version: "TLSv1.3",
    commonName: "device-7",
    cipher: "TLS_AES_256_GCM_SHA384",
    signatureAlgorithm: "ecdsa-with-SHA256",
    keyAlgorithm: "EC256",
  });
  assert.equal(new TextDecoder().decode(allBytes.subarray(all.length)), "hi\n");
  const corrupted = allBytes.slice(0, all.length);
  corrupted[all.length - 1] ^= 0x20;
  assert.equal(reason(corrupted), "checksum mismatch");

  const mosquitto = hex(HAPROXY_MOSQUITTO);
  const beforeConnect = parsed(mosquitto);
  assert.equal(verifiedCommonName(beforeConnect.header), "device-7");
  assert.equal(mosquitto[beforeConnect.length], 0x10); // CONNECT

  const v1 = parsed(hex(HAPROXY_V1_TCP6));
  assert.deepEqual(v1.header.source, { address: "::1", port: 46186 });
  assert.equal(v1.length, 32);
});

const VALID: Uint8Array[] = [
  ascii("PROXY TCP4 192.0.2.10 198.51.100.1 51000 1883\r\n"),
  ascii("PROXY TCP6 2001:db8::1 ::1 51000 1883\r\n"),
  ascii("PROXY UNKNOWN\r\n"),
  v2(PROXY, INET, INET_BLOCK),
  v2(PROXY, INET6, new Array(36).fill(1)),
  v2(LOCAL, UNSPEC, []),
  v2(PROXY, UNSPEC, []),
  v2(PROXY, UNIX, new Array(216).fill(0)),
  withCrc([...tlv(0x02, "mqtt.example"), ...ssl(7, 0, tlv(0x22, "device-7"))]),
  hex(HAPROXY_ALL).subarray(0, 176),
  hex(HAPROXY_SSL_CN).subarray(0, 57),
];

Deno.test("proxy: every strict prefix of a valid header is incomplete", () => {
  for (const header of VALID) {
    assert.equal(parsed(header).length, header.length);
    for (let cut = 0; cut < header.length; cut++) {
      assert.deepEqual(parseProxyHeader(header.subarray(0, cut)), { kind: "incomplete" }, `cut ${cut}`);
    }
  }
});

Deno.test("proxy: anything that cannot start a PROXY header is refused at once", () => {
  for (
    const bytes of [
      Uint8Array.of(0x10), // an MQTT CONNECT
      ascii("GET / HTTP/1.1\r\n"),
      ascii("PROXY\r\n"),
      ascii("proxy "),
      Uint8Array.of(0x16, 0x03, 0x01), // a TLS ClientHello
      Uint8Array.of(0x0d, 0x0a, 0x0a),
      Uint8Array.from([...SIGNATURE.slice(0, 11), 0x0d]),
      Uint8Array.of(0x0d, 0x0a, 0x0d, 0x0a, 0x01),
    ]
  ) {
    assert.deepEqual(
      parseProxyHeader(bytes),
      { kind: "invalid", reason: "no PROXY header" },
      `${[...bytes]}`,
    );
  }
});

Deno.test("proxy: random and mutated input never throws", () => {
  let seed = 12345;
  const random = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 16;
  const check = (bytes: Uint8Array) => {
    const result = parseProxyHeader(bytes);
    if (result.kind === "header") assert.ok(result.length <= bytes.length);
    if (result.kind === "invalid") assert.ok(result.reason.length > 0);
  };
  for (let i = 0; i < 2000; i++) {
    const bytes = Uint8Array.from({ length: random() % 300 }, () => random() & 0xff);
    check(bytes);
    // The same behind each signature, so that the v1 and v2 parsers see it too.
    check(Uint8Array.from([...SIGNATURE, ...bytes]));
    // Printable text with a CR or LF now and then, so that some lines end.
    check(
      Uint8Array.from([
        ...ascii("PROXY "),
        ...bytes.map((b) => b < 4 ? 0x0d : b < 8 ? 0x0a : 0x20 + b % 0x5f),
      ]),
    );
  }
  for (const header of VALID) {
    for (let i = 0; i < 500; i++) {
      const mutated = header.slice();
      for (let n = 1 + random() % 3; n > 0; n--) mutated[random() % mutated.length] = random() & 0xff;
      check(mutated);
    }
  }
});
