/**
 * `vyoma insert-password` and `vyoma remove-password` as a user runs them: `deno run main.ts ...`, each a real
 * child process, on files in a temp directory. Every error case checks that the file kept its bytes.
 */

import assert from "node:assert/strict";
import { PasswordFileError, readPasswordFile } from "../src/auth/password_file.ts";
import { type StoredHash, verifyPassword } from "../src/auth/password_hash.ts";
import { insertPassword, type Run, vyoma } from "./helpers/passwords.ts";
import { within } from "./helpers/wait.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** mosquitto_passwd 2.0.11's line for alice, password "secret". */
const ALICE =
  "alice:$7$101$y4BJ7fYmrOw/RrrF$Qp0omCDD8syU/dEpfxdyOTbl/DrF88S4XRaUUaLbNo3q/PdCDPDihVCuM4hHHxauJpITgaf2K3ksXiVGTE7H+w==";

/** A temp directory holding `passwd` (not created), removed afterwards. */
async function tempDir(): Promise<{ dir: string; file: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "vyoma-passwd-" });
  return { dir, file: `${dir}/passwd`, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

async function usersOf(file: string): Promise<ReadonlyMap<string, StoredHash>> {
  const read = await readPasswordFile(file);
  assert.ok(!(read instanceof PasswordFileError), read instanceof PasswordFileError ? read.message : "");
  return read.users;
}

async function passwordIs(file: string, user: string, password: string): Promise<boolean> {
  const stored = (await usersOf(file)).get(user);
  assert.ok(stored, `${user} is in ${file}`);
  return await verifyPassword(stored, encoder.encode(password));
}

/** Fails unless `run` failed with exit `code` and one line on stderr (two for usage: the line and the hint). */
function assertFailed(run: Run, code: 1 | 2, expected: RegExp): void {
  assert.equal(run.code, code, run.stderr);
  const lines = run.stderr.trimEnd().split("\n");
  assert.equal(lines.length, code === 2 ? 2 : 1, run.stderr);
  assert.match(lines[0], expected);
}

/** The files in `dir`: no temp file may be left behind. */
async function namesIn(dir: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
}

Deno.test("password cli: insert-password creates the file, mode 0600, with a $7$ line that verifies", async () => {
  await using tmp = await tempDir();
  const run = await insertPassword(tmp.file, "alice", "correct horse");
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout.trim(), `${tmp.file}: created with user "alice"`);
  assert.equal(run.stderr, "");
  assert.equal((await Deno.stat(tmp.file)).mode! & 0o777, 0o600);
  assert.match(
    await Deno.readTextFile(tmp.file),
    /^alice:\$7\$210000\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==\n$/,
  );
  assert.equal(await passwordIs(tmp.file, "alice", "correct horse"), true);
  assert.equal(await passwordIs(tmp.file, "alice", "correct horse "), false);
  // The lock file stays (see password_cli.ts); nothing else does.
  assert.deepEqual(await namesIn(tmp.dir), ["passwd", "passwd.lock"]);
});

Deno.test("password cli: insert-password changes or adds one line and keeps every other line byte for byte", async () => {
  await using tmp = await tempDir();
  const others = ["# operators", "", `  ${ALICE}  \r`, "#bob:$6$commented-out"];
  await insertPassword(tmp.file, "carol", "first");
  await Deno.writeTextFile(tmp.file, [...others, (await Deno.readTextFile(tmp.file)).trimEnd()].join("\n"));
  const changed = await insertPassword(tmp.file, "carol", "second");
  assert.equal(changed.code, 0, changed.stderr);
  assert.equal(changed.stdout.trim(), `${tmp.file}: changed the password of user "carol"`);
  let lines = (await Deno.readTextFile(tmp.file)).split("\n");
  assert.deepEqual(lines.slice(0, 4), others);
  assert.match(lines[4], /^carol:\$7\$/);
  assert.equal(lines.length, 6); // and a final newline
  assert.equal(await passwordIs(tmp.file, "carol", "second"), true);
  assert.equal(await passwordIs(tmp.file, "carol", "first"), false);
  assert.equal(await passwordIs(tmp.file, "alice", "secret"), true);

  const added = await insertPassword(tmp.file, "dave", "third");
  assert.equal(added.stdout.trim(), `${tmp.file}: added user "dave"`);
  lines = (await Deno.readTextFile(tmp.file)).split("\n");
  assert.deepEqual(lines.slice(0, 4), others);
  assert.match(lines[5], /^dave:\$7\$/);
  // alice's line, not rewritten, still has its blanks and CR; changing her password normalises it.
  await insertPassword(tmp.file, "alice", "new");
  assert.match((await Deno.readTextFile(tmp.file)).split("\n")[2], /^alice:\$7\$210000\$\S+$/);
});

