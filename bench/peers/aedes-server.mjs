// Aedes as a reference peer for `deno task bench` (Node >= 20):
//   node aedes-server.mjs PORT HOST [AEDES_DIR]
// AEDES_DIR (argument or environment) is a directory where `npm install aedes` ran; bench/peers.ts uses
// bench/.cache/aedes. Aedes' defaults otherwise: in-memory persistence, anonymous clients.
import net from "node:net";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [portArg, host = "127.0.0.1", dirArg] = process.argv.slice(2);
const dir = dirArg ?? process.env.AEDES_DIR;
const port = Number(portArg);
if (!dir || !Number.isInteger(port) || port <= 0) {
  console.error("usage: node aedes-server.mjs PORT HOST [AEDES_DIR] (or set AEDES_DIR)");
  process.exit(2);
}
// Resolve from the install directory, not from this script's, which has no node_modules.
const entry = createRequire(path.join(path.resolve(dir), "package.json")).resolve("aedes");
const { Aedes } = await import(pathToFileURL(entry).href);

const broker = await Aedes.createBroker();
// TCP_NODELAY as the other brokers: with Nagle on, small deliveries wait for the peer's delayed ACK.
const server = net.createServer({ noDelay: true }, broker.handle);
server.on("error", (error) => {
  console.error(`aedes: ${error.message}`);
  process.exit(1);
});
server.listen(port, host, () => console.log(`aedes listening on ${host}:${port} pid ${process.pid}`));

function stop() {
  // server.close waits for every client to leave; the bench's clients are gone by now, but do not hang.
  setTimeout(() => process.exit(0), 2000).unref();
  server.close(() => broker.close(() => process.exit(0)));
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
