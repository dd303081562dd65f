/**
 * Authentication with a password file (`auth.password_file`) in Mosquitto's format: CONNACK codes for a
 * right and a wrong password, an unknown user and an anonymous client, at 3.1.1 and 5.0; the same answer for
 * an unknown user as for a wrong password; packets sent before CONNACK wait for the check; start-up errors.
 * The files are written by Debian's own `mosquitto_passwd`, so what is tested is Vyoma reading Mosquitto's
 * files (the other direction is in tests/password_interop.test.ts).
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import mqttPacket from "mqtt-packet";
import type * as MP from "mqtt-packet";
import { StartError } from "../src/server.ts";
import { startBroker, type TestBroker } from "./helpers/broker.ts";
import { runMosquittoTool } from "./helpers/mosquitto.ts";
import { missingTools, MOSQUITTO_PASSWD, mosquittoPasswd } from "./helpers/passwords.ts";
import { connectPacket, RawClient } from "./helpers/raw.ts";

// --- Local helpers -----------------------------------------------------------------------------------

/** Ignored without mosquitto_passwd (Debian's `mosquitto` package), unless CI requires it. */
const ignore = missingTools(MOSQUITTO_PASSWD);
if (ignore) {
  console.warn("mosquitto_passwd not found: the password file tests are ignored (apt-get install mosquitto)");
}

/** A password file with `users` (name to password), written by mosquitto_passwd; removed on dispose. */
async function passwordFile(users: Record<string, string>): Promise<{ path: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "vyoma-auth-" });
  const path = `${dir}/passwd`;
  await Deno.writeTextFile(path, "");
  for (const [user, password] of Object.entries(users)) {
    await mosquittoPasswd("-b", path, user, password);
  }
  return { path, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

function authTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, ignore, fn });
}

/** The CONNACK code a CONNECT with these credentials gets (return code at 3.1.1, reason code at 5.0). */
async function connackFor(
  broker: TestBroker,
  version: 4 | 5,
  username?: string,
  password?: string,
): Promise<number> {
  await using client = await RawClient.open(broker.port, version);
  const connack = await client.connect(connectPacket({
    protocolVersion: version,
    clientId: `c-${username ?? "anonymous"}-${version}`,
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password: Buffer.from(password) } : {}),
  }));
  return version === 5 ? connack.reasonCode ?? 0 : connack.returnCode ?? 0;
}

// --- CONNACK codes -------------------------------------------------------------------------------------

authTest(
  "auth: a password file lets in the right password and refuses a wrong one, an unknown user, anonymous",
  async () => {
    await using file = await passwordFile({ alice: "correct horse", bob: "battery staple" });
    await using broker = await startBroker({ auth: { allow_anonymous: false, password_file: file.path } });
    // 3.1.1: 0 accepted, 4 bad user name or password, 5 not authorized.
    assert.equal(await connackFor(broker, 4, "alice", "correct horse"), 0);
    assert.equal(await connackFor(broker, 4, "bob", "battery staple"), 0);
    assert.equal(await connackFor(broker, 4, "alice", "battery staple"), 4);
    assert.equal(await connackFor(broker, 4, "mallory", "correct horse"), 4);
    assert.equal(await connackFor(broker, 4, "alice"), 4);
    assert.equal(await connackFor(broker, 4), 5);
    // 5.0: 0x00, 0x86 Bad User Name or Password, 0x87 Not authorized.
    assert.equal(await connackFor(broker, 5, "alice", "correct horse"), 0x00);
    assert.equal(await connackFor(broker, 5, "alice", "wrong"), 0x86);
    assert.equal(await connackFor(broker, 5, "mallory", "wrong"), 0x86);
    assert.equal(await connackFor(broker, 5), 0x87);
  },
);

authTest("auth: an unknown user and a wrong password get the same answer and the same log line", async () => {
  await using file = await passwordFile({ alice: "correct horse" });
  await using broker = await startBroker({ auth: { allow_anonymous: false, password_file: file.path } });
  assert.equal(await connackFor(broker, 5, "alice", "nope"), 0x86);
  assert.equal(await connackFor(broker, 5, "nobody", "nope"), 0x86);
  const refusal = (id: string) =>
    broker.logs.find((l) => l.includes(`client "${id}"`) && l.includes("refused"))?.replace(
      /^.*refused: /,
      "",
    );
  assert.equal(refusal("c-alice-5"), refusal("c-nobody-5"));
  assert.ok(!broker.logs.some((l) => /unknown user|no such user/i.test(l)), broker.logs.join("\n"));
});

