/**
 * A generator worker process: runs the share of the clients the main process gives it, on one event loop.
 * Spawned by main.ts as `deno run --allow-net worker.ts`; talks JSON lines on stdin/stdout (see ipc.ts).
 * It exits after reporting its result, or when stdin closes (the main process is gone).
 */

import { SharedClock, wallSkewMs } from "./clock.ts";
import { Engine } from "./engine.ts";
import { type FromWorker, lines, parseMessage, type ToWorker, writeMessage } from "./ipc.ts";
import { PeerLinks } from "./peers.ts";

function send(message: FromWorker): void {
  writeMessage(Deno.stdout, message);
}

async function main(): Promise<void> {
  // Ctrl-C reaches the whole process group; the main process decides how the run ends.
  const ignore = () => {};
  const signals = ["SIGINT", "SIGTERM"] as const;
  for (const signal of signals) Deno.addSignalListener(signal, ignore);
  const peers = PeerLinks.listen();
  send({ t: "hello", peerPort: peers.port, wallSkewMs: wallSkewMs() });
  let engine: Engine | null = null;
  let name = "loadgen";
  let verbose = false;
  const log = (text: string) => {
    if (verbose) console.error(`${name}: ${text}`);
  };
  for await (const line of lines(Deno.stdin.readable)) {
    const message = parseMessage<ToWorker>(line);
    switch (message.t) {
      case "init": {
        const cfg = message.config;
        name = `loadgen[${cfg.worker}]`;
        verbose = cfg.verbose;
        const mesh = cfg.peers.length > 1;
        const current = engine = new Engine(cfg, new SharedClock(cfg.baseMs), mesh ? peers : null, {
          progress: (progress) => send({ t: "progress", progress }),
          log,
        });
        const linked = mesh
          ? peers.link(
            cfg.worker,
            cfg.peers,
            cfg.pubOwner,
            cfg.window / 8,
            (pub, n) => current.countRemote(pub, n),
            log,
          )
          : (peers.close(), Promise.resolve());
        Promise.all([current.connect(), linked]).then(
          ([{ connect, failure }]) => send({ t: "ready", connect, failure }),
          (error) => {
            log(`setup failed: ${error instanceof Error ? error.message : error}`);
            Deno.exit(2);
          },
        );
        break;
      }
      case "go":
        engine?.go(message.t0);
        break;
      case "stop": {
        const result = engine === null ? null : await engine.stop();
        if (result !== null) send({ t: "result", result: { ...result, wallSkewMs: wallSkewMs() } });
        peers.close();
        // Ending by running out of work rather than Deno.exit() lets --cpu-prof write its profile.
        for (const signal of signals) Deno.removeSignalListener(signal, ignore);
        return;
      }
    }
  }
  peers.close();
  for (const signal of signals) Deno.removeSignalListener(signal, ignore);
}

if (import.meta.main) await main();
