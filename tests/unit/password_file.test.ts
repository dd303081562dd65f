/**
 * The password file as Mosquitto 2.0 reads it (comments, blank lines, trimming; see password_file.ts for what
 * was checked against the real broker), its errors with line numbers, and the verifier's cache.
 */

import assert from "node:assert/strict";
import {
  parsePasswordFile,
  type PasswordFile,
  PasswordFileError,
  PasswordVerifier,
  readPasswordFile,
  validUsername,
  type Verify,
} from "../../src/auth/password_file.ts";
import { hashPassword, type StoredHash, verifyPassword } from "../../src/auth/password_hash.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

/** mosquitto_passwd 2.0.11's lines: alice's password is "secret", bob's "pw6". */
const ALICE =
  "$7$101$y4BJ7fYmrOw/RrrF$Qp0omCDD8syU/dEpfxdyOTbl/DrF88S4XRaUUaLbNo3q/PdCDPDihVCuM4hHHxauJpITgaf2K3ksXiVGTE7H+w==";
const BOB =
  "$6$FqwVVXfv4qqY0PTk$Hj1ySTIHuzbffgYC+gWuOSmJ/oZ37yuxp5Erf/ZuMVpI/cTKh+NgrcUsdt7oZ2U23EinmZRT8WnVpyQXEMbEdg==";

function parsed(text: string): PasswordFile {
  const file = parsePasswordFile(text, "passwd");
  assert.ok(!(file instanceof PasswordFileError), file instanceof PasswordFileError ? file.message : "");
  return file;
}

function errorOf(text: string): string {
  const file = parsePasswordFile(text, "passwd");
  assert.ok(file instanceof PasswordFileError, `expected an error for ${JSON.stringify(text)}`);
  return file.message;
}

Deno.test("password file: comments, blank lines, CRLF and blanks around the fields, as Mosquitto reads them", () => {
  const text = `# users\n\n   \nalice:${ALICE}\r\n \t bob\t:  ${BOB}  \n#carol:${ALICE}\n`;
  const file = parsed(text);
  assert.deepEqual([...file.users.keys()], ["alice", "bob"]);
  assert.deepEqual(file.lines, text.split("\n").slice(0, -1));
  assert.equal(file.lineOf.get("alice"), 3);
  assert.equal(file.lineOf.get("bob"), 4);
  assert.equal(parsed("").users.size, 0);
  // No newline at the end: the last line still counts.
  assert.deepEqual([...parsed(`alice:${ALICE}`).users.keys()], ["alice"]);
});

Deno.test("password file: a malformed line is one error with the file and the line number", () => {
  const cases: [string, string][] = [
    [`alice:${ALICE}\nbob\n`, 'passwd:2: no ":" between username and hash'],
    [`\n  :${ALICE}\n`, "passwd:2: a username cannot be empty"],
    [`a\u0001b:${ALICE}\n`, "passwd:1: a username cannot contain control characters"],
    [`alice:${ALICE}\n# x\nalice:${BOB}\n`, 'passwd:3: user "alice" is also on line 1'],
    [`alice:${ALICE}\nbob:$7$101$notbase64$\n`, 'passwd:2: user "bob": the salt is not base64'],
    ["alice:secret\n", 'passwd:1: user "alice": not a hash: it does not start with "$"'],
    [`alice:\n`, 'passwd:1: user "alice": not a hash: it does not start with "$"'],
    [`a:b:${ALICE}\n`, 'passwd:1: user "a": not a hash: it does not start with "$"'],
  ];
  for (const [text, expected] of cases) assert.equal(errorOf(text), expected);
});

Deno.test("password file: validUsername refuses what Mosquitto cannot read back or accept", () => {
  for (const good of ["alice", "a b", "ünïcødé", "a#b", "x".repeat(65_535)]) {
    assert.equal(validUsername(good), undefined, good);
  }
  const cases: [string, RegExp][] = [
    ["", /empty/],
    ["a:b", /":"/],
    ["a\tb", /control characters/],
    ["a\nb", /control characters/],
    ["a\u007fb", /control characters/],
    ["a\u0085b", /control characters/],
    ["#alice", /comment/],
    [" alice", /space/],
    ["alice ", /space/],
    ["é".repeat(32_768), /at most 65535 bytes/],
  ];
  for (const [name, expected] of cases) {
    assert.match(validUsername(name) ?? "", expected, JSON.stringify(name));
  }
});

