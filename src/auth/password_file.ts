/**
 * Mosquitto's password file, one `username:hash` per line, and the verifier the broker checks CONNECTs with.
 *
 * Read as Mosquitto 2.0 reads it (checked against the real broker, 2.0.11): a line whose first character is
 * `#` is a comment; blank lines are skipped; the username ends at the first `:`; spaces, tabs and a CR around
 * the username and the hash are trimmed. Where Mosquitto drops a line and goes on (no `:`, an empty username,
 * a hash it cannot decode, logged or not) or lets the last of two lines for one user win silently, this
 * refuses the whole file with the line's number: a user silently gone is a lockout found only when devices
 * fail to connect, and Mosquitto versions disagree on which duplicate wins.
 */

import { quote } from "../observe/log.ts";
import {
  DEFAULT_ITERATIONS,
  formatHash,
  parseHash,
  type StoredHash,
  verifyPassword,
} from "./password_hash.ts";

export interface PasswordFile {
  readonly path: string;
  readonly users: ReadonlyMap<string, StoredHash>;
  /** The file's lines as read, without their `\n`, so an edit can keep every other line as it was. */
  readonly lines: readonly string[];
  /** Each user's line: an index into `lines`. */
  readonly lineOf: ReadonlyMap<string, number>;
}

/** What is wrong with a password file, as one line: `FILE:LINE: what` or `FILE: what`. */
export class PasswordFileError {
  constructor(readonly message: string) {}
}

const LF = 0x0a;
/** MQTT's limit: a username is a UTF-8 string with a 16-bit length. */
const MAX_USERNAME_BYTES = 65_535;

/**
 * Why `name` cannot be a username in a password file, or undefined when it can. Besides `:` and control
 * characters, Mosquitto would misread a leading `#` (a comment) and spaces or tabs at either end (trimmed).
 */
export function validUsername(name: string): string | undefined {
  if (name === "") return "a username cannot be empty";
  if (name.includes(":")) return 'a username cannot contain ":"';
  // C0, DEL and C1 controls: Mosquitto refuses a CONNECT whose username has any (mosquitto_passwd only C0, DEL).
  if (/\p{Cc}/u.test(name)) return "a username cannot contain control characters";
  if (name.startsWith("#")) return 'a username cannot start with "#" (Mosquitto reads the line as a comment)';
  if (name !== trimBlanks(name)) return "a username cannot start or end with a space (Mosquitto trims it)";
  if (new TextEncoder().encode(name).length > MAX_USERNAME_BYTES) {
    return `a username is at most ${MAX_USERNAME_BYTES} bytes of UTF-8`;
  }
  return undefined;
}

/** Mosquitto's trimblanks: C's isspace in the C locale, so ASCII whitespace only. */
function trimBlanks(text: string): string {
  return text.replace(/^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g, "");
}

/** Reads password file text; `path` only names the file in errors. */
export function parsePasswordFile(text: string, path: string): PasswordFile | PasswordFileError {
  const lines = splitLines(text);
  const users = new Map<string, StoredHash>();
  const lineOf = new Map<string, number>();
  for (const [index, raw] of lines.entries()) {
    const at = `${path}:${index + 1}`;
    const line = trimBlanks(raw);
    if (line === "" || raw.startsWith("#")) continue;
    const colon = line.indexOf(":");
    if (colon < 0) return new PasswordFileError(`${at}: no ":" between username and hash`);
    const username = trimBlanks(line.slice(0, colon));
    const why = validUsername(username);
    if (why !== undefined) return new PasswordFileError(`${at}: ${why}`);
    const earlier = lineOf.get(username);
    if (earlier !== undefined) {
      return new PasswordFileError(`${at}: user ${quote(username)} is also on line ${earlier + 1}`);
    }
    const hash = parseHash(trimBlanks(line.slice(colon + 1)));
    if (typeof hash === "string") {
      return new PasswordFileError(`${at}: user ${quote(username)}: ${hash}`);
    }
    users.set(username, hash);
    lineOf.set(username, index);
  }
  return { path, users, lines, lineOf };
}

/** Lines without their `\n`; a last `\n` ends the last line rather than starting an empty one. */
function splitLines(text: string): string[] {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  return lines;
}

/** Reads and parses a password file; a file that cannot be read is an error without a line. */
export async function readPasswordFile(path: string): Promise<PasswordFile | PasswordFileError> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    return new PasswordFileError(`${path}: cannot read: ${ioFailure(error)}`);
  }
  const text = decodeUtf8(bytes);
  if (typeof text !== "string") return new PasswordFileError(`${path}:${text.line}: not UTF-8 text`);
  return parsePasswordFile(text, path);
}

/** Why a file could not be read or written, in a few words. */
export function ioFailure(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file";
  if (error instanceof Deno.errors.IsADirectory) return "it is a directory";
  // Deno's own refusals are NotCapable; PermissionDenied comes from the operating system.
  if (error instanceof Deno.errors.NotCapable) return "Deno refused access (see --allow-read, --allow-write)";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  return error instanceof Error ? error.message : String(error);
}

