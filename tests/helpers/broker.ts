/**
 * An in-process broker on a free port for one test. Its log lines are kept in `logs` (debug level) so a
 * test can check what was logged; `await using` stops it and waits for every connection to end, which
 * keeps Deno's resource and op sanitizers meaningful.
 */

import { type Config, DEFAULT_CONFIG } from "../../src/config/schema.ts";
import { createLogger } from "../../src/observe/log.ts";
import { type Server, startServer } from "../../src/server.ts";

/** Config sections with every field optional, for overrides. */
export type ConfigOverrides = { [K in keyof Config]?: Partial<Config[K]> };

export interface TestBroker extends AsyncDisposable {
  readonly port: number;
  readonly server: Server;
  readonly logs: string[];
  stop(): Promise<void>;
}

export function startBroker(overrides: ConfigOverrides = {}): TestBroker {
  const config = structuredClone(DEFAULT_CONFIG) as Config;
  for (const [section, values] of Object.entries(overrides)) {
    if (section === "listeners") continue;
    Object.assign(config[section as keyof Config], values);
  }
  config.listeners = [{ type: "tcp", host: "127.0.0.1", port: 0 }];
  const logs: string[] = [];
  const server = startServer(config, createLogger("debug", (line) => logs.push(line)));
  const stop = () => server.stop();
  return { port: server.listeners[0].port, server, logs, stop, [Symbol.asyncDispose]: stop };
}