Deno.test("password file: readPasswordFile names the file when it cannot be read, and the line that is not UTF-8", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vyoma-pwfile-" });
  try {
    const missing = await readPasswordFile(`${dir}/missing`);
    assert.ok(missing instanceof PasswordFileError);
    assert.equal(missing.message, `${dir}/missing: cannot read: no such file`);
    const directory = await readPasswordFile(dir);
    assert.ok(directory instanceof PasswordFileError);
    assert.match(directory.message, /: cannot read: /);
    await Deno.writeFile(
      `${dir}/latin1`,
      Uint8Array.from([...bytes(`alice:${ALICE}\n`), 0x62, 0xf6, 0x62, 0x3a]),
    );
    const latin1 = await readPasswordFile(`${dir}/latin1`);
    assert.ok(latin1 instanceof PasswordFileError);
    assert.equal(latin1.message, `${dir}/latin1:2: not UTF-8 text`);
    await Deno.writeTextFile(`${dir}/good`, `alice:${ALICE}\n`);
    const good = await readPasswordFile(`${dir}/good`);
    assert.ok(!(good instanceof PasswordFileError));
    assert.equal(good.path, `${dir}/good`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A verifier over `file` whose hash computations are counted, and what each was asked to hash against. */
function counted(
  file: PasswordFile,
  cacheSize?: number,
): { verifier: PasswordVerifier; calls: StoredHash[] } {
  const calls: StoredHash[] = [];
  const verify: Verify = (stored, password) => {
    calls.push(stored);
    return verifyPassword(stored, password);
  };
  return { verifier: new PasswordVerifier(file, { cacheSize, verify }), calls };
}

Deno.test("password verifier: right, wrong, unknown and missing passwords", async () => {
  const { verifier } = counted(parsed(`alice:${ALICE}\nbob:${BOB}\n`));
  assert.equal(await verifier.verify("alice", bytes("secret")), true);
  assert.equal(await verifier.verify("bob", bytes("pw6")), true);
  assert.equal(await verifier.verify("alice", bytes("pw6")), false);
  assert.equal(await verifier.verify("mallory", bytes("secret")), false);
  assert.equal(await verifier.verify("alice", undefined), false);
  assert.equal(await verifier.verify("alice", bytes("")), false);
});

Deno.test("password verifier: a second login with the same credentials hashes nothing; a wrong one always hashes", async () => {
  const { verifier, calls } = counted(parsed(`alice:${ALICE}\n`));
  assert.equal(await verifier.verify("alice", bytes("secret")), true);
  assert.equal(calls.length, 1);
  assert.equal(await verifier.verify("alice", bytes("secret")), true);
  assert.equal(calls.length, 1);
  assert.equal(await verifier.verify("alice", bytes("wrong")), false);
  assert.equal(await verifier.verify("alice", bytes("wrong")), false);
  assert.equal(calls.length, 3);
});

Deno.test("password verifier: a password changed in the CONNECT or in the file never hits the cache", async () => {
  const users = new Map<string, StoredHash>(parsed(`alice:${ALICE}\n`).users);
  const { verifier, calls } = counted({
    path: "passwd",
    users,
    lines: [],
    lineOf: new Map<string, number>(),
  });
  assert.equal(await verifier.verify("alice", bytes("secret")), true);
  assert.equal(await verifier.verify("alice", bytes("secret2")), false);
  assert.equal(calls.length, 2);
  // Same user, new hash (a reload would build a new verifier; the key must not depend on that).
  users.set("alice", await hashPassword(bytes("changed"), 10));
  assert.equal(await verifier.verify("alice", bytes("secret")), false);
  assert.equal(await verifier.verify("alice", bytes("changed")), true);
  assert.equal(calls.length, 4);
});

Deno.test("password verifier: the cache keeps the most recently used credentials, up to its size", async () => {
  const users = new Map<string, StoredHash>();
  for (const name of ["a", "b", "c"]) users.set(name, await hashPassword(bytes(name), 10));
  const { verifier, calls } = counted(
    { path: "passwd", users, lines: [], lineOf: new Map<string, number>() },
    2,
  );
  const login = (name: string) => verifier.verify(name, bytes(name));
  await login("a");
  await login("b");
  await login("a"); // hit: a becomes the most recent
  assert.equal(calls.length, 2);
  await login("c"); // evicts b, the least recently used
  await login("a");
  assert.equal(calls.length, 3);
  await login("b");
  assert.equal(calls.length, 4);
});

Deno.test("password verifier: concurrent logins with the same credentials share one hash", async () => {
  const { verifier, calls } = counted(parsed(`alice:${ALICE}\n`));
  const results = await Promise.all(
    Array.from({ length: 10 }, () => verifier.verify("alice", bytes("secret"))),
  );
  assert.deepEqual(results, Array(10).fill(true));
  assert.equal(calls.length, 1);
});

Deno.test("password verifier: an unknown user costs a hash like the file's most common kind", async () => {
  const pbkdf2 = counted(parsed(`alice:${ALICE}\nbob:${BOB}\ncarol:${ALICE}\n`));
  assert.equal(await pbkdf2.verifier.verify("mallory", bytes("secret")), false);
  assert.equal(pbkdf2.calls.length, 1);
  const dummy = pbkdf2.calls[0];
  assert.equal(dummy.kind === "pbkdf2-sha512" && dummy.iterations, 101);
  const sha512 = counted(parsed(`bob:${BOB}\n`));
  assert.equal(await sha512.verifier.verify("mallory", bytes("pw6")), false);
  assert.equal(sha512.calls[0].kind, "sha512");
  // An unknown user is never cached, even after the dummy "matched" nothing.
  assert.equal(await sha512.verifier.verify("mallory", bytes("pw6")), false);
  assert.equal(sha512.calls.length, 2);
});

Deno.test("password verifier: no more hashes run at once than its concurrency, unknown users included", async () => {
  const users = new Map<string, StoredHash>();
  for (const name of ["a", "b", "c", "d"]) users.set(name, await hashPassword(bytes(name), 10));
  let running = 0;
  let most = 0;
  const verify: Verify = async (stored, password) => {
    most = Math.max(most, ++running);
    await new Promise((resolve) => setTimeout(resolve, 5));
    running--;
    return await verifyPassword(stored, password);
  };
  const file = { path: "passwd", users, lines: [], lineOf: new Map<string, number>() };
  const verifier = new PasswordVerifier(file, { concurrency: 2, verify });
  const names = ["a", "b", "c", "d", "nobody", "nobody2"];
  const results = await Promise.all(names.map((name) => verifier.verify(name, bytes(name))));
  assert.deepEqual(results, [true, true, true, true, false, false]);
  assert.equal(most, 2);
});