authTest(
  "auth: with allow_anonymous true, no username is let in but a username needs its password",
  async () => {
    await using file = await passwordFile({ alice: "correct horse" });
    await using broker = await startBroker({ auth: { allow_anonymous: true, password_file: file.path } });
    assert.equal(await connackFor(broker, 4), 0);
    assert.equal(await connackFor(broker, 4, "alice", "correct horse"), 0);
    assert.equal(await connackFor(broker, 4, "alice", "wrong"), 4);
  },
);

authTest("auth: packets sent before CONNACK wait for the password check, then run in order", async () => {
  await using file = await passwordFile({ alice: "correct horse" });
  await using broker = await startBroker({ auth: { allow_anonymous: false, password_file: file.path } });
  await using client = await RawClient.open(broker.port);
  // CONNECT, SUBSCRIBE and PUBLISH in one write: the check is asynchronous, the order must hold.
  const packets: MP.Packet[] = [
    connectPacket({ clientId: "pipelined", username: "alice", password: Buffer.from("correct horse") }),
    { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t/#", qos: 0 }] },
    { cmd: "publish", topic: "t/1", payload: "hello", qos: 0, retain: false, dup: false },
  ];
  await client.sendBytes(Buffer.concat(packets.map((packet) => mqttPacket.generate(packet))));
  assert.equal((await client.expect("connack")).returnCode, 0);
  assert.equal((await client.expect("suback")).granted[0], 0);
  await client.expectPublish("t/1", "hello");
});

authTest("auth: mosquitto_pub with -u/-P is let in with the right password only", async () => {
  await using file = await passwordFile({ alice: "correct horse" });
  await using broker = await startBroker({ auth: { allow_anonymous: false, password_file: file.path } });
  const args = (
    password: string,
  ) => ["-p", String(broker.port), "-u", "alice", "-P", password, "-t", "a", "-m", "x"];
  assert.equal((await runMosquittoTool("mosquitto_pub", args("correct horse"))).code, 0);
  const wrong = await runMosquittoTool("mosquitto_pub", args("wrong"));
  assert.notEqual(wrong.code, 0);
  assert.match(wrong.stderr, /bad user name or password|not authori[sz]ed/i);
});

// --- Reload -------------------------------------------------------------------------------------------------

authTest(
  "auth: a reload takes new users and passwords, keeps connected clients, and keeps the old users if the file is bad",
  async () => {
    await using file = await passwordFile({ alice: "correct horse" });
    await using broker = await startBroker({ auth: { allow_anonymous: false, password_file: file.path } });
    await using stays = await RawClient.connected(broker.port, {
      clientId: "stays",
      username: "alice",
      password: Buffer.from("correct horse"),
    });
    const add = await new Deno.Command(MOSQUITTO_PASSWD, { args: ["-b", file.path, "carol", "new one"] })
      .output();
    assert.equal(add.code, 0);
    assert.equal(await connackFor(broker, 4, "carol", "new one"), 4, "not before the reload");
    assert.equal(await broker.server.reloadPasswords(), true);
    assert.equal(await connackFor(broker, 4, "carol", "new one"), 0);
    assert.ok(broker.logs.some((l) => l.includes(`password file ${file.path} reloaded: 2 user(s)`)));
    await stays.assertIdle();

    // A file broken by hand: the users read before stay, and the log says why.
    await Deno.writeTextFile(file.path, "carol\n", { append: true });
    assert.equal(await broker.server.reloadPasswords(), false);
    assert.ok(
      broker.logs.some((l) => l.includes("password file not reloaded") && l.includes(`${file.path}:3`)),
    );
    assert.equal(await connackFor(broker, 4, "carol", "new one"), 0);
    assert.equal(await connackFor(broker, 4, "alice", "correct horse"), 0);
    await stays.assertIdle();
  },
);

// --- Start-up errors -----------------------------------------------------------------------------------

authTest("auth: a missing or malformed password file stops start-up with one line naming it", async () => {
  await using file = await passwordFile({ alice: "correct horse" });
  const missing = `${file.path}.missing`;
  await assert.rejects(
    startBroker({ auth: { password_file: missing } }),
    (error: Error) =>
      error instanceof StartError && error.message.includes(missing) && !error.message.includes("\n"),
  );
  await Deno.writeTextFile(file.path, "alice:$7$101$notbase64$\nbob\n", { append: true });
  await assert.rejects(
    startBroker({ auth: { password_file: file.path } }),
    (error: Error) => error instanceof StartError && error.message.includes(`${file.path}:2`),
  );
});
