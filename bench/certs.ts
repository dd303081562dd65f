/**
 * The certificates of the bench's tls and wss listeners: a CA and a server certificate for localhost and
 * 127.0.0.1 signed by it, made with openssl by the tests' own generator (v3, EC P-256), written once into
 * bench/.cache/certs and reused by later runs.
 */

import { join } from "node:path";
import { certPems } from "../tests/helpers/certs.ts";
import { exists, SetupError } from "./generator.ts";

/** Absolute paths of the PEM files. */
export interface BenchCerts {
  /** The CA the generator trusts (--cafile). */
  readonly ca: string;
  /** The listeners' certificate and key. */
  readonly cert: string;
  readonly key: string;
}

export async function benchCerts(cacheDir: string): Promise<BenchCerts> {
  const dir = join(cacheDir, "certs");
  const files: BenchCerts = {
    ca: join(dir, "ca.pem"),
    cert: join(dir, "server.pem"),
    key: join(dir, "server.key"),
  };
  if ((await Promise.all(Object.values(files).map(exists))).every(Boolean)) return files;
  let pems;
  try {
    pems = await certPems();
  } catch (error) {
    throw new SetupError(`cannot make TLS certificates: ${error instanceof Error ? error.message : error}`);
  }
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(files.ca, pems.ca.cert);
  await Deno.writeTextFile(files.cert, pems.server.cert);
  // The key last and whole (renamed into place): a run interrupted before that leaves no key, so the next
  // run makes the set again rather than use half of it. Readable by all: Mosquitto started as root reads it
  // after switching to its own user, and it is a throwaway key for loopback listeners.
  await Deno.writeTextFile(`${files.key}.tmp`, pems.server.key, { mode: 0o644 });
  await Deno.rename(`${files.key}.tmp`, files.key);
  return files;
}
