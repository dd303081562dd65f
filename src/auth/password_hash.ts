/**
 * Mosquitto's password hashes, the text after `username:` in a password file:
 *
 * - `$7$ITERATIONS$SALT$HASH`: PBKDF2-HMAC-SHA512, what `mosquitto_passwd` 2.x writes (with 101 iterations);
 * - `$6$SALT$HASH`: one SHA-512 over the password bytes followed by the salt bytes, what Mosquitto 1.x wrote
 *   and `mosquitto_passwd -H sha512` still writes.
 *
 * SALT and HASH are padded standard base64; HASH is 64 bytes. Mosquitto 2.0 reads 12-byte salts only, 2.1
 * reads 12 or 64 bytes and writes 64: both are read here, and 12 bytes are written so that 2.0 reads them.
 * Hashing is Web Crypto's, which runs off the event loop.
 */

import { timingSafeEqual } from "node:crypto";

export type StoredHash =
  | {
    readonly kind: "pbkdf2-sha512";
    readonly iterations: number;
    readonly salt: Uint8Array;
    readonly hash: Uint8Array;
  }
  | { readonly kind: "sha512"; readonly salt: Uint8Array; readonly hash: Uint8Array };

/**
 * Iterations for the `$7$` hashes Vyoma writes: OWASP's figure for PBKDF2-HMAC-SHA512. Mosquitto's own 101
 * leaves a stolen file cheap to crack. One verification costs about 116 ms of one core on the 2-core machine
 * this was measured on (Web Crypto, Deno 2.9), off the event loop; `PasswordVerifier` caches successes so a
 * client that reconnects pays it once.
 */
export const DEFAULT_ITERATIONS = 210_000;

const SALT_BYTES = 12;
/** Mosquitto 2.1 writes salts as long as the hash. */
const LONG_SALT_BYTES = 64;
const HASH_BYTES = 64;
/** Mosquitto reads the count into a C int. */
const MAX_ITERATIONS = 2 ** 31 - 1;

/** Padded standard base64, as OpenSSL writes it: what Mosquitto's decoder is sure to read. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Reads `$7$...` or `$6$...`; a string is what is wrong with the text, as one phrase. */
export function parseHash(text: string): StoredHash | string {
  // "$7$101$salt$hash" splits into "", "7", "101", "salt", "hash".
  const fields = text.split("$");
  if (fields[0] !== "" || fields.length < 2) return 'not a hash: it does not start with "$"';
  switch (fields[1]) {
    case "7": {
      if (fields.length !== 5) return "a $7$ hash is $7$ITERATIONS$SALT$HASH";
      const iterations = /^[0-9]{1,10}$/.test(fields[2]) ? Number(fields[2]) : 0;
      if (iterations < 1 || iterations > MAX_ITERATIONS) {
        return `iterations must be a whole number from 1 to ${MAX_ITERATIONS} (got "${fields[2]}")`;
      }
      const parts = saltAndHash(fields[3], fields[4]);
      return typeof parts === "string" ? parts : { kind: "pbkdf2-sha512", iterations, ...parts };
    }
    case "6": {
      if (fields.length !== 4) return "a $6$ hash is $6$SALT$HASH";
      const parts = saltAndHash(fields[2], fields[3]);
      return typeof parts === "string" ? parts : { kind: "sha512", ...parts };
    }
    case "argon2id":
      return "argon2id hashes (Mosquitto 2.1 with Argon2) are not supported: Web Crypto has no Argon2";
    default:
      return `unknown hash type "$${fields[1]}$" (Mosquitto's are $7$ and $6$)`;
  }
}

function saltAndHash(saltText: string, hashText: string): { salt: Uint8Array; hash: Uint8Array } | string {
  const salt = decodeBase64(saltText);
  if (salt === undefined) return "the salt is not base64";
  if (salt.length !== SALT_BYTES && salt.length !== LONG_SALT_BYTES) {
    return `the salt must be ${SALT_BYTES} or ${LONG_SALT_BYTES} bytes (got ${salt.length})`;
  }
  const hash = decodeBase64(hashText);
  if (hash === undefined) return "the hash is not base64";
  if (hash.length !== HASH_BYTES) return `the hash must be ${HASH_BYTES} bytes (got ${hash.length})`;
  return { salt, hash };
}

function decodeBase64(text: string): Uint8Array | undefined {
  return BASE64.test(text) ? Uint8Array.fromBase64(text) : undefined;
}

/** The text `parseHash` reads back: `$7$ITERATIONS$SALT$HASH` or `$6$SALT$HASH`. */
export function formatHash(stored: StoredHash): string {
  const tail = `${stored.salt.toBase64()}$${stored.hash.toBase64()}`;
  return stored.kind === "pbkdf2-sha512" ? `$7$${stored.iterations}$${tail}` : `$6$${tail}`;
}

/** Whether `password` hashes to `stored`, compared in constant time. */
export async function verifyPassword(stored: StoredHash, password: Uint8Array): Promise<boolean> {
  const computed = await digest(stored, password);
  return computed.length === stored.hash.length && timingSafeEqual(computed, stored.hash);
}

/** A `$7$` hash of `password` with a fresh 12-byte salt. */
export async function hashPassword(
  password: Uint8Array,
  iterations: number = DEFAULT_ITERATIONS,
): Promise<StoredHash> {
  const salt = crypto.getRandomValues(new Uint8Array(SALT_BYTES));
  return { kind: "pbkdf2-sha512", iterations, salt, hash: await pbkdf2(password, salt, iterations) };
}

async function digest(stored: StoredHash, password: Uint8Array): Promise<Uint8Array> {
  if (stored.kind === "pbkdf2-sha512") return await pbkdf2(password, stored.salt, stored.iterations);
  const input = new Uint8Array(password.length + stored.salt.length);
  input.set(password);
  input.set(stored.salt, password.length);
  return new Uint8Array(await crypto.subtle.digest("SHA-512", input));
}

async function pbkdf2(password: Uint8Array, salt: Uint8Array, iterations: number): Promise<Uint8Array> {
  // Web Crypto's types take views of a plain ArrayBuffer only, and a Uint8Array may view a shared one: copies.
  const key = await crypto.subtle.importKey("raw", new Uint8Array(password), "PBKDF2", false, ["deriveBits"]);
  const params = { name: "PBKDF2", hash: "SHA-512", salt: new Uint8Array(salt), iterations };
  return new Uint8Array(await crypto.subtle.deriveBits(params, key, HASH_BYTES * 8));
}
