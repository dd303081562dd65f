/**
 * The `vyoma` command line as a user runs it: `deno task start` (with the task's own narrow permissions)
 * and `deno run main.ts ...` for the other commands, each a real child process.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import denoJson from "../deno.json" with { type: "json" };
import { insertedPassword } from "./helpers/passwords.ts";
import { RawClient } from "./helpers/raw.ts";
import { within } from "./helpers/wait.ts";

const decoder = new TextDecoder();

async function vyoma(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-env", "main.ts", ...args],
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

/** A broker started with `deno task start`, its stderr read line by line as it runs. */
class BrokerProcess implements AsyncDisposable {
  readonly lines: string[] = [];
  readonly #child: Deno.ChildProcess;
  readonly #reading: Promise<void>;
  #wake: (() => void) | null = null;

  constructor(args: string[]) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["task", "start", ...args],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.#reading = this.#read();
  }

  /** Log lines written by the broker itself (not `deno task`'s own "Task start ..." line). */
  get logLines(): string[] {
    return this.lines.filter((l) => !l.startsWith("Task "));
  }

  async waitFor(pattern: RegExp): Promise<RegExpMatchArray> {
    return await within(
      new Promise((resolve, reject) => {
        const check = () => {
          const match = this.lines.map((l) => l.match(pattern)).find((m) => m);
          if (match) return resolve(match);
          if (this.#ended) return reject(new Error(`broker exited; log:\n${this.lines.join("\n")}`));
          this.#wake = check;
        };
        check();
      }),
      `a log line matching ${pattern}`,
      15_000,
    );
  }

  signal(signal: Deno.Signal): void {
    this.#child.kill(signal);
  }

  async exitCode(): Promise<number> {
    const status = await within(this.#child.status, "the broker to exit", 15_000);
    await this.#reading;
    return status.code;
  }

  #ended = false;

  async #read(): Promise<void> {
    let partial = "";
    for await (const chunk of this.#child.stderr) {
      partial += decoder.decode(chunk, { stream: true });
      const parts = partial.split("\n");
      partial = parts.pop()!;
      this.lines.push(...parts);
      this.#wake?.();
    }
    this.#ended = true;
    this.#wake?.();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // already exited
    }
    await this.#child.status;
    await this.#reading;
  }
}

