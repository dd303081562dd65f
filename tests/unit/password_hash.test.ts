/**
 * Mosquitto's `$7$` and `$6$` hashes: reading, writing, verifying. The vectors are fixed lines, each made by
 * a tool other than this module; tests/password_interop.test.ts makes fresh ones with mosquitto_passwd.
 */

import assert from "node:assert/strict";
import {
  DEFAULT_ITERATIONS,
  formatHash,
  hashPassword,
  parseHash,
  type StoredHash,
  verifyPassword,
} from "../../src/auth/password_hash.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

/** [hash, password, where it comes from] */
const VECTORS: [string, string, string][] = [
  [
    "$7$101$y4BJ7fYmrOw/RrrF$Qp0omCDD8syU/dEpfxdyOTbl/DrF88S4XRaUUaLbNo3q/PdCDPDihVCuM4hHHxauJpITgaf2K3ksXiVGTE7H+w==",
    "secret",
    "mosquitto_passwd 2.0.11 -c -b FILE alice secret",
  ],
  [
    "$6$FqwVVXfv4qqY0PTk$Hj1ySTIHuzbffgYC+gWuOSmJ/oZ37yuxp5Erf/ZuMVpI/cTKh+NgrcUsdt7oZ2U23EinmZRT8WnVpyQXEMbEdg==",
    "pw6",
    "mosquitto_passwd 2.0.11 -H sha512 -c -b FILE bob pw6",
  ],
  [
    // Salt 000102...0b; `(printf 'correct horse'; cat salt) | openssl dgst -sha512 -binary | base64`.
    "$6$AAECAwQFBgcICQoL$5W8GCQ9GLgmhmQvoa8jmRaPnsh82mRigdSv6mQsK0sMIII/WznlQb1g+RWddfoAKTMzBJP1deJU+Rp/1QZ0zZg==",
    "correct horse",
    "openssl dgst -sha512 over the password, then the salt",
  ],
  [
    // `openssl kdf -keylen 64 -kdfopt digest:SHA512 -kdfopt pass:'correct horse'
    //  -kdfopt hexsalt:000102030405060708090a0b -kdfopt iter:1000 PBKDF2`
    "$7$1000$AAECAwQFBgcICQoL$hc9UTFKiTSi9CHPMacLhbZUJ9kJTrF7ND3F3GC2tMIePa6GeHoJUhLaT6N8wIl0Zgp48kWcgb9fqfYUYiR/1vQ==",
    "correct horse",
    "openssl kdf PBKDF2",
  ],
  [
    // A 64-byte salt, as Mosquitto 2.1 writes: Python's hashlib.pbkdf2_hmac("sha512", b"s64", bytes(range(64)), 101).
    "$7$101$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==$" +
    "uCMI1V8F+fPifaxnVvGTKgIZxPtR5ehUAuYVEfmS3tZJA/hYu7Bqn3Le98PPePoki8JeZ386V82d5kqy/W7qhQ==",
    "s64",
    "hashlib, 64-byte salt",
  ],
];

function parsed(text: string): StoredHash {
  const stored = parseHash(text);
  assert.ok(typeof stored !== "string", `${text}: ${stored}`);
  return stored;
}

Deno.test("password hash: each vector verifies with its password and not with another", async () => {
  for (const [text, password, source] of VECTORS) {
    const stored = parsed(text);
    assert.equal(await verifyPassword(stored, bytes(password)), true, source);
    assert.equal(await verifyPassword(stored, bytes(`${password}x`)), false, source);
    assert.equal(await verifyPassword(stored, bytes("")), false, source);
  }
});

Deno.test("password hash: formatHash gives back the text parseHash read", () => {
  for (const [text] of VECTORS) assert.equal(formatHash(parsed(text)), text);
  const stored = parsed(VECTORS[0][0]);
  assert.equal(stored.kind, "pbkdf2-sha512");
  assert.equal(stored.kind === "pbkdf2-sha512" && stored.iterations, 101);
  assert.equal(stored.salt.length, 12);
  assert.equal(stored.hash.length, 64);
  assert.equal(parsed(VECTORS[1][0]).kind, "sha512");
});

Deno.test("password hash: hashPassword writes $7$ with the default count and a fresh 12-byte salt", async () => {
  const a = await hashPassword(bytes("pw"));
  const b = await hashPassword(bytes("pw"));
  assert.match(
    formatHash(a),
    new RegExp(`^\\$7\\$${DEFAULT_ITERATIONS}\\$[A-Za-z0-9+/]{16}\\$[A-Za-z0-9+/]{86}==$`),
  );
  assert.notDeepEqual(a.salt, b.salt);
  assert.equal(await verifyPassword(a, bytes("pw")), true);
  assert.equal(await verifyPassword(a, bytes("pW")), false);
  const cheap = await hashPassword(bytes("pw"), 5);
  assert.equal(cheap.kind === "pbkdf2-sha512" && cheap.iterations, 5);
  assert.deepEqual(parseHash(formatHash(cheap)), cheap);
});

Deno.test("password hash: binary passwords are hashed byte for byte", async () => {
  const password = new Uint8Array([0xff, 0xfe, 0x80, 0x01]);
  const stored = await hashPassword(password, 10);
  assert.equal(await verifyPassword(stored, password), true);
  assert.equal(await verifyPassword(stored, password.subarray(0, 3)), false);
});

Deno.test("password hash: a stored hash of the wrong length is a mismatch, not a crash", async () => {
  const stored = parsed(VECTORS[0][0]);
  assert.equal(
    await verifyPassword({ ...stored, hash: stored.hash.subarray(0, 32) }, bytes("secret")),
    false,
  );
});

Deno.test("password hash: malformed hashes say what is wrong", () => {
  const salt = "AAECAwQFBgcICQoL";
  const hash = VECTORS[2][0].split("$")[3];
  const cases: [string, RegExp][] = [
    ["plaintext", /does not start with "\$"/],
    ["", /does not start with "\$"/],
    ["$", /unknown hash type "\$\$"/],
    ["$5$abc$def", /unknown hash type "\$5\$"/],
    ["$argon2id$v=19$m=47104,t=1,p=1$c2FsdA$aGFzaA", /argon2id .*not supported/],
    [`$7$101$${salt}`, /\$7\$ITERATIONS\$SALT\$HASH/],
    [`$7$101$${salt}$${hash}$extra`, /\$7\$ITERATIONS\$SALT\$HASH/],
    [`$6$${salt}`, /\$6\$SALT\$HASH/],
    [`$7$0$${salt}$${hash}`, /iterations must be a whole number from 1 to 2147483647 \(got "0"\)/],
    [`$7$10abc$${salt}$${hash}`, /iterations .*got "10abc"/],
    [`$7$+101$${salt}$${hash}`, /iterations .*got "\+101"/],
    [`$7$2147483648$${salt}$${hash}`, /iterations .*got "2147483648"/],
    [`$7$$${salt}$${hash}`, /iterations .*got ""/],
    [`$7$101$not base64!$${hash}`, /the salt is not base64/],
    [`$7$101$AAECAwQFBgcICQoL$${hash.slice(0, -2)}`, /the hash is not base64/],
    [`$7$101$AAECAwQFBgcICQoLDA0ODw==$${hash}`, /the salt must be 12 or 64 bytes \(got 16\)/],
    [`$6$${salt}$${hash.slice(0, 44)}`, /the hash must be 64 bytes \(got 33\)/],
  ];
  for (const [text, expected] of cases) {
    const result = parseHash(text);
    assert.equal(typeof result, "string", text);
    assert.match(result as string, expected, text);
  }
});
