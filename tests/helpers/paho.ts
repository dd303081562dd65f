/**
 * Python's paho-mqtt (Debian's python3-paho-mqtt), an MQTT 5.0 client stack of its own, run as a child
 * process against a test broker. On a machine without it, the tests that need it are reported as ignored
 * (with a notice saying what to install), so `deno task test` still runs everywhere; CI sets
 * VYOMA_REQUIRE_PAHO=1 after installing it, which turns a missing paho into failing tests instead.
 *
 * Debian's paho is for Debian's python3, and a python3 earlier on PATH (pyenv's, say) may not have it: the
 * python3 on PATH is used if it can import paho.mqtt, else /usr/bin/python3 if that can.
 */

import assert from "node:assert/strict";
import { ChildLines } from "./child.ts";
import { mosquittoSkipped } from "./mosquitto.ts";

/** The first of the python3s that can import paho.mqtt, or null. */
function findPython(): string | null {
  for (const candidate of ["python3", "/usr/bin/python3"]) {
    try {
      const { success } = new Deno.Command(candidate, {
        args: ["-c", "import paho.mqtt.client"],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).outputSync();
      if (success) return candidate;
    } catch {
      // not installed
    }
  }
  return null;
}

const python = findPython();
/** True where the tests that need paho are to be ignored: missing, and allowed to be. */
export const pahoSkipped = python === null && Deno.env.get("VYOMA_REQUIRE_PAHO") !== "1";
if (pahoSkipped) {
  console.warn("python3 with paho-mqtt not found: its tests are ignored (apt-get install python3-paho-mqtt)");
}

/**
 * A test that drives paho (and mosquitto_pub / mosquitto_sub, if `mosquitto`): ignored, not failed, where
 * they are not installed.
 */
export function pahoTest(name: string, fn: () => Promise<void>, { mosquitto = false } = {}): void {
  Deno.test({ name, ignore: pahoSkipped || (mosquitto && mosquittoSkipped), fn });
}

/** Lower-case hex of `text`'s UTF-8 bytes, as paho shows binary properties such as Correlation Data. */
export function hex(text: string): string {
  return [...new TextEncoder().encode(text)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * The start of every script: `PORT` is the broker's port (the first argument; the script's own follow it),
 * `client(id)` makes an MQTTv5 client with paho 1.x or 2.x, `out(obj)` prints one JSON line and
 * `codes(reason_codes)` turns paho's reason codes into numbers.
 */
const PRELUDE = `
import json, sys, threading
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.subscribeoptions import SubscribeOptions
PORT = int(sys.argv[1])
def client(cid):
    if hasattr(mqtt, "CallbackAPIVersion"):
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    return mqtt.Client(client_id=cid, protocol=mqtt.MQTTv5)
_out_lock = threading.Lock()
def out(obj):
    # Callbacks of several clients run on their own threads: one whole line at a time.
    with _out_lock:
        sys.stdout.write(json.dumps(obj) + "\\n")
        sys.stdout.flush()
def codes(reason_codes):
    return [int(getattr(c, "value", c)) for c in reason_codes]
`;

/** One line a script printed with `out`. */
export type PahoLine = Record<string, unknown>;

/**
 * A paho script run by python3 while the test goes on, its stdout read as it prints, one JSON line at a
 * time: `lines(n)` waits for lines, `finished()` for the script to end by itself. Disposing kills it
 * (SIGKILL) if it still runs and waits for it to exit, so no process or pipe outlives the test.
 */
export class PahoScript implements AsyncDisposable {
  readonly #process: ChildLines;

  /** Starts PRELUDE + `code` with the arguments `port`, then `args`. */
  constructor(port: number, code: string, args: string[] = []) {
    if (python === null) {
      throw new Error(
        "python3 with paho-mqtt not found: apt-get install python3-paho-mqtt (.ci/run does this)",
      );
    }
    const child = new Deno.Command(python, {
      args: ["-c", PRELUDE + code, String(port), ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#process = new ChildLines(child, "the paho script", "SIGKILL");
  }

  /** Waits until `count` whole lines have been printed and returns them, parsed. */
  async lines(count: number, ms?: number): Promise<PahoLine[]> {
    return (await this.#process.lines(count, ms)).map((line) => JSON.parse(line));
  }

  /** Waits for the script to exit by itself; asserts it succeeded and returns every line it printed, parsed. */
  async finished(ms = 15_000): Promise<PahoLine[]> {
    const { code, stdout, stderr } = await this.#process.finished(ms);
    assert.equal(code, 0, `the paho script failed: ${stderr}${stdout}`);
    return stdout.split("\n").filter((line) => line !== "").map((line) => JSON.parse(line));
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.#process[Symbol.asyncDispose]();
  }
}

/** A message as `PahoSub` prints it: binary properties in hex, User Properties as pairs in wire order. */
export interface PahoMessage {
  topic: string;
  payload: string;
  qos: number;
  properties: {
    PayloadFormatIndicator?: number;
    ContentType?: string;
    ResponseTopic?: string;
    MessageExpiryInterval?: number;
    CorrelationData?: string;
    UserProperty?: [string, string][];
  };
}

/**
 * Arguments: client id, topic filter, QoS, and how many messages to end after (0: run until killed). Prints
 * the SUBACK's reason codes, then one line a message.
 */
const SUBSCRIBER = `
CLIENT_ID, TOPIC, QOS, EXIT_AFTER = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
received = 0
def on_connect(c, u, flags, rc, props):
    if int(getattr(rc, "value", rc)) != 0:
        out({"refused": int(getattr(rc, "value", rc))})
        c.disconnect()
        return
    c.subscribe(TOPIC, qos=QOS)
def on_subscribe(c, u, mid, reason_codes, props):
    out({"suback": codes(reason_codes)})
def on_message(c, u, m):
    global received
    p = m.properties
    props = {}
    for name in ("PayloadFormatIndicator", "ContentType", "ResponseTopic", "MessageExpiryInterval"):
        if hasattr(p, name):
            props[name] = getattr(p, name)
    if hasattr(p, "CorrelationData"):
        props["CorrelationData"] = p.CorrelationData.hex()
    if hasattr(p, "UserProperty"):
        props["UserProperty"] = [list(pair) for pair in p.UserProperty]
    out({"topic": m.topic, "payload": m.payload.decode("utf-8", "replace"), "qos": m.qos, "properties": props})
    received += 1
    if received == EXIT_AFTER:
        c.disconnect()
c = client(CLIENT_ID)
c.on_connect = on_connect; c.on_subscribe = on_subscribe; c.on_message = on_message
c.connect("127.0.0.1", PORT, clean_start=True)
c.loop_forever()
`;

/** paho subscribed to one filter, printing each message it gets with its properties. */
export class PahoSub extends PahoScript {
  private constructor(port: number, args: string[]) {
    super(port, SUBSCRIBER, args);
  }

  /**
   * Starts paho as `clientId`, subscribed to `topic` at `qos` (asserting SUBACK grants it); it disconnects
   * and exits by itself after `exitAfter` messages, if given.
   */
  static async subscribed(
    port: number,
    clientId: string,
    topic: string,
    qos: 0 | 1 | 2,
    { exitAfter = 0 } = {},
  ): Promise<PahoSub> {
    const sub = new PahoSub(port, [clientId, topic, String(qos), String(exitAfter)]);
    try {
      assert.deepEqual(await sub.lines(1), [{ suback: [qos] }]);
    } catch (error) {
      await sub[Symbol.asyncDispose]();
      throw error;
    }
    return sub;
  }

  /** Waits for `count` messages and returns them. */
  async messages(count: number): Promise<PahoMessage[]> {
    return (await this.lines(count + 1)).slice(1) as unknown as PahoMessage[];
  }
}
