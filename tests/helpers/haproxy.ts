/**
 * HAProxy (Debian's package haproxy) run as a real process in front of a test broker, for the PROXY protocol
 * tests: each frontend listens on a free port of its own and sends everything to one broker port, with the
 * `server` options the test names (send-proxy, send-proxy-v2, send-proxy-v2-ssl-cn, ...). HAProxy logs each
 * accepted connection ("Connect from ADDR:PORT to ..."), which lets a test check that the broker logged the
 * very client address and port HAProxy saw.
 *
 * On a machine without haproxy the tests that need it are reported as ignored (with a notice saying what to
 * install); CI sets VYOMA_REQUIRE_HAPROXY=1 after installing it, which turns a missing haproxy into failing
 * tests instead.
 */

import { delay, until, WAIT_MS } from "./wait.ts";

/** haproxy's path: on PATH, or in the sbin directories a normal user's PATH may lack. */
function findHAProxy(): string | undefined {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/sbin", "/usr/local/sbin", "/sbin"];
  for (const dir of dirs) {
    if (dir === "") continue;
    try {
      if (Deno.statSync(`${dir}/haproxy`).isFile) return `${dir}/haproxy`;
    } catch {
      // not here
    }
  }
  return undefined;
}

const executable = findHAProxy();
/** True where the tests that need HAProxy are to be ignored: it is missing, and allowed to be. */
export const haproxySkipped = executable === undefined && Deno.env.get("VYOMA_REQUIRE_HAPROXY") !== "1";
if (haproxySkipped) console.warn("haproxy not found: its tests are ignored (apt-get install haproxy)");

/**
 * A test that runs HAProxy: ignored, not failed, where haproxy is not installed (unless required). `ignore`
 * adds the test's other needs (mosquitto_pub, say).
 */
export function haproxyTest(name: string, fn: () => Promise<void>, ignore = false): void {
  Deno.test({ name, ignore: haproxySkipped || ignore, fn });
}

/** One frontend and the backend behind it: a single server, the broker's listener. */
export interface Frontend {
  /** The frontend's name: `port(name)`, and HAProxy's log lines say "(name/TCP)". */
  readonly name: string;
  /** The loopback address the frontend binds: "127.0.0.1" (by default) or "::1". */
  readonly host?: "127.0.0.1" | "::1";
  /** Words after the bind address: "ssl crt BUNDLE.pem ca-file CA.pem verify optional", say. */
  readonly bind?: string;
  /** Further lines of the frontend section (unique-id-format, say). */
  readonly lines?: readonly string[];
  /** The broker's port on 127.0.0.1, where the backend's server connects. */
  readonly to: number;
  /** The server line's options: "send-proxy", "send-proxy-v2 proxy-v2-options crc32c", ... */
  readonly server: string;
}

/** How many times a start is retried when a port picked as free was taken before HAProxy bound it. */
const START_ATTEMPTS = 5;

