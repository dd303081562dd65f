/**
 * Trusted-source lists (which peers may send a PROXY header) and the IP address text ↔ bytes conversions
 * that `proxy_protocol.ts` shares. Every address and range is held as 16 bytes, an IPv4 one as IPv4-mapped
 * IPv6 (::ffff:a.b.c.d): a server listening on `::` sees IPv4 peers in that form, so one comparison serves
 * both, an IPv4 range never matches a native IPv6 peer, and a range covering the mapped block (`::/0`,
 * `::ffff:0:0/96`) covers IPv4 peers as well.
 */

export interface AddressRange {
  /** The network's first address, 16 bytes, IPv4 as IPv4-mapped IPv6. */
  readonly bytes: Uint8Array;
  /** Leading bits of `bytes` an address must share: 96 + n for an IPv4 "/n". */
  readonly prefixLength: number;
}

const IPV4_MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
const DECIMAL = /^(0|[1-9][0-9]*)$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

/**
 * Parses "10.0.0.0/8", "192.168.1.7", "::1", "2001:db8::/32"; anything else is an error phrase. A range with
 * bits set after the prefix ("10.0.0.1/8") is refused rather than masked: in a list that decides who may
 * claim any client address, a typo should stop start-up, not widen or narrow the list silently.
 */
export function parseAddressRange(text: string): AddressRange | string {
  const slash = text.indexOf("/");
  const written = slash < 0 ? text : text.slice(0, slash);
  const bytes = addressBytes(written);
  if (bytes === undefined) return `"${written}" is not an IPv4 or IPv6 address`;
  const bits = written.includes(":") ? 128 : 32;
  if (slash < 0) return { bytes, prefixLength: 128 };
  const prefixText = text.slice(slash + 1);
  const prefix = DECIMAL.test(prefixText) ? Number(prefixText) : NaN;
  if (!(prefix <= bits)) return `prefix length "${prefixText}" is not 0-${bits}`;
  const prefixLength = 128 - bits + prefix;
  const network = bytes.map((byte, i) => byte & maskByte(prefixLength, i));
  if (network.some((byte, i) => byte !== bytes[i])) {
    const shown = addressText(bits === 32 ? network.subarray(12) : network);
    return `${text} has bits set after the prefix (the network is ${shown}/${prefix})`;
  }
  return { bytes, prefixLength };
}

/** Whether `address` (IPv4 or IPv6 text, as node:net reports a peer) is in `range`. */
export function inRange(range: AddressRange, address: string): boolean {
  const bytes = addressBytes(address);
  if (bytes === undefined) return false;
  for (let i = 0; i < 16; i++) {
    if (((bytes[i] ^ range.bytes[i]) & maskByte(range.prefixLength, i)) !== 0) return false;
  }
  return true;
}

/** The four bytes of a dotted quad, strictly: four decimal parts 0-255 without leading zeros. */
export function parseIPv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const bytes = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    if (parts[i].length > 3 || !DECIMAL.test(parts[i])) return undefined;
    const value = Number(parts[i]);
    if (value > 255) return undefined;
    bytes[i] = value;
  }
  return bytes;
}

/**
 * The 16 bytes of IPv6 text (RFC 4291 section 2.2: hex groups, one "::", a trailing dotted quad). A zone
 * ("fe80::1%eth0") is refused: the bytes alone would let fe80::1 on one interface pass for another.
 */
export function parseIPv6(text: string): Uint8Array | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const head = hexGroups(halves[0], halves.length === 1);
  const tail = halves.length === 2 ? hexGroups(halves[1], true) : [];
  if (head === undefined || tail === undefined) return undefined;
  const zeros = 8 - head.length - tail.length;
  // "::" stands for at least one zero group; without it the text must spell out all eight.
  if (halves.length === 2 ? zeros < 1 : zeros !== 0) return undefined;
  const bytes = new Uint8Array(16);
  [...head, ...new Array<number>(zeros).fill(0), ...tail].forEach((group, i) => {
    bytes[2 * i] = group >> 8;
    bytes[2 * i + 1] = group & 0xff;
  });
  return bytes;
}

/**
 * Four bytes as a dotted quad; sixteen as node:net prints IPv6 (RFC 5952: lowercase, the first longest run
 * of two or more zero groups as "::"), with an IPv4-mapped address as ::ffff:a.b.c.d.
 */
export function addressText(bytes: Uint8Array): string {
  if (bytes.length === 4) return bytes.join(".");
  if (IPV4_MAPPED_PREFIX.every((byte, i) => bytes[i] === byte)) {
    return `::ffff:${bytes.subarray(12).join(".")}`;
  }
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes[i] << 8 | bytes[i + 1]);
  let runStart = -1, runLength = 1;
  for (let i = 0; i < 8; i++) {
    let end = i;
    while (end < 8 && groups[end] === 0) end++;
    if (end - i > runLength) [runStart, runLength] = [i, end - i];
  }
  const hex = (from: number, to: number) => groups.slice(from, to).map((g) => g.toString(16)).join(":");
  return runStart < 0 ? hex(0, 8) : `${hex(0, runStart)}::${hex(runStart + runLength, 8)}`;
}

/** IPv4 or IPv6 text as 16 bytes, IPv4 mapped. */
function addressBytes(text: string): Uint8Array | undefined {
  const v4 = parseIPv4(text);
  if (v4 === undefined) return parseIPv6(text);
  const bytes = new Uint8Array(16);
  bytes.set(IPV4_MAPPED_PREFIX);
  bytes.set(v4, 12);
  return bytes;
}

/** The bits of byte `i` inside the first `prefixLength` bits. */
function maskByte(prefixLength: number, i: number): number {
  const bits = Math.min(8, Math.max(0, prefixLength - 8 * i));
  return (0xff00 >> bits) & 0xff;
}

/** The 16-bit groups of colon-separated hex ("" has none); a dotted quad may end it where `endsAddress`. */
function hexGroups(text: string, endsAddress: boolean): number[] | undefined {
  if (text === "") return [];
  const parts = text.split(":");
  const groups: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    if (HEX_GROUP.test(parts[i])) {
      groups.push(parseInt(parts[i], 16));
      continue;
    }
    const v4 = endsAddress && i === parts.length - 1 ? parseIPv4(parts[i]) : undefined;
    if (v4 === undefined) return undefined;
    groups.push(v4[0] << 8 | v4[1], v4[2] << 8 | v4[3]);
  }
  return groups;
}