/** A config file under the working directory (the start task may read only there), removed afterwards. */
async function configFile(yaml: string): Promise<{ path: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ dir: Deno.cwd(), prefix: ".test-config-" });
  const path = `${dir.slice(Deno.cwd().length + 1)}/vyoma.yaml`;
  await Deno.writeTextFile(path, yaml);
  return { path, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

Deno.test("cli: --help lists every command and exits 0", async () => {
  const { code, stdout } = await vyoma("--help");
  assert.equal(code, 0);
  for (const word of ["start", "--config", "default-config", "check-config", "--version"]) {
    assert.ok(stdout.includes(word), `help mentions ${word}`);
  }
});

Deno.test("cli: --version prints the version from deno.json", async () => {
  const { code, stdout } = await vyoma("--version");
  assert.equal(code, 0);
  assert.equal(stdout.trim(), `vyoma ${denoJson.version}`);
});

Deno.test("cli: a bad command line is one line and a hint, exit 2", async () => {
  for (const args of [[], ["launch"], ["start", "--bogus"], ["start", "extra"], ["check-config"]]) {
    const { code, stderr } = await vyoma(...args);
    assert.equal(code, 2, `args ${JSON.stringify(args)}`);
    const lines = stderr.trim().split("\n");
    assert.equal(lines.length, 2, stderr);
    assert.match(lines[0], /^vyoma: /);
    assert.match(lines[1], /--help/);
  }
});

Deno.test("cli: default-config prints exactly config.example.yaml", async () => {
  const { code, stdout } = await vyoma("default-config");
  assert.equal(code, 0);
  assert.equal(stdout, await Deno.readTextFile("config.example.yaml"));
});

Deno.test("cli: check-config accepts config.example.yaml", async () => {
  const { code, stdout } = await vyoma("check-config", "config.example.yaml");
  assert.equal(code, 0);
  assert.match(stdout, /config\.example\.yaml: OK/);
});

Deno.test("cli: check-config names the file, line and field of the first error, in one line, exit 2", async () => {
  const cases: [string, RegExp][] = [
    [
      "log:\n  level: verbose\n",
      /:2: log\.level: must be one of error, warn, info, debug \(got "verbose"\)$/,
    ],
    [
      "limits:\n  max_pakcet_size: 5\n",
      /:2: limits\.max_pakcet_size: unknown key \(did you mean max_packet_size\?\)$/,
    ],
    [
      "listeners:\n  - type: tcp\n    port: 70000\n",
      /:3: listeners\[0\]\.port: must be an integer between 0 and 65535/,
    ],
    ["mqtt:\n  max_qos: 1\n  max_qos: 2\n", /:3: YAML syntax error/],
    ["auth:\n  allow_anonymous: yes\n", /:2: auth\.allow_anonymous: must be true or false/],
    ["mqtt: [1, 2\n", /:\d+: YAML syntax error/],
  ];
  for (const [yaml, expected] of cases) {
    await using file = await configFile(yaml);
    const { code, stderr } = await vyoma("check-config", file.path);
    assert.equal(code, 2, yaml);
    assert.equal(stderr.trim().split("\n").length, 1, `one line for ${JSON.stringify(yaml)}: ${stderr}`);
    assert.ok(stderr.includes(file.path), stderr);
    assert.match(stderr.trim(), expected);
  }
});

Deno.test("cli: check-config on a missing file says so in one line, exit 2", async () => {
  const { code, stderr } = await vyoma("check-config", "no-such-config.yaml");
  assert.equal(code, 2);
  assert.match(stderr.trim(), /^config error: no-such-config\.yaml: .*(no such file|not found)/i);
});

Deno.test("cli: start with a bad config stops with one line and exit 2, no stack trace", async () => {
  await using file = await configFile("limits:\n  max_packet_size: 3\n");
  await using broker = new BrokerProcess(["--config", file.path]);
  assert.equal(await broker.exitCode(), 2);
  assert.equal(broker.logLines.length, 1, broker.lines.join("\n"));
  assert.match(broker.logLines[0], /:2: limits\.max_packet_size: must be an integer between 16 and/);
});

Deno.test("cli: start outside the working directory is refused by the task's read permission, clearly", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/c.yaml`, "log:\n  level: info\n");
    await using broker = new BrokerProcess(["--config", `${dir}/c.yaml`]);
    assert.equal(await broker.exitCode(), 2);
    assert.match(broker.logLines.join("\n"), /refused read access/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: start serves clients, logs what it does, and SIGTERM stops it with exit 0", async () => {
  await using file = await configFile("listeners:\n  - port: 0\n");
  await using broker = new BrokerProcess(["--config", file.path]);
  const [, port] = await broker.waitFor(/listening on tcp 127\.0\.0\.1:(\d+)$/);
  assert.match(broker.logLines[0], /Vyoma .* starting with config .*vyoma\.yaml.*anonymous clients allowed/);
  {
    await using client = await RawClient.connected(Number(port), { clientId: "cli-test" });
    await broker.waitFor(/client "cli-test" connected from 127\.0\.0\.1:\d+/);
    broker.signal("SIGTERM");
    await client.closedByBroker(); // graceful stop closes every client
  }
  assert.equal(await broker.exitCode(), 0);
  assert.match(broker.logLines.join("\n"), /SIGTERM received/);
  assert.match(broker.logLines.at(-1)!, /stopped$/);
});

Deno.test("cli: SIGHUP reads the password file again and keeps the broker and its clients running", async () => {
  await using file = await configFile("");
  const passwd = file.path.replace(/vyoma\.yaml$/, "passwd");
  await insertedPassword(passwd, "alice", "first");
  await Deno.writeTextFile(
    file.path,
    `listeners:\n  - port: 0\nauth:\n  allow_anonymous: false\n  password_file: ${passwd}\n`,
  );
  await using broker = new BrokerProcess(["--config", file.path]);
  const [, port] = await broker.waitFor(/listening on tcp 127\.0\.0\.1:(\d+)$/);
  const login = async (password: string) => {
    await using client = await RawClient.open(Number(port));
    return (await client.connect({ clientId: "hup", username: "alice", password: Buffer.from(password) }))
      .returnCode;
  };
  assert.equal(await login("first"), 0);
  await insertedPassword(passwd, "alice", "second");
  broker.signal("SIGHUP");
  await broker.waitFor(/password file .*passwd reloaded: 1 user\(s\)$/);
  assert.equal(await login("second"), 0);
  assert.equal(await login("first"), 4);
  broker.signal("SIGTERM");
  assert.equal(await broker.exitCode(), 0);
});

Deno.test("cli: SIGINT (Ctrl-C) stops the broker with exit 0", async () => {
  await using file = await configFile("listeners:\n  - port: 0\n");
  await using broker = new BrokerProcess(["--config", file.path]);
  await broker.waitFor(/listening on tcp 127\.0\.0\.1:\d+$/);
  broker.signal("SIGINT");
  assert.equal(await broker.exitCode(), 0, broker.lines.join("\n"));
  assert.match(broker.logLines.at(-1)!, /stopped$/);
});

Deno.test("cli: a port already in use is one error line and exit 1", async () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await using file = await configFile(`listeners:\n  - port: ${taken.addr.port}\n`);
  await using broker = new BrokerProcess(["--config", file.path]);
  assert.equal(await broker.exitCode(), 1);
  const errors = broker.logLines.filter((l) => l.includes("ERROR"));
  assert.equal(errors.length, 1, broker.lines.join("\n"));
  assert.match(
    errors[0],
    new RegExp(`cannot listen on tcp 127\\.0\\.0\\.1:${taken.addr.port}: address already in use$`),
  );
});

Deno.test("cli: with no config the first log line says 127.0.0.1:1883 and anonymous clients allowed", async () => {
  // The embedded default binds 1883. If something else holds it, the broker must say so in one line and
  // exit 1; either way the first line must describe the defaults.
  await using broker = new BrokerProcess([]);
  const first = await broker.waitFor(/starting with/);
  assert.match(first.input!, /embedded default config.*tcp 127\.0\.0\.1:1883.*anonymous clients allowed/);
  const outcome = await broker.waitFor(
    /listening on tcp 127\.0\.0\.1:1883$|cannot listen on tcp 127\.0\.0\.1:1883/,
  );
  if (outcome[0].startsWith("listening")) {
    await using client = await RawClient.connected(1883, { clientId: "default-config-test" });
    await broker.waitFor(/client "default-config-test" connected/);
    broker.signal("SIGTERM");
    await client.closedByBroker();
    assert.equal(await broker.exitCode(), 0);
  } else {
    assert.equal(await broker.exitCode(), 1);
  }
});