/** The text, or the 1-based number of the first line that is not UTF-8. */
function decodeUtf8(bytes: Uint8Array): string | { line: number } {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const valid = (part: Uint8Array) => {
    try {
      decoder.decode(part);
      return true;
    } catch {
      return false;
    }
  };
  if (valid(bytes)) return decoder.decode(bytes);
  // A \n byte is never part of a longer UTF-8 sequence, so each line can be checked alone.
  let start = 0;
  let line = 1;
  for (let end = bytes.indexOf(LF); end >= 0; end = bytes.indexOf(LF, start)) {
    if (!valid(bytes.subarray(start, end))) return { line };
    start = end + 1;
    line++;
  }
  return { line };
}

/** A verification of one stored hash; tests pass one that counts calls. */
export type Verify = (stored: StoredHash, password: Uint8Array) => Promise<boolean>;

export interface VerifierOptions {
  /** How many verified credentials are remembered (least recently used go first); 1,000 by default. */
  cacheSize?: number;
  /** Hashes computed at once, the others waiting in order; one per core by default. */
  concurrency?: number;
  verify?: Verify;
}

/** A verifier the broker uses: checks a username/password against the file, with a bounded cache. */
export class PasswordVerifier {
  readonly #users: ReadonlyMap<string, StoredHash>;
  readonly #cacheSize: number;
  readonly #verify: Verify;
  readonly #turns: Turns;
  /** Keys of credentials that verified, oldest first (a Map keeps insertion order). */
  readonly #verified = new Map<string, true>();
  /** Verifications under way by key, so a storm of clients with one login costs one hash. */
  readonly #pending = new Map<string, Promise<boolean>>();
  /** What an unknown user's password is hashed against, so that it takes as long as a known user's. */
  readonly #dummy: StoredHash;
  /**
   * The HMAC key of cache keys, new per verifier and never written anywhere: a cache key alone cannot be
   * brute-forced at SHA-256 speed the way a plain hash of the password could.
   */
  readonly #cacheKey: Promise<CryptoKey>;

  constructor(file: PasswordFile, options: VerifierOptions = {}) {
    this.#users = file.users;
    this.#cacheSize = options.cacheSize ?? 1000;
    this.#verify = options.verify ?? verifyPassword;
    this.#turns = new Turns(options.concurrency ?? navigator.hardwareConcurrency);
    this.#dummy = dummyHash(file.users);
    this.#cacheKey = crypto.subtle.generateKey({ name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  }

  /**
   * True when `password` is `username`'s. False for a wrong password, an unknown user and no password alike,
   * in about the same time for the first two, so the answer never tells whether a username exists.
   */
  async verify(username: string, password: Uint8Array | undefined): Promise<boolean> {
    if (password === undefined) return false;
    const stored = this.#users.get(username);
    if (stored === undefined) {
      await this.#turns.run(() => this.#verify(this.#dummy, password));
      return false;
    }
    // The stored hash is part of the key, so a password changed in the file or in the CONNECT never hits.
    const key = await this.#keyOf(username, formatHash(stored), password);
    if (this.#verified.has(key)) {
      this.#remember(key);
      return true;
    }
    let pending = this.#pending.get(key);
    if (pending === undefined) {
      pending = this.#turns.run(() => this.#verify(stored, password)).finally(() =>
        this.#pending.delete(key)
      );
      this.#pending.set(key, pending);
    }
    const ok = await pending;
    if (ok) this.#remember(key);
    return ok;
  }

  /** Marks `key` the most recently used, dropping the least recently used past the cache's size. */
  #remember(key: string): void {
    this.#verified.delete(key);
    this.#verified.set(key, true);
    if (this.#verified.size > this.#cacheSize) {
      this.#verified.delete(this.#verified.keys().next().value!);
    }
  }

  async #keyOf(username: string, hashText: string, password: Uint8Array): Promise<string> {
    // A file's usernames and hashes hold no NUL, so NUL separators keep the three parts apart.
    const head = new TextEncoder().encode(`${username}\0${hashText}\0`);
    const input = new Uint8Array(head.length + password.length);
    input.set(head);
    input.set(password, head.length);
    const mac = await crypto.subtle.sign("HMAC", await this.#cacheKey, input);
    return new Uint8Array(mac).toBase64();
  }
}

/**
 * A queue for hashing. Unbounded, a storm of N logins would share the cores and all finish after N hashes'
 * time, past the clients' own timeouts, so they retry and it never ends; in turns, the first get in after
 * one hash's time and each later one soon after.
 */
class Turns {
  #free: number;
  readonly #waiting: (() => void)[] = [];

  constructor(concurrency: number) {
    this.#free = Math.max(1, concurrency);
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await task();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
}

/**
 * A hash no password matches, of the kind and cost most of the file's users have (or a new `$7$` hash's
 * when the file is empty), so an unknown user costs what a typical known one does.
 */
function dummyHash(users: ReadonlyMap<string, StoredHash>): StoredHash {
  // By iterations; 0 stands for $6$, which has none.
  const counts = new Map<number, number>();
  for (const stored of users.values()) {
    const cost = stored.kind === "pbkdf2-sha512" ? stored.iterations : 0;
    counts.set(cost, (counts.get(cost) ?? 0) + 1);
  }
  const [cost] = [...counts].reduce((a, b) => b[1] > a[1] ? b : a, [DEFAULT_ITERATIONS, 0]);
  const salt = crypto.getRandomValues(new Uint8Array(12));
  const hash = crypto.getRandomValues(new Uint8Array(64));
  return cost === 0
    ? { kind: "sha512", salt, hash }
    : { kind: "pbkdf2-sha512", iterations: cost, salt, hash };
}
