/**
 * `vyoma insert-password FILE USERNAME` and `vyoma remove-password FILE USERNAME`: what `mosquitto_passwd`
 * does to a password file, one line at a time, every other line kept as it was.
 *
 * Each run rewrites the file atomically (a temp file in the same directory, fsync, rename over) while holding
 * an exclusive lock on `FILE.lock`, so concurrent runs apply one after the other and none loses another's
 * change. The lock is flock(2), which the kernel drops when its process dies: a killed run leaves no stale
 * lock to clear by hand. Any error leaves the file as it was.
 */

import { basename, dirname, join } from "node:path";
import { quote } from "../observe/log.ts";
import { formatHash, hashPassword } from "./password_hash.ts";
import {
  ioFailure,
  parsePasswordFile,
  type PasswordFile,
  PasswordFileError,
  readPasswordFile,
  validUsername,
} from "./password_file.ts";

/** What main prints: a success line (and a warning), or one error line; `usage` errors exit 2, others 1. */
export type CommandResult =
  | { ok: true; message: string; warning?: string }
  | { ok: false; usage: boolean; message: string };

/** MQTT's limit on a password's length. */
const MAX_PASSWORD_BYTES = 65_535;
/** The mode of a file this creates: readable by its owner only. */
const NEW_FILE_MODE = 0o600;

/** Adds `username` with a password from the terminal (asked twice) or stdin, or changes its password. */
export async function insertPassword(
  file: string,
  username: string,
  passwordStdin: boolean,
): Promise<CommandResult> {
  const why = validUsername(username);
  if (why !== undefined) return usage(`${why} (got ${quote(username)})`);
  if (!passwordStdin && !Deno.stdin.isTerminal()) {
    return usage("stdin is not a terminal: use --password-stdin to read the password from it");
  }
  const password = passwordStdin ? await readLine() : await askTwice();
  if (typeof password === "string") return failure(password);
  const problem = passwordProblem(password);
  if (problem !== undefined) return failure(problem);
  const line = `${username}:${formatHash(await hashPassword(password))}`;
  return await rewrite(file, true, (current, existed) => {
    const index = current.lineOf.get(username);
    if (index === undefined) {
      const verb = existed ? "added" : "created with";
      return { lines: [...current.lines, line], message: `${file}: ${verb} user ${quote(username)}` };
    }
    const lines = current.lines.with(index, line);
    return { lines, message: `${file}: changed the password of user ${quote(username)}` };
  });
}

/** Removes `username`'s line; a user not in the file is an error. */
export async function removePassword(file: string, username: string): Promise<CommandResult> {
  const why = validUsername(username);
  if (why !== undefined) return usage(`${why} (got ${quote(username)})`);
  return await rewrite(file, false, (current) => {
    const index = current.lineOf.get(username);
    if (index === undefined) return `${file}: no user ${quote(username)}`;
    const lines = current.lines.toSpliced(index, 1);
    return { lines, message: `${file}: removed user ${quote(username)}` };
  });
}

function usage(message: string): CommandResult {
  return { ok: false, usage: true, message };
}

function failure(message: string): CommandResult {
  return { ok: false, usage: false, message };
}

function passwordProblem(password: Uint8Array): string | undefined {
  if (password.length === 0) return "the password is empty";
  if (password.length > MAX_PASSWORD_BYTES) return `a password is at most ${MAX_PASSWORD_BYTES} bytes`;
  // Mosquitto hashes a password as a C string: it would never match what follows a NUL.
  if (password.includes(0)) return "a password cannot contain a NUL byte";
  return undefined;
}

// --- Reading the password --------------------------------------------------------------------------------

const CR = 0x0d;
const LF = 0x0a;

/** The first line of stdin, without its line end; reads no further than MQTT's limit allows. */
async function readLine(): Promise<Uint8Array | string> {
  const line: number[] = [];
  const chunk = new Uint8Array(1024);
  for (;;) {
    const n = await Deno.stdin.read(chunk);
    if (n === null) break;
    const end = chunk.subarray(0, n).indexOf(LF);
    line.push(...chunk.subarray(0, end < 0 ? n : end));
    if (end >= 0) break;
    if (line.length > MAX_PASSWORD_BYTES + 1) return `a password is at most ${MAX_PASSWORD_BYTES} bytes`;
  }
  if (line.at(-1) === CR) line.pop();
  return Uint8Array.from(line);
}

/** Asks for the password twice on the terminal, without echo; a string says why there is none. */
async function askTwice(): Promise<Uint8Array | string> {
  const terminal = new HiddenLines();
  const first = await terminal.read("Password: ");
  if (first === undefined) return "cancelled";
  const second = await terminal.read("Password again: ");
  if (second === undefined) return "cancelled";
  if (first.length !== second.length || first.some((byte, i) => byte !== second[i])) {
    return "the two passwords differ";
  }
  return first;
}

const CTRL_C = 0x03;
const CTRL_D = 0x04;
const BACKSPACE = 0x08;
const DEL = 0x7f;

/** Lines typed on the terminal in raw mode, so they are never echoed; bytes typed ahead are kept. */
class HiddenLines {
  readonly #ahead: number[] = [];
  /** A CR ended the last line: an LF right after it belongs to that line end. */
  #afterCr = false;

