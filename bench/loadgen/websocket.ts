/**
 * MQTT over WebSocket as a byte stream, with Deno's WebSocket client: sub-protocol "mqtt", binary messages
 * only. A message may carry several MQTT packets or part of one, so reads run across message boundaries
 * and a write is one message, whatever it holds.
 */

import type { ByteStream } from "./transport.ts";

/** Unsent bytes at which write() waits: Deno's WebSocket has no drain event, so bufferedAmount is polled. */
const SEND_HIGH = 1024 * 1024;
const DRAIN_POLL_MS = 1;

interface PendingRead {
  into: Uint8Array;
  resolve(n: number | null): void;
  reject(error: Error): void;
}

export class WsConn implements ByteStream {
  readonly #ws: WebSocket;
  /** Received bytes not yet read, oldest first; the head may be partly read (a subarray of its message). */
  readonly #received: Uint8Array[] = [];
  #pending: PendingRead | null = null;
  #ended = false;
  #error: Error | null = null;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.addEventListener("message", (event) => this.#onMessage(event));
    ws.addEventListener("error", (event) => {
      this.#error ??= new Error(errorText(event));
      this.#settle();
    });
    ws.addEventListener("close", () => {
      this.#ended = true;
      this.#settle();
    });
  }

  /** Connects to `url` asking for sub-protocol "mqtt"; rejects if the server does not agree to it. */
  static open(url: string, client?: Deno.HttpClient): Promise<WsConn> {
    const ws = new WebSocket(url, { protocols: ["mqtt"], client });
    ws.binaryType = "arraybuffer";
    const conn = new WsConn(ws);
    return new Promise((resolve, reject) => {
      const fail = (event: Event) => {
        ws.removeEventListener("open", opened);
        reject(
          new Error(event.type === "error" ? errorText(event) : "closed during the WebSocket handshake"),
        );
      };
      const opened = () => {
        ws.removeEventListener("error", fail);
        ws.removeEventListener("close", fail);
        if (ws.protocol === "mqtt") return resolve(conn);
        conn.close();
        reject(new Error(`the server chose sub-protocol "${ws.protocol}", not "mqtt"`));
      };
      ws.addEventListener("open", opened, { once: true });
      ws.addEventListener("error", fail, { once: true });
      ws.addEventListener("close", fail, { once: true });
    });
  }

  read(into: Uint8Array): Promise<number | null> {
    if (this.#received.length > 0) return Promise.resolve(this.#take(into));
    if (this.#error !== null) return Promise.reject(this.#error);
    if (this.#ended) return Promise.resolve(null);
    return new Promise((resolve, reject) => this.#pending = { into, resolve, reject });
  }

  /** Sends `bytes` as one binary message. Deno copies them before send() returns, so they are free at once. */
  write(bytes: Uint8Array): Promise<number> {
    if (this.#ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error("WebSocket closed"));
    this.#ws.send(bytes);
    if (this.#ws.bufferedAmount < SEND_HIGH) return Promise.resolve(bytes.length);
    return this.#drained().then(() => bytes.length);
  }

  close(): void {
    this.#ws.close();
  }

  #onMessage(event: MessageEvent): void {
    if (!(event.data instanceof ArrayBuffer)) {
      // MQTT over WebSocket is binary only [MQTT-6.0.0-1]: a text message is a broken server.
      this.#error ??= new Error("text WebSocket message (MQTT needs binary)");
      this.#ws.close();
      this.#settle();
      return;
    }
    this.#received.push(new Uint8Array(event.data));
    this.#settle();
  }

  /** Hands a waiting read what has arrived, or the end of the stream. */
  #settle(): void {
    const pending = this.#pending;
    if (pending === null) return;
    if (this.#received.length > 0) {
      this.#pending = null;
      pending.resolve(this.#take(pending.into));
    } else if (this.#error !== null) {
      this.#pending = null;
      pending.reject(this.#error);
    } else if (this.#ended) {
      this.#pending = null;
      pending.resolve(null);
    }
  }

  /** Moves as many received bytes into `into` as fit. */
  #take(into: Uint8Array): number {
    const received = this.#received;
    let n = 0;
    while (n < into.length && received.length > 0) {
      const head = received[0];
      const k = Math.min(head.length, into.length - n);
      into.set(k === head.length ? head : head.subarray(0, k), n);
      n += k;
      if (k === head.length) received.shift();
      else received[0] = head.subarray(k);
    }
    return n;
  }

  #drained(): Promise<void> {
    return new Promise((resolve) => {
      const poll = () => {
        if (this.#ws.readyState !== WebSocket.OPEN || this.#ws.bufferedAmount < SEND_HIGH / 2) resolve();
        else setTimeout(poll, DRAIN_POLL_MS);
      };
      setTimeout(poll, DRAIN_POLL_MS);
    });
  }
}

function errorText(event: Event): string {
  return event instanceof ErrorEvent && event.message !== "" ? event.message : "WebSocket error";
}
