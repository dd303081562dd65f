import assert from "node:assert/strict";
import net from "node:net";
import {
  type AddressRange,
  addressText,
  inRange,
  parseAddressRange,
  parseIPv4,
  parseIPv6,
} from "../../src/transport/address_range.ts";

function range(text: string): AddressRange {
  const result = parseAddressRange(text);
  assert.ok(typeof result !== "string", `${text}: ${result}`);
  return result;
}

let seed = 4242;
const random = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 16;

Deno.test("address: IPv4 is a strict dotted quad", () => {
  assert.deepEqual(parseIPv4("192.0.2.255"), Uint8Array.of(192, 0, 2, 255));
  assert.deepEqual(parseIPv4("0.0.0.0"), new Uint8Array(4));
  for (
    const bad of [
      "",
      "1.2.3",
      "1.2.3.4.5",
      "01.2.3.4",
      "1.2.3.256",
      "1.2.3.-1",
      "1.2.3.+1",
      "1.2..4",
      " 1.2.3.4",
      "1.2.3.0x1",
      "1.2.3.1000",
    ]
  ) {
    assert.equal(parseIPv4(bad), undefined, bad);
  }
});

Deno.test("address: IPv6 text is accepted exactly where node:net accepts it, zones aside", () => {
  const samples = [
    "::",
    "::1",
    "1::",
    "2001:db8::1",
    "2001:DB8::1",
    "1:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7::",
    "::2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7",
    "1::2::3",
    ":::",
    ":1::2",
    "1::2:",
    "1:2:3:4:5:6:7::8",
    "::ffff:1.2.3.4",
    "::1.2.3.4",
    "1:2:3:4:5:6:1.2.3.4",
    "1:2:3:4:5:6:7:1.2.3.4",
    "1.2.3.4::",
    "::1.2.3.4:1",
    "::ffff:01.2.3.4",
    "12345::",
    "g::",
    "",
    ":",
    "1:2:3:4:5:6:7:8::",
    "::ffff:1.2.3",
    "1.2.3.4",
    "0::0",
  ];
  for (const text of samples) assert.equal(parseIPv6(text) !== undefined, net.isIPv6(text), text);
  // node:net accepts a zone; the bytes alone would let fe80::1 on one interface pass for another.
  assert.equal(net.isIPv6("fe80::1%eth0"), true);
  assert.equal(parseIPv6("fe80::1%eth0"), undefined);
  assert.deepEqual(parseIPv6("::ffff:1.2.3.4")?.subarray(10), Uint8Array.of(0xff, 0xff, 1, 2, 3, 4));
  assert.deepEqual(
    parseIPv6("1:2:3:4:5:6:7::"),
    Uint8Array.of(0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 0),
  );
});

