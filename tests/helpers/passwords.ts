/**
 * Password files for tests: `vyoma insert-password` run as a user runs it, and Debian's `mosquitto_passwd`
 * and `mosquitto`, whose tests are ignored where they are missing unless VYOMA_REQUIRE_MOSQUITTO=1.
 */

import assert from "node:assert/strict";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export const MOSQUITTO = "/usr/sbin/mosquitto";
export const MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd";

/** Whether each of `paths` is missing, and so whether tests needing them are to be ignored. */
export function missingTools(...paths: string[]): boolean {
  const missing = paths.some((path) => {
    try {
      return !Deno.statSync(path).isFile;
    } catch {
      return true;
    }
  });
  return missing && Deno.env.get("VYOMA_REQUIRE_MOSQUITTO") !== "1";
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `vyoma ARGS` with `stdin` written to it, as the README says to: read and write permission only. */
export async function vyoma(
  args: string[],
  stdin = "",
  permissions = ["--allow-read", "--allow-write"],
): Promise<Run> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissions, "main.ts", ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(encoder.encode(stdin));
  await writer.close();
  const output = await child.output();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

/** `vyoma insert-password FILE USER --password-stdin` with `password` on stdin. */
export function insertPassword(file: string, user: string, password: string): Promise<Run> {
  return vyoma(["insert-password", file, user, "--password-stdin"], `${password}\n`);
}

/** The same, asserting it succeeded. */
export async function insertedPassword(file: string, user: string, password: string): Promise<void> {
  const run = await insertPassword(file, user, password);
  assert.equal(run.code, 0, run.stderr);
}

/** Runs `mosquitto_passwd ARGS`, asserting it succeeded. */
export async function mosquittoPasswd(...args: string[]): Promise<void> {
  const output = await new Deno.Command(MOSQUITTO_PASSWD, { args, stdin: "null" }).output();
  assert.equal(output.code, 0, decoder.decode(output.stderr));
}
