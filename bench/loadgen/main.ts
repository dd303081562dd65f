/**
 * vyoma-loadgen: the benchmark's own MQTT load generator, for when mqttload (../shared/tools) is not
 * there. Same flags, same JSON line on stdout, same exit codes (0 ok, 1 usage, 2 protocol/connection
 * error, 3 incomplete, 4 duration-max or interrupted), plus "generator" and "processes" fields. The clients
 * run in several worker processes (worker.ts) so that the generator is not the bottleneck.
 *
 *   deno run --allow-net --allow-read --allow-run --allow-env --allow-sys bench/loadgen/main.ts [flags]
 */

import { run } from "./coordinator.ts";
import { HELP, parseOptions, UsageError } from "./options.ts";
import { readCaCerts } from "./transport.ts";

async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseOptions(args, { pid: Deno.pid, cpus: navigator.hardwareConcurrency || 1 });
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`vyoma-loadgen: ${error.message}\n${HELP}`);
    return 1;
  }
  if (parsed.help) {
    console.log(HELP);
    return 0;
  }
  const options = parsed.options;
  let caCerts: string[];
  try {
    caCerts = await readCaCerts(options.cafile);
  } catch (error) {
    console.error(`vyoma-loadgen: --cafile: ${error instanceof Error ? error.message : error}`);
    return 1;
  }
  const log = (text: string) => {
    if (options.verbose) console.error(`vyoma-loadgen: ${text}`);
  };
  const { report, exitCode } = await run(options, caCerts, log);
  console.log(JSON.stringify(report));
  return exitCode;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