Deno.test("address: IPv6 is printed as node:net prints it", () => {
  const cases: [string, string][] = [
    ["0:0:0:0:0:0:0:0", "::"],
    ["0:0:0:0:0:0:0:1", "::1"],
    ["2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
    ["1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"], // a single zero group is not compressed
    ["1:0:0:2:0:0:3:4", "1::2:0:0:3:4"], // of equal runs, the first
    ["1:0:0:2:0:0:0:4", "1:0:0:2::4"], // the longest
    ["::ffff:c000:0201", "::ffff:192.0.2.1"],
    ["fe80::", "fe80::"],
  ];
  for (const [text, printed] of cases) assert.equal(addressText(parseIPv6(text)!), printed, text);
  assert.equal(addressText(Uint8Array.of(10, 0, 0, 1)), "10.0.0.1");
  // Beyond the cases: the WHATWG URL host serializer follows the same rules (it spells mapped IPv4 in hex).
  for (let i = 0; i < 2000; i++) {
    const bytes = Uint8Array.from({ length: 16 }, () => (random() % 4 === 0 ? random() & 0xff : 0));
    const text = addressText(bytes);
    assert.deepEqual(parseIPv6(text), bytes, text);
    if (!text.startsWith("::ffff:") || text.split(":").length > 4) {
      assert.equal(`[${text}]`, new URL(`http://[${text}]/`).hostname, text);
    }
  }
});

Deno.test("address: ranges and single addresses, IPv4 and IPv6", () => {
  const private10 = range("10.0.0.0/8");
  assert.ok(inRange(private10, "10.255.0.1"));
  assert.ok(!inRange(private10, "11.0.0.0"));
  const narrow = range("192.168.4.0/22");
  assert.ok(inRange(narrow, "192.168.4.0") && inRange(narrow, "192.168.7.255"));
  assert.ok(!inRange(narrow, "192.168.8.0") && !inRange(narrow, "192.168.3.255"));
  const host = range("192.168.1.7");
  assert.ok(inRange(host, "192.168.1.7") && !inRange(host, "192.168.1.8"));
  assert.ok(inRange(range("192.168.1.7/32"), "192.168.1.7"));
  assert.ok(inRange(range("0.0.0.0/0"), "203.0.113.9"));

  const loopback6 = range("::1");
  assert.ok(inRange(loopback6, "::1") && inRange(loopback6, "0:0:0:0:0:0:0:1"));
  assert.ok(!inRange(loopback6, "::2") && !inRange(loopback6, "127.0.0.1"));
  const doc = range("2001:db8::/32");
  assert.ok(inRange(doc, "2001:db8:ffff::1") && inRange(doc, "2001:DB8::"));
  assert.ok(!inRange(doc, "2001:db9::") && !inRange(doc, "10.0.0.1"));
  assert.ok(inRange(range("fe80::/10"), "febf::1") && !inRange(range("fe80::/10"), "fec0::1"));

  assert.ok(!inRange(private10, "not an address"));
  assert.ok(!inRange(private10, ""));
  assert.ok(!inRange(loopback6, "fe80::1%eth0"));
});

Deno.test("address: IPv4-mapped peers match IPv4 ranges; IPv4 ranges match no other IPv6", () => {
  // A server listening on :: sees an IPv4 client as ::ffff:a.b.c.d.
  assert.ok(inRange(range("127.0.0.1"), "::ffff:127.0.0.1"));
  assert.ok(inRange(range("10.0.0.0/8"), "::ffff:10.1.2.3"));
  assert.ok(inRange(range("10.0.0.0/8"), "::ffff:a01:203"));
  assert.ok(!inRange(range("10.0.0.0/8"), "::ffff:11.1.2.3"));
  assert.ok(!inRange(range("10.0.0.0/8"), "::a01:203")); // IPv4-compatible, not mapped
  assert.ok(!inRange(range("10.0.0.0/8"), "a01:203::"));
  assert.ok(!inRange(range("0.0.0.0/0"), "::1"));
  assert.ok(!inRange(range("0.0.0.0/0"), "2001:db8::1"));
  // A mapped range is an IPv4 range, and a range covering the mapped block covers IPv4 peers.
  assert.ok(inRange(range("::ffff:10.0.0.0/104"), "10.9.8.7"));
  assert.ok(inRange(range("::ffff:0:0/96"), "192.0.2.1"));
  assert.ok(inRange(range("::/0"), "192.0.2.1"));
  assert.ok(!inRange(range("::/1"), "8000::1"));
});

Deno.test("address: malformed ranges are refused with one phrase", () => {
  const errors: [string, string][] = [
    ["", '"" is not an IPv4 or IPv6 address'],
    ["localhost", '"localhost" is not an IPv4 or IPv6 address'],
    ["10.0.0.0/8/8", 'prefix length "8/8" is not 0-32'],
    ["10.0.0.0/33", 'prefix length "33" is not 0-32'],
    ["10.0.0.0/", 'prefix length "" is not 0-32'],
    ["10.0.0.0/08", 'prefix length "08" is not 0-32'],
    ["10.0.0.0/-1", 'prefix length "-1" is not 0-32'],
    ["10.0.0.0/ 8", 'prefix length " 8" is not 0-32'],
    ["::/129", 'prefix length "129" is not 0-128'],
    ["/8", '"" is not an IPv4 or IPv6 address'],
    ["fe80::1%eth0/64", '"fe80::1%eth0" is not an IPv4 or IPv6 address'],
    // Bits after the prefix are refused, not masked: a typo in a trust list should stop start-up.
    ["10.0.0.1/8", "10.0.0.1/8 has bits set after the prefix (the network is 10.0.0.0/8)"],
    ["192.168.5.0/22", "192.168.5.0/22 has bits set after the prefix (the network is 192.168.4.0/22)"],
    ["2001:db8::1/32", "2001:db8::1/32 has bits set after the prefix (the network is 2001:db8::/32)"],
    ["::1/0", "::1/0 has bits set after the prefix (the network is ::/0)"],
  ];
  for (const [text, error] of errors) assert.equal(parseAddressRange(text), error, text);
  assert.deepEqual(range("10.0.0.0/8"), { bytes: parseIPv6("::ffff:10.0.0.0"), prefixLength: 104 });
  assert.deepEqual(range("::/0"), { bytes: new Uint8Array(16), prefixLength: 0 });
  assert.equal(
    parseAddressRange("1.2.3.4/0"),
    "1.2.3.4/0 has bits set after the prefix (the network is 0.0.0.0/0)",
  );
});
