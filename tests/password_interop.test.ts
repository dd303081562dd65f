/**
 * Password files both ways between Vyoma and Debian's real Mosquitto 2.0: what `mosquitto_passwd` writes,
 * Vyoma's verifier accepts; what `vyoma insert-password` writes, the `mosquitto` broker accepts, checked
 * with `mosquitto_pub -u -P`. Ignored without those tools unless VYOMA_REQUIRE_MOSQUITTO=1.
 */

import assert from "node:assert/strict";
import { PasswordFileError, PasswordVerifier, readPasswordFile } from "../src/auth/password_file.ts";
import { at, mosquittoSkipped, runMosquittoTool } from "./helpers/mosquitto.ts";
import {
  insertedPassword,
  missingTools,
  MOSQUITTO,
  MOSQUITTO_PASSWD,
  mosquittoPasswd,
} from "./helpers/passwords.ts";
import { within } from "./helpers/wait.ts";

const ignore = mosquittoSkipped || missingTools(MOSQUITTO, MOSQUITTO_PASSWD);
if (ignore) console.warn("mosquitto or mosquitto_passwd not found: ignoring the password interop tests");

const encoder = new TextEncoder();

function interopTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, ignore, fn });
}

/** A temp directory with the path of a password file in it (not created), removed afterwards. */
async function tempFile(): Promise<{ path: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "vyoma-interop-" });
  return { path: `${dir}/passwd`, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

/** A port nothing listens on: Mosquitto cannot be told to pick one itself. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** The real Mosquitto broker with `password_file` and no anonymous clients, stopped on dispose. */
class Mosquitto implements AsyncDisposable {
  readonly port: number;
  readonly #child: Deno.ChildProcess;
  readonly #log: Promise<string>;

  private constructor(config: string, port: number) {
    this.port = port;
    this.#child = new Deno.Command(MOSQUITTO, { args: ["-c", config], stdout: "null", stderr: "piped" })
      .spawn();
    this.#log = new Response(this.#child.stderr).text();
  }

  static async started(passwordFile: string): Promise<Mosquitto> {
    const config = `${passwordFile}.conf`;
    const port = freePort();
    await Deno.writeTextFile(
      config,
      [
        `listener ${port} 127.0.0.1`,
        "allow_anonymous false",
        `password_file ${passwordFile}`,
        "log_dest stderr",
        // As root, Mosquitto switches to user "mosquitto", who cannot read a 0600 file that root owns.
        "user root",
      ].join("\n") + "\n",
    );
    const broker = new Mosquitto(config, port);
    try {
      await broker.#listening();
    } catch (error) {
      await broker[Symbol.asyncDispose]();
      throw new Error(`${(error as Error).message}; mosquitto said: ${await broker.#log}`);
    }
    return broker;
  }

  /** Whether `mosquitto_pub -u USER -P PASSWORD` gets its message in. */
  async accepts(user: string, password: string): Promise<boolean> {
    const args = [...at(this), "-u", user, "-P", password, "-t", "interop", "-m", "x"];
    const result = await runMosquittoTool("mosquitto_pub", args);
    if (result.code !== 0) assert.match(result.stderr, /not authori[sz]ed|bad user name or password/i);
    return result.code === 0;
  }

  async #listening(): Promise<void> {
    await within(
      (async () => {
        for (;;) {
          try {
            (await Deno.connect({ hostname: "127.0.0.1", port: this.port })).close();
            return;
          } catch {
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
        }
      })(),
      `mosquitto to listen on port ${this.port}`,
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // already exited
    }
    await this.#child.status;
    await this.#log;
  }
}

interopTest(
  "password interop: a file mosquitto_passwd wrote is read by Vyoma's verifier, $7$ and $6$",
  async () => {
    await using file = await tempFile();
    await mosquittoPasswd("-c", "-b", file.path, "alice", "correct horse");
    await mosquittoPasswd("-b", file.path, "bob", "battery staple");
    await mosquittoPasswd("-H", "sha512", "-b", file.path, "carol", "pw6");
    await mosquittoPasswd("-b", file.path, "dave", "gone");
    await mosquittoPasswd("-D", file.path, "dave");
    await mosquittoPasswd("-b", file.path, "bob", "changed");
    const text = await Deno.readTextFile(file.path);
    assert.match(text, /^alice:\$7\$101\$/m);
    assert.match(text, /^carol:\$6\$/m);
    const read = await readPasswordFile(file.path);
    assert.ok(!(read instanceof PasswordFileError), read instanceof PasswordFileError ? read.message : "");
    assert.deepEqual([...read.users.keys()], ["alice", "bob", "carol"]);
    const verifier = new PasswordVerifier(read);
    const check = (user: string, password: string) => verifier.verify(user, encoder.encode(password));
    assert.equal(await check("alice", "correct horse"), true);
    assert.equal(await check("bob", "changed"), true);
    assert.equal(await check("carol", "pw6"), true);
    assert.equal(await check("bob", "battery staple"), false);
    assert.equal(await check("alice", "pw6"), false);
    assert.equal(await check("dave", "gone"), false);
  },
);

interopTest(
  "password interop: a file vyoma insert-password wrote is accepted by the real mosquitto",
  async () => {
    await using file = await tempFile();
    await insertedPassword(file.path, "alice", "correct horse");
    await insertedPassword(file.path, "bob", "battery staple");
    {
      await using broker = await Mosquitto.started(file.path);
      assert.equal(await broker.accepts("alice", "correct horse"), true);
      assert.equal(await broker.accepts("bob", "battery staple"), true);
      assert.equal(await broker.accepts("alice", "battery staple"), false);
      assert.equal(await broker.accepts("mallory", "correct horse"), false);
    }
    // A changed password and a removed user, after Vyoma rewrote the file.
    await insertedPassword(file.path, "alice", "new horse");
    const removed = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", "--allow-write", "main.ts", "remove-password", file.path, "bob"],
    }).output();
    assert.equal(removed.code, 0);
    await using broker = await Mosquitto.started(file.path);
    assert.equal(await broker.accepts("alice", "new horse"), true);
    assert.equal(await broker.accepts("alice", "correct horse"), false);
    assert.equal(await broker.accepts("bob", "battery staple"), false);
  },
);

interopTest(
  "password interop: a file both tools edited works in both, every user's password intact",
  async () => {
    await using file = await tempFile();
    await mosquittoPasswd("-c", "-b", file.path, "alice", "correct horse");
    await mosquittoPasswd("-H", "sha512", "-b", file.path, "carol", "pw6");
    await insertedPassword(file.path, "bob", "battery staple");
    await mosquittoPasswd("-b", file.path, "dave", "fourth");
    const passwords: Record<string, string> = {
      alice: "correct horse",
      bob: "battery staple",
      carol: "pw6",
      dave: "fourth",
    };
    const read = await readPasswordFile(file.path);
    assert.ok(!(read instanceof PasswordFileError), read instanceof PasswordFileError ? read.message : "");
    const verifier = new PasswordVerifier(read);
    await using broker = await Mosquitto.started(file.path);
    for (const [user, password] of Object.entries(passwords)) {
      assert.equal(await verifier.verify(user, encoder.encode(password)), true, `vyoma: ${user}`);
      assert.equal(await broker.accepts(user, password), true, `mosquitto: ${user}`);
    }
  },
);