/** A running HAProxy. Disposing stops it and waits for it to exit; its config is removed. */
export class HAProxy implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #ports: ReadonlyMap<string, number>;
  readonly #dir: string;
  readonly #reading: Promise<void>;
  #output = "";
  #exited = false;

  private constructor(child: Deno.ChildProcess, ports: ReadonlyMap<string, number>, dir: string) {
    this.#child = child;
    this.#ports = ports;
    this.#dir = dir;
    this.#reading = this.#read();
    void child.status.then(() => this.#exited = true);
  }

  /**
   * Starts `haproxy -db` with `frontends` on free ports and returns once each accepts TCP connections. A
   * frontend that cannot bind (its port taken in the meantime) means a new start with new ports. The probe
   * of a plain frontend reaches the broker as a header and an end (a debug line: closed before CONNECT);
   * a TLS frontend's probe ends in HAProxy, unlogged, without a handshake.
   */
  static async start(frontends: readonly Frontend[]): Promise<HAProxy> {
    if (executable === undefined) {
      throw new Error("haproxy is not installed: apt-get install haproxy (.ci/run does this)");
    }
    let failure = "";
    for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
      const ports = new Map<string, number>();
      for (const frontend of frontends) ports.set(frontend.name, freePort(frontend.host ?? "127.0.0.1"));
      const dir = await Deno.makeTempDir({ prefix: "vyoma-haproxy-" });
      const config = `${dir}/haproxy.cfg`;
      await Deno.writeTextFile(config, haproxyConfig(frontends, ports));
      const child = new Deno.Command(executable, {
        args: ["-f", config, "-db"],
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const haproxy = new HAProxy(child, ports, dir);
      try {
        await haproxy.#accepting(frontends);
        return haproxy;
      } catch (error) {
        await haproxy[Symbol.asyncDispose]();
        failure = `${(error as Error).message}\nhaproxy's output:\n${haproxy.#output}`;
        if (!/cannot bind socket|Address already in use/i.test(haproxy.#output)) break;
      }
    }
    throw new Error(`haproxy did not start: ${failure}`);
  }

  /** The port of the frontend `name`. */
  port(name: string): number {
    const port = this.#ports.get(name);
    if (port === undefined) throw new Error(`no frontend ${name}`);
    return port;
  }

  /** Everything HAProxy has written so far: its log (one line per connection accepted) and any warnings. */
  get output(): string {
    return this.#output;
  }

  /**
   * Waits until HAProxy has logged accepting a connection from `address`:`port` on frontend `name`: the
   * client as HAProxy saw it.
   */
  async accepted(name: string, address: string, port: number): Promise<void> {
    const line = `Connect from ${address}:${port} to `;
    await until(
      () => this.#output.split("\n").some((l) => l.includes(line) && l.includes(`(${name}/`)),
      `haproxy to log "${line}... (${name}/TCP)"`,
    ).catch((error: Error) => {
      throw new Error(`${error.message}; haproxy's output:\n${this.#output}`);
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // already exited
    }
    await this.#child.status;
    await this.#reading;
    await Deno.remove(this.#dir, { recursive: true });
  }

  /** Connects to each frontend until it accepts; fails at once if HAProxy exits (a bad config, a port taken). */
  async #accepting(frontends: readonly Frontend[]): Promise<void> {
    const deadline = Date.now() + WAIT_MS;
    for (const { name, host = "127.0.0.1" } of frontends) {
      while (true) {
        if (this.#exited) throw new Error(`haproxy exited before frontend ${name} accepted`);
        try {
          const probe = await Deno.connect({ hostname: host, port: this.port(name) });
          probe.close();
          break;
        } catch (error) {
          if (!(error instanceof Deno.errors.ConnectionRefused)) throw error;
        }
        if (Date.now() > deadline) throw new Error(`frontend ${name} did not accept within ${WAIT_MS} ms`);
        await delay(20);
      }
    }
    // Bound is not the same as started: a port taken by another process accepts too. HAProxy binds every
    // frontend before it runs, so by now it has failed, or it runs.
    await delay(50);
    if (this.#exited) throw new Error("haproxy exited after its ports accepted");
  }

  async #read(): Promise<void> {
    for await (const chunk of this.#child.stderr.pipeThrough(new TextDecoderStream())) {
      this.#output += chunk;
    }
  }
}

/** A port that was free a moment ago on `host`: bound with port 0, then released for HAProxy to take. */
function freePort(host: string): number {
  const listener = Deno.listen({ hostname: host, port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** The config: log to stderr, TCP mode, and one frontend/backend pair per `frontends` entry. */
function haproxyConfig(frontends: readonly Frontend[], ports: ReadonlyMap<string, number>): string {
  const lines = [
    "global",
    "  log stderr format short local0 info",
    "  nbthread 1",
    "defaults",
    "  mode tcp",
    "  log global",
    "  timeout connect 5s",
    "  timeout client 1m",
    "  timeout server 1m",
  ];
  for (const frontend of frontends) {
    const host = frontend.host ?? "127.0.0.1";
    const address = host.includes(":") ? `[${host}]` : host;
    lines.push(
      `frontend ${frontend.name}`,
      `  bind ${address}:${ports.get(frontend.name)}${frontend.bind ? ` ${frontend.bind}` : ""}`,
      ...(frontend.lines ?? []).map((line) => `  ${line}`),
      `  default_backend ${frontend.name}_broker`,
      `backend ${frontend.name}_broker`,
      `  server broker 127.0.0.1:${frontend.to} ${frontend.server}`,
    );
  }
  return `${lines.join("\n")}\n`;
}
