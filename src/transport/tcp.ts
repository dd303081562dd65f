/** Plain TCP through `Deno.listen`. */

import type { Logger } from "../observe/log.ts";
import type { Acceptor, Connection, ConnectionHandler, Listener, PeerInfo } from "./connection.ts";

/** Read buffer per connection; one read can carry many small packets. */
const READ_BUFFER_SIZE = 16 * 1024;
/** How long close() waits for queued bytes to reach a peer that is not reading. */
const CLOSE_LINGER_MS = 1000;
/** Pause after a failed accept (typically EMFILE), so a full descriptor table does not spin the loop. */
const ACCEPT_BACKOFF_MS = 100;

export function listenTcp(host: string, port: number, accept: Acceptor, log: Logger): Listener {
  const listener = Deno.listen({ hostname: host, port, transport: "tcp" });
  let closed = false;
  let backoff: ReturnType<typeof setTimeout> | undefined;
  let resumeBackoff: (() => void) | undefined;
  let lastAcceptError = "";
  const open = new Set<Promise<void>>();

  const acceptLoop = (async () => {
    while (!closed) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (closed || error instanceof Deno.errors.BadResource) return;
        const message = error instanceof Error ? error.message : String(error);
        // One line per kind of failure, not one per attempt.
        if (message !== lastAcceptError) log.warn(`tcp ${host}:${port}: accept failed: ${message}`);
        lastAcceptError = message;
        await new Promise<void>((resolve) => {
          resumeBackoff = resolve;
          backoff = setTimeout(resolve, ACCEPT_BACKOFF_MS);
        });
        continue;
      }
      lastAcceptError = "";
      conn.setNoDelay(true);
      const remote = conn.remoteAddr as Deno.NetAddr;
      const peer: PeerInfo = { transport: "tcp", address: remote.hostname, port: remote.port };
      const connection = new TcpConnection(conn, peer, log);
      const handler = accept(connection);
      if (!handler) {
        connection.close();
        continue;
      }
      const running = connection.start(handler);
      open.add(running);
      running.then(() => open.delete(running));
    }
  })();

  return {
    type: "tcp",
    host,
    port: (listener.addr as Deno.NetAddr).port,
    async close() {
      if (closed) return;
      closed = true;
      clearTimeout(backoff);
      resumeBackoff?.();
      listener.close();
      await acceptLoop;
    },
    async drained() {
      await Promise.all(open);
    },
  };
}

class TcpConnection implements Connection {
  readonly peer: PeerInfo;
  readonly #conn: Deno.TcpConn;
  readonly #log: Logger;
  #queue: Uint8Array[] = [];
  #buffered = 0;
  #flushing = false;
  #closing = false;
  #closed = false;
  #linger: ReturnType<typeof setTimeout> | undefined;

  constructor(conn: Deno.TcpConn, peer: PeerInfo, log: Logger) {
    this.#conn = conn;
    this.peer = peer;
    this.#log = log;
  }

  get buffered(): number {
    return this.#buffered;
  }

  write(bytes: Uint8Array): void {
    if (this.#closing) return;
    this.#queue.push(bytes);
    this.#buffered += bytes.length;
    if (!this.#flushing) {
      this.#flushing = true;
      // Let the rest of this turn queue its packets too, then write them all at once.
      queueMicrotask(() => this.#flush());
    }
  }

  close(): void {
    if (this.#closing) return;
    this.#closing = true;
    if (!this.#flushing) return this.#destroy();
    this.#linger = setTimeout(() => this.#destroy(), CLOSE_LINGER_MS);
  }

  /** Reads until the connection ends; never rejects, so a handler bug cannot take the broker down. */
  async start(handler: ConnectionHandler): Promise<void> {
    const buffer = new Uint8Array(READ_BUFFER_SIZE);
    while (!this.#closed) {
      let n: number | null;
      try {
        n = await this.#conn.read(buffer);
      } catch {
        break; // reset by the peer, or closed by us while reading
      }
      if (n === null) break;
      if (!this.#guard(() => handler.data(buffer.subarray(0, n)))) break;
    }
    this.#destroy();
    this.#guard(() => handler.closed());
  }

  #guard(action: () => void): boolean {
    try {
      action();
      return true;
    } catch (error) {
      const where = `${this.peer.address}:${this.peer.port}`;
      this.#log.error(
        `internal error on connection ${where}: ${error instanceof Error ? error.stack : error}`,
      );
      return false;
    }
  }

  async #flush(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        const chunks = this.#queue;
        this.#queue = [];
        const data = chunks.length === 1 ? chunks[0] : concat(chunks);
        for (let at = 0; at < data.length;) at += await this.#conn.write(data.subarray(at));
        this.#buffered -= data.length;
      }
    } catch {
      // The peer went away; the read loop sees it too and reports the close.
      this.#destroy();
    } finally {
      this.#flushing = false;
      if (this.#closing) this.#destroy();
    }
  }

  #destroy(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing = true;
    clearTimeout(this.#linger);
    this.#queue = [];
    this.#buffered = 0;
    try {
      this.#conn.close();
    } catch {
      // Already closed by the runtime.
    }
  }
}

function concat(chunks: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const chunk of chunks) length += chunk.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}