Deno.test("password cli: remove-password removes one line; a missing user is exit 1 and the file is untouched", async () => {
  await using tmp = await tempDir();
  await Deno.writeTextFile(tmp.file, `# keep me\n${ALICE}\n`);
  await insertPassword(tmp.file, "bob", "pw");
  const removed = await vyoma(["remove-password", tmp.file, "alice"]);
  assert.equal(removed.code, 0, removed.stderr);
  assert.equal(removed.stdout.trim(), `${tmp.file}: removed user "alice"`);
  assert.deepEqual([...(await usersOf(tmp.file)).keys()], ["bob"]);
  assert.match(await Deno.readTextFile(tmp.file), /^# keep me\nbob:\$7\$\S+\n$/);

  const before = await Deno.readFile(tmp.file);
  assertFailed(
    await vyoma(["remove-password", tmp.file, "alice"]),
    1,
    new RegExp(`^vyoma: ${tmp.file}: no user "alice"$`),
  );
  assert.deepEqual(await Deno.readFile(tmp.file), before);
  assertFailed(
    await vyoma(["remove-password", `${tmp.dir}/none`, "alice"]),
    1,
    /none: cannot read: no such file$/,
  );
  assert.deepEqual(await namesIn(tmp.dir), ["passwd", "passwd.lock"]);
});

Deno.test("password cli: a username with ':', a control character, a leading '#' or edge blanks is exit 2", async () => {
  await using tmp = await tempDir();
  await Deno.writeTextFile(tmp.file, `${ALICE}\n`);
  const before = await Deno.readFile(tmp.file);
  const cases: [string, RegExp][] = [
    ["a:b", /cannot contain ":" \(got "a:b"\)/],
    ["a\tb", /control characters \(got "a\\tb"\)/],
    ["a\u0085b", /control characters/],
    ["", /cannot be empty/],
    ["#x", /cannot start with "#"/],
    [" x", /cannot start or end with a space/],
  ];
  for (const [user, expected] of cases) {
    assertFailed(await insertPassword(tmp.file, user, "pw"), 2, expected);
    assertFailed(await vyoma(["remove-password", tmp.file, user]), 2, expected);
  }
  assert.deepEqual(await Deno.readFile(tmp.file), before);
});

Deno.test("password cli: a malformed or unreadable file is one line naming it (and the line), exit 1, untouched", async () => {
  await using tmp = await tempDir();
  await Deno.writeTextFile(tmp.file, `# users\n${ALICE}\nbob:$7$101$notbase64$\n`);
  const before = await Deno.readFile(tmp.file);
  const expected = new RegExp(`^vyoma: ${tmp.file}:3: user "bob": the salt is not base64$`);
  assertFailed(await insertPassword(tmp.file, "carol", "pw"), 1, expected);
  assertFailed(await vyoma(["remove-password", tmp.file, "alice"]), 1, expected);
  assert.deepEqual(await Deno.readFile(tmp.file), before);

  await Deno.writeFile(tmp.file, Uint8Array.from([...encoder.encode(`${ALICE}\n`), 0xff, 0x3a, 0x0a]));
  assertFailed(
    await insertPassword(tmp.file, "carol", "pw"),
    1,
    new RegExp(`${tmp.file}:2: not UTF-8 text$`),
  );

  const directory = `${tmp.dir}/sub`;
  await Deno.mkdir(directory);
  assertFailed(await insertPassword(directory, "carol", "pw"), 1, /sub: cannot read: /);
  if (Deno.uid() !== 0) {
    // root reads any file, so only another user can see the operating system refuse.
    await Deno.writeTextFile(tmp.file, `${ALICE}\n`);
    await Deno.chmod(tmp.file, 0);
    assertFailed(await insertPassword(tmp.file, "carol", "pw"), 1, /passwd: cannot read: permission denied$/);
  }
});

Deno.test("password cli: without write permission Deno refuses, in one line, and the file is untouched", async () => {
  await using tmp = await tempDir();
  await Deno.writeTextFile(tmp.file, `${ALICE}\n`);
  const run = await vyoma(["remove-password", tmp.file, "alice"], "", ["--allow-read"]);
  assertFailed(run, 1, /passwd: cannot create .*passwd\.lock: Deno refused access/);
  assert.equal(await Deno.readTextFile(tmp.file), `${ALICE}\n`);
});

Deno.test("password cli: an empty password or one with a NUL is refused; --password-stdin takes one line", async () => {
  await using tmp = await tempDir();
  await Deno.writeTextFile(tmp.file, `${ALICE}\n`);
  const before = await Deno.readFile(tmp.file);
  assertFailed(await insertPassword(tmp.file, "bob", ""), 1, /^vyoma: the password is empty$/);
  assertFailed(await vyoma(["insert-password", tmp.file, "bob", "--password-stdin"]), 1, /empty/);
  assertFailed(
    await insertPassword(tmp.file, "bob", "a\0b"),
    1,
    /^vyoma: a password cannot contain a NUL byte$/,
  );
  assert.deepEqual(await Deno.readFile(tmp.file), before);

  const run = await vyoma(["insert-password", tmp.file, "bob", "--password-stdin"], "p w\r\nsecond line\n");
  assert.equal(run.code, 0, run.stderr);
  assert.equal(await passwordIs(tmp.file, "bob", "p w"), true);
  // No line end at all: the whole of stdin.
  await vyoma(["insert-password", tmp.file, "carol", "--password-stdin"], "ünï");
  assert.equal(await passwordIs(tmp.file, "carol", "ünï"), true);
});

Deno.test("password cli: bad command lines are exit 2 with the usage hint", async () => {
  await using tmp = await tempDir();
  const cases: [string[], RegExp][] = [
    [["insert-password", tmp.file], /insert-password takes a password file and a username/],
    [["remove-password", tmp.file, "a", "b"], /remove-password takes a password file and a username/],
    [["insert-password", tmp.file, "a", "--config", "x"], /takes a password file and a username/],
    [
      ["remove-password", tmp.file, "a", "--password-stdin"],
      /--password-stdin goes with insert-password only/,
    ],
    // stdin is a pipe, not a terminal, and --password-stdin is missing.
    [["insert-password", tmp.file, "a"], /stdin is not a terminal: use --password-stdin/],
  ];
  for (const [args, expected] of cases) assertFailed(await vyoma(args, "pw\n"), 2, expected);
  assert.deepEqual(await namesIn(tmp.dir), []);
});

Deno.test("password cli: an existing file keeps its mode; one open to every user gets a warning", async () => {
  await using tmp = await tempDir();
  await Deno.writeTextFile(tmp.file, `${ALICE}\n`);
  await Deno.chmod(tmp.file, 0o640);
  const quiet = await insertPassword(tmp.file, "bob", "pw");
  assert.equal(quiet.stderr, "");
  assert.equal((await Deno.stat(tmp.file)).mode! & 0o777, 0o640);
  await Deno.chmod(tmp.file, 0o644);
  const warned = await insertPassword(tmp.file, "carol", "pw");
  assert.equal(warned.code, 0);
  assert.equal((await Deno.stat(tmp.file)).mode! & 0o777, 0o644);
  assert.match(
    warned.stderr.trim(),
    /^vyoma: warning: .*passwd is open to every user \(mode 0644\): chmod 600/,
  );
});

Deno.test("password cli: a symlinked file is replaced where it lives, and the link stays a link", async () => {
  await using tmp = await tempDir();
  await Deno.writeTextFile(tmp.file, `${ALICE}\n`);
  const link = `${tmp.dir}/link`;
  await Deno.symlink(tmp.file, link);
  assert.equal((await insertPassword(link, "bob", "pw")).code, 0);
  assert.ok((await Deno.lstat(link)).isSymlink);
  assert.deepEqual([...(await usersOf(tmp.file)).keys()], ["alice", "bob"]);
});

Deno.test("password cli: five insert-password runs at once wait for the lock and leave every user", async () => {
  await using tmp = await tempDir();
  await Deno.writeTextFile(tmp.file, `${ALICE}\n`);
  const before = await Deno.readFile(tmp.file);
  const users = ["u1", "u2", "u3", "u4", "u5"];
  // Holding the lock the runs take shows they wait for it; released, they all go at once.
  const lock = await Deno.open(`${await Deno.realPath(tmp.file)}.lock`, { write: true, create: true });
  await lock.lock(true);
  let finished = 0;
  const runs = users.map((user) => insertPassword(tmp.file, user, `pw-${user}`).finally(() => finished++));
  await new Promise((resolve) => setTimeout(resolve, 2000));
  assert.equal(finished, 0, "a run went ahead without the lock");
  assert.deepEqual(await Deno.readFile(tmp.file), before);
  lock.close();
  for (const run of await Promise.all(runs)) assert.equal(run.code, 0, run.stderr);
  assert.deepEqual([...(await usersOf(tmp.file)).keys()].sort(), ["alice", ...users]);
  for (const user of users) assert.equal(await passwordIs(tmp.file, user, `pw-${user}`), true);
  assert.deepEqual(await namesIn(tmp.dir), ["passwd", "passwd.lock"]);
});

// --- On a terminal ---------------------------------------------------------------------------------------

const scriptMissing = await Deno.stat("/usr/bin/script").then(() => false, () => true);

/**
 * Runs `vyoma ARGS` on a pseudo-terminal (util-linux `script`), typing each of `typed` once the output
 * shows the prompt before it; returns the exit code and everything the terminal showed.
 */
async function onTerminal(args: string[], typed: [prompt: string, text: string][]): Promise<Run> {
  const command = [Deno.execPath(), "run", "--allow-read", "--allow-write", "main.ts", ...args].join(" ");
  const child = new Deno.Command("/usr/bin/script", {
    args: ["-qec", command, "/dev/null"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let shown = "";
  const reading = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) shown += chunk;
  })();
  const writer = child.stdin.getWriter();
  let seen = 0;
  for (const [prompt, text] of typed) {
    await within(
      (async () => {
        while (shown.indexOf(prompt, seen) < 0) await new Promise((resolve) => setTimeout(resolve, 10));
        seen = shown.indexOf(prompt, seen) + prompt.length;
      })(),
      `the prompt ${JSON.stringify(prompt)} (shown so far: ${JSON.stringify(shown)})`,
    );
    await writer.write(encoder.encode(text));
  }
  const { code } = await within(child.status, "vyoma on a terminal to exit", 10_000);
  await writer.close().catch(() => {});
  await reading;
  return { code, stdout: shown, stderr: decoder.decode(await new Response(child.stderr).arrayBuffer()) };
}

Deno.test({
  name:
    "password cli: on a terminal insert-password asks twice without echo; two different answers write nothing",
  ignore: scriptMissing,
  fn: async () => {
    await using tmp = await tempDir();
    const ok = await onTerminal(["insert-password", tmp.file, "alice"], [
      ["Password: ", "s3cret\r"],
      ["Password again: ", "s3cret\r"],
    ]);
    assert.equal(ok.code, 0, ok.stdout);
    assert.ok(!ok.stdout.includes("s3cret"), `the password was echoed: ${JSON.stringify(ok.stdout)}`);
    assert.match(ok.stdout, /created with user "alice"/);
    assert.equal(await passwordIs(tmp.file, "alice", "s3cret"), true);

    const before = await Deno.readFile(tmp.file);
    // A typo fixed with backspace still matches; a different second answer does not.
    const fixed = await onTerminal(["insert-password", tmp.file, "bob"], [
      ["Password: ", "pwx\x7f\r"],
      ["Password again: ", "pw\r"],
    ]);
    assert.equal(fixed.code, 0, fixed.stdout);
    assert.equal(await passwordIs(tmp.file, "bob", "pw"), true);
    const after = await Deno.readFile(tmp.file);
    const differ = await onTerminal(["insert-password", tmp.file, "carol"], [
      ["Password: ", "one\r"],
      ["Password again: ", "two\r"],
    ]);
    assert.equal(differ.code, 1, differ.stdout);
    assert.match(differ.stdout, /vyoma: the two passwords differ/);
    assert.deepEqual(await Deno.readFile(tmp.file), after);
    assert.notDeepEqual(before, after);
  },
});