  /** The line typed after `prompt`, or undefined on Ctrl-C, or Ctrl-D at its start, or the end of input. */
  async read(prompt: string): Promise<Uint8Array | undefined> {
    // Raw before the prompt shows: what is typed as soon as it does must not be echoed.
    Deno.stdin.setRaw(true);
    try {
      Deno.stderr.writeSync(new TextEncoder().encode(prompt));
      const typed: number[] = [];
      const chunk = new Uint8Array(256);
      for (;;) {
        for (let byte = this.#ahead.shift(); byte !== undefined; byte = this.#ahead.shift()) {
          const afterCr = this.#afterCr;
          this.#afterCr = byte === CR;
          if (byte === LF && afterCr) continue;
          if (byte === CR || byte === LF) return Uint8Array.from(typed);
          if (byte === CTRL_C || (byte === CTRL_D && typed.length === 0)) return undefined;
          if (byte === DEL || byte === BACKSPACE) dropLastCharacter(typed);
          else typed.push(byte);
        }
        const n = await Deno.stdin.read(chunk);
        if (n === null) return undefined;
        this.#ahead.push(...chunk.subarray(0, n));
      }
    } finally {
      Deno.stdin.setRaw(false);
      Deno.stderr.writeSync(new TextEncoder().encode("\n"));
    }
  }
}

/** Backspace removes a character, which in UTF-8 is a lead byte and its continuation bytes. */
function dropLastCharacter(bytes: number[]): void {
  while (bytes.length > 0 && (bytes[bytes.length - 1] & 0xc0) === 0x80) bytes.pop();
  bytes.pop();
}

// --- Rewriting the file ----------------------------------------------------------------------------------

/** The file's new lines and what to say about them, or an error that leaves the file as it was. */
type Change = { lines: readonly string[]; message: string } | string;

/**
 * Applies `change` to the file under its lock: reads it (a missing file is an empty one when `create`),
 * writes the new text to a temp file with the old file's mode and owner (a new file gets 0600), fsyncs it
 * and renames it over the file.
 */
async function rewrite(
  file: string,
  create: boolean,
  change: (current: PasswordFile, existed: boolean) => Change,
): Promise<CommandResult> {
  // The real path, so that a symlinked file is replaced where it lives and every run locks the same file.
  const real = await Deno.realPath(file).catch((error: unknown) => error);
  if (real instanceof Error && !(create && real instanceof Deno.errors.NotFound)) {
    return failure(`${file}: cannot read: ${ioFailure(real)}`);
  }
  const target = typeof real === "string" ? real : file;
  // The lock file stays: removing it would let a waiting run lock a file that no longer has a name.
  const lock = await Deno.open(`${target}.lock`, { write: true, create: true, mode: NEW_FILE_MODE }).catch(
    (error: unknown) => `${file}: cannot create ${target}.lock: ${ioFailure(error)}`,
  );
  if (typeof lock === "string") return failure(lock);
  try {
    await lock.lock(true);
    let old: Deno.FileInfo | undefined;
    try {
      old = await Deno.stat(target);
    } catch (error) {
      if (!create || !(error instanceof Deno.errors.NotFound)) {
        return failure(`${file}: cannot read: ${ioFailure(error)}`);
      }
    }
    const current = old === undefined ? parsePasswordFile("", file) : await readPasswordFile(file);
    if (current instanceof PasswordFileError) return failure(current.message);
    const changed = change(current, old !== undefined);
    if (typeof changed === "string") return failure(changed);
    const written = await replace(target, changed.lines.map((line) => `${line}\n`).join(""), old);
    if (written !== undefined) return failure(`${file}: ${written}`);
    return { ok: true, message: changed.message, ...openToAll(file, old) };
  } finally {
    lock.close();
  }
}

/**
 * Writes `text` to a temp file beside `target` and renames it over `target`, keeping `old`'s mode and owner;
 * returns what went wrong, with the temp file removed and `target` untouched.
 */
async function replace(
  target: string,
  text: string,
  old: Deno.FileInfo | undefined,
): Promise<string | undefined> {
  const temp = join(dirname(target), `.${basename(target)}.${crypto.randomUUID().slice(0, 8)}.tmp`);
  let step = "create a temp file";
  try {
    const out = await Deno.open(temp, { write: true, createNew: true, mode: NEW_FILE_MODE });
    try {
      step = "write the temp file";
      const bytes = new TextEncoder().encode(text);
      for (let done = 0; done < bytes.length;) done += await out.write(bytes.subarray(done));
      if (old?.mode != null) {
        step = "keep the file's mode";
        await Deno.chmod(temp, old.mode & 0o777);
      }
      const now = await out.stat();
      if (old?.uid != null && old.gid != null && (old.uid !== now.uid || old.gid !== now.gid)) {
        step = `keep the file's owner (uid ${old.uid}, gid ${old.gid}: run as its owner or root)`;
        await Deno.chown(temp, old.uid, old.gid);
      }
      step = "fsync the temp file";
      await out.sync();
    } finally {
      out.close();
    }
    step = "rename the temp file over it";
    await Deno.rename(temp, target);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    return `cannot ${step}: ${ioFailure(error)}`;
  }
  await syncDirectory(dirname(target));
  return undefined;
}

/** Makes the rename itself durable; the new file is in place either way, so a failure here is not an error. */
async function syncDirectory(path: string): Promise<void> {
  try {
    using dir = await Deno.open(path);
    await dir.sync();
  } catch {
    // Some filesystems and platforms cannot fsync a directory.
  }
}

/** Mosquitto 2.0's own tool leaves files 0644: say so, without changing a mode the broker may rely on. */
function openToAll(file: string, old: Deno.FileInfo | undefined): { warning?: string } {
  if (old?.mode == null || (old.mode & 0o007) === 0) return {};
  const octal = (old.mode & 0o777).toString(8).padStart(4, "0");
  return {
    warning: `${file} is open to every user (mode ${octal}): chmod 600, or 640 for the broker's group`,
  };
}
