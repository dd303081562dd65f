/**
 * What the transport rows need beyond the other rows: vyoma-loadgen whatever the main generator is (mqttload
 * speaks plain TCP only), certificates for the tls and wss listeners, and for each run the port of the
 * listener under test and the CA the generator is to trust.
 */

import { type BenchCerts, benchCerts } from "./certs.ts";
import { type Generator, loadgenGenerator, SetupError } from "./generator.ts";
import { type Transport, usesTls } from "./loadgen/options.ts";
import type { BrokerPlan, ListenerPorts } from "./peers.ts";
import { ROW_TRANSPORTS, type Scenario } from "./scenarios.ts";

export interface TransportSetup {
  /** Transports other than tcp that the selected rows use, in table order; empty when none is selected. */
  wanted: Transport[];
  /** The generator of the transport rows; null when none is selected. */
  generator: Generator | null;
  /** Null when neither tls nor wss is wanted, or openssl could not make them (those rows are skipped). */
  certs: BenchCerts | null;
}

export async function prepareTransports(
  scenarios: readonly Scenario[],
  main: Generator,
  dirs: { repoRoot: string; cacheDir: string },
  note: (line: string) => void,
): Promise<TransportSetup> {
  const used = new Set(scenarios.flatMap((s) => s.kind === "transport" && s.transport ? [s.transport] : []));
  if (used.size === 0) return { wanted: [], generator: null, certs: null };
  const wanted = ROW_TRANSPORTS.filter((t) => t !== "tcp" && used.has(t));
  const generator = main.kind === "vyoma-loadgen" ? main : await loadgenGenerator(dirs.repoRoot);
  if (generator === null) throw new SetupError("the transport rows need bench/loadgen/main.ts");
  if (generator !== main) {
    note(`transport rows: generator ${generator.kind} ${generator.path} (${generator.version})`);
  }
  let certs: BenchCerts | null = null;
  if (wanted.some(usesTls)) {
    try {
      certs = await benchCerts(dirs.cacheDir);
    } catch (error) {
      if (!(error instanceof SetupError)) throw error;
      note(`${error.message}; the tls and wss rows are skipped`);
    }
  }
  return { wanted, generator, certs };
}

/**
 * Whether `plan` runs `scenario`: every row but the transport ones, and a transport row when the broker
 * serves its transport and at least one besides tcp (a broker that serves tcp alone has nothing to compare).
 */
export function runsScenario(plan: BrokerPlan, scenario: Scenario): boolean {
  if (scenario.transport === undefined) return true;
  return plan.transports.length > 1 && plan.transports.includes(scenario.transport);
}

/** Who generates `scenario`'s load, on which port, with which arguments beyond the scenario's own. */
export interface LoadTarget {
  generator: Generator;
  port: number;
  /** --cafile for tls and wss. */
  extraArgs: string[];
}

/** The load of `scenario` against a broker listening on `ports`; an error line when it cannot run. */
export function loadTarget(
  setup: TransportSetup,
  main: Generator,
  ports: ListenerPorts,
  scenario: Scenario,
): LoadTarget | string {
  const transport = scenario.transport;
  if (transport === undefined) return { generator: main, port: ports.tcp, extraArgs: [] };
  const port = ports[transport];
  if (setup.generator === null || port === undefined) return `no ${transport} listener for this row`;
  const extraArgs = usesTls(transport) && setup.certs !== null ? ["--cafile", setup.certs.ca] : [];
  return { generator: setup.generator, port, extraArgs };
}
