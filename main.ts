/**
 * The `vyoma` command line: start the broker, print the default config, check a config file, edit a password
 * file.
 * Exit codes: 0 success, 1 the broker failed at run time (a port in use, say), 2 bad usage or bad config.
 */

import { parseArgs } from "node:util";
import { type CommandResult, insertPassword, removePassword } from "./src/auth/password_cli.ts";
import { type Config, DEFAULT_CONFIG } from "./src/config/schema.ts";
import { formatConfigError, loadConfigFile } from "./src/config/load.ts";
import { renderDefaultConfig } from "./src/config/render.ts";
import { createLogger, type Logger } from "./src/observe/log.ts";
import { formatAddress } from "./src/transport/connection.ts";
import { VERSION } from "./src/version.ts";

const HELP = `Vyoma ${VERSION}: an MQTT broker for Deno

Usage:
  vyoma start [--config FILE]   Run the broker. Without --config it uses the embedded defaults:
                                127.0.0.1:1883, anonymous clients allowed.
  vyoma default-config          Print the complete default config, every option commented.
  vyoma check-config FILE       Validate a config file; print one line naming any error.
  vyoma insert-password FILE USERNAME [--password-stdin]
                                Add a user to a Mosquitto password file (created if missing) or change
                                its password: asked twice on a terminal, or one line from stdin.
  vyoma remove-password FILE USERNAME
                                Remove a user from a password file.
  vyoma --help | --version

Exit codes: 0 ok, 1 run-time failure (such as a port in use), 2 bad usage or bad config.
Stop a running broker with Ctrl-C (SIGINT) or SIGTERM: it closes every client and exits 0.
SIGHUP reads auth.password_file again, keeping every connection (and the old users if the file is bad).`;

async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        config: { type: "string", short: "c" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
        "password-stdin": { type: "boolean" },
      },
    });
  } catch (error) {
    return usageError(error instanceof Error ? error.message : String(error));
  }
  const { values, positionals } = parsed;
  if (values.help) return print(HELP);
  if (values.version) return print(`vyoma ${VERSION}`);
  const [command, ...rest] = positionals;
  if (values["password-stdin"] && command !== "insert-password") {
    return usageError("--password-stdin goes with insert-password only");
  }
  switch (command) {
    case "start":
      if (rest.length > 0) return usageError(`unexpected argument "${rest[0]}" (use --config FILE)`);
      return await start(values.config);
    case "default-config":
      if (rest.length > 0 || values.config) return usageError("default-config takes no arguments");
      Deno.stdout.writeSync(new TextEncoder().encode(renderDefaultConfig()));
      return 0;
    case "check-config": {
      const file = rest[0] ?? values.config;
      if (!file || rest.length > 1) return usageError("check-config takes one config file");
      return await checkConfig(file);
    }
    case "insert-password":
    case "remove-password": {
      if (rest.length !== 2 || values.config) {
        return usageError(`${command} takes a password file and a username`);
      }
      const [file, username] = rest;
      return report(
        command === "insert-password"
          ? await insertPassword(file, username, values["password-stdin"] ?? false)
          : await removePassword(file, username),
      );
    }
    case undefined:
      return usageError("no command given");
    default:
      return usageError(`unknown command "${command}"`);
  }
}

async function start(configPath: string | undefined): Promise<number> {
  let config: Config = DEFAULT_CONFIG;
  if (configPath !== undefined) {
    const loaded = await loadConfigFile(configPath);
    if (!loaded.ok) return configError(formatConfigError(loaded.error));
    config = loaded.config;
  }
  const log = createLogger(config.log.level);
  log.info(describeStart(config, configPath));
  // Loaded here so that --help and default-config need no permissions (the codec's dependencies read env).
  const { StartError, startServer } = await import("./src/server.ts");
  // Listen for signals before opening sockets, so a stop request during start-up is never missed.
  const stopSignal = nextStopSignal(log);
  let server;
  try {
    server = await startServer(config, log);
  } catch (error) {
    if (!(error instanceof StartError)) throw error;
    log.error(error.message);
    return 1;
  }
  const reload = () => void server.reloadPasswords();
  Deno.addSignalListener("SIGHUP", reload);
  const signal = await stopSignal;
  Deno.removeSignalListener("SIGHUP", reload);
  log.info(`${signal} received: closing ${server.listeners.length} listener(s) and every client`);
  await server.stop();
  log.info("stopped");
  return 0;
}

/** The first log line: what runs, from which config, and who may connect. */
function describeStart(config: Config, configPath: string | undefined): string {
  const where = describeListeners(config);
  const source = configPath === undefined
    ? "the embedded default config (no --config given)"
    : `config ${configPath}`;
  const who = config.auth.allow_anonymous ? "anonymous clients allowed" : "anonymous clients refused";
  return `Vyoma ${VERSION} starting with ${source}: listening on ${where}; ${who}`;
}

/** Resolves with the name of the first SIGINT or SIGTERM; a second one forces an immediate exit. */
function nextStopSignal(log: Logger): Promise<string> {
  return new Promise((resolve) => {
    let received = false;
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      Deno.addSignalListener(signal, () => {
        if (received) {
          log.warn(`${signal} received again: exiting without waiting for clients`);
          Deno.exit(1);
        }
        received = true;
        resolve(signal);
      });
    }
  });
}

/** "tcp 127.0.0.1:1883, tcp [::1]:1884", for the start line and check-config. */
function describeListeners(config: Config): string {
  return config.listeners.map((l) => `${l.type} ${formatAddress(l.host, l.port)}`).join(", ");
}

async function checkConfig(file: string): Promise<number> {
  const loaded = await loadConfigFile(file);
  if (!loaded.ok) return configError(formatConfigError(loaded.error));
  const where = describeListeners(loaded.config);
  return print(`${file}: OK (listeners: ${where})`);
}

function print(text: string): number {
  console.log(text);
  return 0;
}

function report(result: CommandResult): number {
  if (!result.ok) return result.usage ? usageError(result.message) : failure(result.message);
  if (result.warning) console.error(`vyoma: warning: ${result.warning}`);
  return print(result.message);
}

function failure(message: string): number {
  console.error(`vyoma: ${message}`);
  return 1;
}

function configError(line: string): number {
  console.error(`config error: ${line}`);
  return 2;
}

function usageError(message: string): number {
  console.error(`vyoma: ${message}\nRun "vyoma --help" for usage.`);
  return 2;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
