/**
 * One worker's MQTT clients on one event loop: raw connections (TCP, TLS or WebSocket), hand-encoded packets, mqttload's
 * publishing rules (QoS 1 in-flight limit, closed-loop window, fixed rate) and its subscriber checks
 * (latency, loss, duplicates, gaps).
 *
 * Work is batched per turn of the event loop: reads only record what arrived and mark the publishers that
 * may send and the sockets that have bytes waiting (PUBACKs); one microtask at the end of the turn then
 * lets each marked publisher produce and write at once, and writes each other socket's bytes with one
 * call. A publisher builds a batch from copies of its PUBLISH template and patches the packet id, send
 * time and sequence number in place, so steady state allocates nothing per message.
 */

import type { SharedClock } from "./clock.ts";
import { Histogram } from "./histogram.ts";
import type { ConnectStats, Failure, Progress, WorkerConfig, WorkerResult } from "./ipc.ts";
import {
  CONNACK,
  DISCONNECT,
  DISCONNECT_PACKET,
  encodeConnect,
  encodeSubscribe,
  FrameDecoder,
  MalformedPacket,
  PINGREQ_PACKET,
  PINGRESP,
  PUBACK,
  PUBACK_BYTES,
  PUBLISH,
  publishTemplate,
  SUBACK,
  writePuback,
} from "./mqtt.ts";
import { Outbox } from "./outbox.ts";
import { HEADER_BYTES, readU32, readU64, writeU32, writeU64 } from "./payload.ts";
import type { PeerLinks } from "./peers.ts";
import { fanoutOf } from "./plan.ts";
import { selfCpuSeconds } from "./proc.ts";
import { Ticker } from "./ticker.ts";
import { type ByteStream, type Dialer, dialer } from "./transport.ts";

const SUB = 0;
const PUB = 1;
const IDLE = 2;
type Role = typeof SUB | typeof PUB | typeof IDLE;

// Connection states, ordered as mqttload's: "at least READY" means the CONNACK came.
const NEW = 0;
const CONNECTING = 1;
const READY = 2;
const SUBSCRIBING = 3;
const SUBSCRIBED = 4;
const DEAD = 5;

/** Stop producing while this much is unsent on a publisher's socket (mqttload's OUT_HIGH). */
const OUT_HIGH = 64 * 1024;
const PROGRESS_MS = 20;
const HOUSEKEEPING_MS = 100;
/** Fixed-rate ticks at most this often (4,000/s: each wakeup costs Deno tens of microseconds of CPU); denser
 * schedules send several publishers per tick. */
const MIN_SLOT_NS = 250_000;

type Timer = ReturnType<typeof setTimeout>;

class Client {
  conn: ByteStream | null = null;
  state = NEW;
  inHandshake = false;
  tStart = 0;
  lastTx = 0;
  readonly out: Outbox;
  readonly decoder: FrameDecoder;
  readonly readSize: number;
  pumping = false;
  dirty = false;
  // Publisher: its PUBLISH (patched in place), counters and QoS 1 packet ids in use.
  template: Uint8Array = new Uint8Array(0);
  packetIdOffset = -1;
  payloadOffset = 0;
  sent = 0;
  inflight = 0;
  nextPacketId = 1;
  packetIds: Uint32Array | null = null;
  /** Deliveries of this publisher's messages, in any process. */
  recvFrom = 0;
  fanout = 0;
  /** Rate schedule phase, spreading publishers over one interval. */
  tOffset = 0;
  wantProduce = false;
  // Subscriber: per publisher, the last sequence number + 1 (0 = none yet).
  lastSeq: Uint32Array | null = null;

  constructor(readonly role: Role, readonly index: number) {
    const idle = role === IDLE;
    this.out = new Outbox(idle ? 64 : 4096);
    this.readSize = idle ? 256 : role === SUB ? 64 * 1024 : 8 * 1024;
    this.decoder = new FrameDecoder(this.readSize);
  }

  get name(): string {
    return `${this.role === SUB ? "sub" : this.role === PUB ? "pub" : "conn"}${this.index}`;
  }
}

export interface EngineEvents {
  progress(progress: Progress): void;
  log(message: string): void;
}

export class Engine {
  readonly #cfg: WorkerConfig;
  readonly #clock: SharedClock;
  readonly #peers: PeerLinks | null;
  readonly #events: EngineEvents;
  readonly #clients: Client[] = [];
  readonly #subs: Client[] = [];
  readonly #pubs: Client[] = [];
  /** Local publisher by global index; undefined when it runs in another process. */
  readonly #pubByIndex: (Client | undefined)[];
  readonly #hist = new Histogram();
  readonly #dialer: Dialer;

  // Handshakes.
  #nextStart = 0;
  #hsActive = 0;
  #hsDone = 0;
  #hsOk = 0;
  #hsFailed = 0;
  #outOfFiles = false;
  #tConnFirst = 0;
  #tConnLast = 0;
  #subscribed = 0;
  #grantedLower = false;
  #connectDone: (() => void) | null = null;

  // Counters.
  #sent = 0;
  #expected = 0;
  #received = 0;
  #acked = 0;
  #dups = 0;
  #gaps = 0;
  #lastRecv = 0;
  #errors = 0;
  #firstError = "";
  #firstErrorAt = 0;
  readonly #fails = new Map<string, number>();
  #dropped = 0;

  // Publishing.
  #publishing = false;
  #pubCut = false;
  #published = false;
  #tailCheck = false;
  #tPubStart = 0;
  #tPubDone = 0;
  #cpuStart = 0;
  #stopping = false;

  // The per-turn batch.
  #scheduled = false;
  readonly #dirty: Client[] = [];
  readonly #toProduce: Client[] = [];

  #timers = new Set<Timer>();
  #ticker: Ticker | null = null;
  #lastProgressKey = "";

  constructor(cfg: WorkerConfig, clock: SharedClock, peers: PeerLinks | null, events: EngineEvents) {
    this.#cfg = cfg;
    this.#clock = clock;
    this.#peers = peers;
    this.#events = events;
    this.#pubByIndex = new Array(cfg.npubs);
    this.#dialer = dialer(cfg);
    const topo = { npubs: cfg.npubs, nsubs: cfg.nsubs, topics: cfg.topics, wildcard: cfg.wildcard };
    // Subscribers first, as mqttload connects them, so they are in place before anyone publishes.
    for (const j of cfg.subs) {
      const c = new Client(SUB, j);
      c.lastSeq = new Uint32Array(cfg.npubs);
      this.#subs.push(c);
    }
    for (const i of cfg.pubs) {
      const c = new Client(PUB, i);
      const t = publishTemplate(`${cfg.prefix}/t/${i % cfg.topics}`, cfg.qos, cfg.size);
      c.template = t.bytes;
      c.packetIdOffset = t.packetIdOffset;
      c.payloadOffset = t.payloadOffset;
      writeU32(c.template, c.payloadOffset + 8, i);
      if (cfg.qos) c.packetIds = new Uint32Array(2048);
      c.fanout = fanoutOf(topo, i);
      if (cfg.rate > 0) c.tOffset = (1e9 / cfg.rate) * i / cfg.npubs;
      this.#pubs.push(c);
      this.#pubByIndex[i] = c;
    }
    for (let k = 0; k < cfg.conns; k++) this.#clients.push(new Client(IDLE, cfg.connsFrom + k));
    this.#clients.push(...this.#subs, ...this.#pubs);
  }

  // ---------------------------------------------------------------- connecting

  /** Opens every connection (bounded parallelism), then subscribes; resolves when all is done or failed. */
  connect(): Promise<{ connect: ConnectStats; failure: Failure }> {
    const done = new Promise<void>((resolve) => this.#connectDone = resolve);
    this.#every(HOUSEKEEPING_MS, () => this.#housekeeping());
    if (this.#clients.length === 0) this.#finishConnect();
    this.#startMore();
    return done.then(() => ({ connect: this.#connectStats(), failure: this.#failure() }));
  }

  #startMore(): void {
    while (this.#nextStart < this.#clients.length && this.#hsActive < this.#cfg.parallel) {
      const c = this.#clients[this.#nextStart++];
      if (this.#outOfFiles) {
        c.inHandshake = true;
        this.#hsActive++;
        this.#fail(c, "not attempted: out of file descriptors");
        continue;
      }
      this.#open(c);
    }
  }

  async #open(c: Client): Promise<void> {
    const now = this.#clock.nowNs();
    c.tStart = now;
    c.inHandshake = true;
    this.#hsActive++;
    if (this.#tConnFirst === 0) this.#tConnFirst = now;
    c.state = CONNECTING;
    let conn: ByteStream;
    try {
      conn = await this.#dialer.dial();
    } catch (error) {
      if (error instanceof Error && /too many open files/i.test(error.message)) this.#outOfFiles = true;
      this.#fail(c, `connect: ${message(error)}`);
      return;
    }
    if (c.state === DEAD || this.#stopping) { // timed out meanwhile
      conn.close();
      return;
    }
    c.conn = conn;
    c.out.append(encodeConnect(`${this.#cfg.clientIdBase}-${"spc"[c.role]}${c.index}`, this.#cfg.keepalive));
    this.#markDirty(c);
    this.#readLoop(c, conn);
  }

  #hsFinished(c: Client, ok: boolean): void {
    if (!c.inHandshake) return;
    c.inHandshake = false;
    this.#hsActive--;
    this.#hsDone++;
    if (ok) {
      this.#hsOk++;
      this.#tConnLast = this.#clock.nowNs();
    } else {
      this.#hsFailed++;
    }
    this.#startMore();
    if (this.#hsDone === this.#clients.length) this.#afterHandshakes();
  }

  #afterHandshakes(): void {
    this.#log(`connected ${this.#hsOk}/${this.#clients.length}`);
    if (this.#hsFailed > 0 || this.#cfg.conns > 0 || this.#subs.length === 0) {
      this.#finishConnect();
      return;
    }
    for (const c of this.#subs) {
      const filter = this.#cfg.wildcard
        ? `${this.#cfg.prefix}/t/+`
        : `${this.#cfg.prefix}/t/${c.index % this.#cfg.topics}`;
      c.out.append(encodeSubscribe(1, filter, this.#cfg.qos));
      c.state = SUBSCRIBING;
      this.#markDirty(c);
    }
  }

  #finishConnect(): void {
    const done = this.#connectDone;
    this.#connectDone = null;
    done?.();
  }

  #connectStats(): ConnectStats {
    return {
      ok: this.#hsOk,
      failed: this.#hsFailed,
      first: this.#tConnFirst,
      last: this.#tConnLast,
      subscribed: this.#subscribed,
      grantedLower: this.#grantedLower,
    };
  }

  #failure(): Failure {
    return {
      errors: this.#errors,
      firstError: this.#firstError,
      firstErrorAt: this.#firstErrorAt,
      fails: Object.fromEntries(this.#fails),
      dropped: this.#dropped,
    };
  }

  // ---------------------------------------------------------------- reading

  async #readLoop(c: Client, conn: ByteStream): Promise<void> {
    const decoder = c.decoder;
    try {
      for (;;) {
        const n = await conn.read(decoder.space(c.readSize / 2));
        if (n === null) {
          // After our DISCONNECT the broker closing is the expected answer.
          if (!this.#stopping) {
            this.#fail(
              c,
              c.inHandshake ? "connection closed during handshake" : "connection closed by broker",
            );
          }
          return;
        }
        decoder.commit(n);
        const now = this.#clock.nowNs();
        while (c.state !== DEAD && decoder.next()) this.#onPacket(c, decoder, now);
        if (c.state === DEAD) return;
      }
    } catch (error) {
      if (c.state === DEAD || this.#stopping) return;
      this.#fail(c, error instanceof MalformedPacket ? error.message : `recv: ${message(error)}`);
    }
  }

  #onPacket(c: Client, d: FrameDecoder, now: number): void {
    const buf = d.buf;
    const body = d.body;
    const n = d.length;
    switch (d.b0 >> 4) {
      case PUBLISH:
        this.#onPublish(c, d.b0, buf, body, n, now);
        return;
      case PUBACK:
        this.#onPuback(c, buf, body, n);
        return;
      case CONNACK:
        if (c.state !== CONNECTING || !c.inHandshake || n < 2) return this.#fail(c, "unexpected CONNACK");
        if (buf[body + 1] !== 0) return this.#fail(c, `CONNACK return code 0x${hex(buf[body + 1])}`);
        c.state = READY;
        this.#hsFinished(c, true);
        return;
      case SUBACK: {
        if (c.state !== SUBSCRIBING || n < 3) return this.#fail(c, "unexpected SUBACK");
        const code = buf[body + 2];
        if (code >= 0x80) return this.#fail(c, `subscription refused: SUBACK code 0x${hex(code)}`);
        if (code < this.#cfg.qos) this.#grantedLower = true;
        c.state = SUBSCRIBED;
        if (++this.#subscribed === this.#subs.length) this.#finishConnect();
        return;
      }
      case PINGRESP:
        return;
      case DISCONNECT:
        return this.#fail(c, "broker sent DISCONNECT");
      default:
        return this.#fail(c, `unexpected packet type ${d.b0 >> 4}`);
    }
  }

  #onPublish(c: Client, b0: number, buf: Uint8Array, body: number, n: number, now: number): void {
    const qos = (b0 >> 1) & 3;
    if (c.role !== SUB) return this.#fail(c, "unexpected PUBLISH on a publisher connection");
    if (qos > 1) return this.#fail(c, `PUBLISH with QoS ${qos} (subscribed with ${this.#cfg.qos})`);
    if (n < 2) return this.#fail(c, "malformed PUBLISH");
    let pos = body + 2 + ((buf[body] << 8) | buf[body + 1]);
    let packetId = 0;
    if (qos) {
      if (pos + 2 > body + n) return this.#fail(c, "malformed PUBLISH");
      packetId = (buf[pos] << 8) | buf[pos + 1];
      pos += 2;
    }
    if (pos > body + n || body + n - pos < HEADER_BYTES) {
      return this.#fail(c, `PUBLISH payload shorter than ${HEADER_BYTES} bytes`);
    }
    const sentNs = readU64(buf, pos);
    const pub = readU32(buf, pos + 8);
    const seq = readU32(buf, pos + 12);
    if (pub >= this.#cfg.npubs) return this.#fail(c, `PUBLISH from unknown publisher ${pub}`);
    if (qos) {
      const at = c.out.reserve(PUBACK_BYTES);
      writePuback(c.out.buf, at, packetId);
      c.out.len += PUBACK_BYTES;
      this.#markDirty(c);
    }
    this.#hist.add(now > sentNs ? now - sentNs : 0);
    this.#received++;
    this.#lastRecv = now;
    const publisher = this.#pubByIndex[pub];
    if (publisher !== undefined) {
      publisher.recvFrom++;
      if (this.#cfg.window > 0) this.#markProduce(publisher);
    } else if (this.#peers !== null) {
      this.#peers.count(pub);
      this.#schedule();
    }
    const last = c.lastSeq!;
    if (seq + 1 <= last[pub]) {
      this.#dups++;
    } else {
      if (seq !== last[pub]) this.#gaps++;
      last[pub] = seq + 1;
    }
  }

  #onPuback(c: Client, buf: Uint8Array, body: number, n: number): void {
    const ids = c.packetIds;
    if (c.role !== PUB || n < 2 || ids === null) return this.#fail(c, "unexpected PUBACK");
    const id = (buf[body] << 8) | buf[body + 1];
    const bit = 1 << (id & 31);
    if ((ids[id >>> 5] & bit) === 0) return this.#fail(c, `PUBACK for unknown packet id ${id}`);
    ids[id >>> 5] &= ~bit;
    c.inflight--;
    this.#acked++;
    this.#markProduce(c);
    if (this.#pubCut || c.sent >= this.#cfg.count) this.#tailCheck = true;
  }

  /** Deliveries of local publisher `pub` that other processes received. */
  countRemote(pub: number, n: number): void {
    const c = this.#pubByIndex[pub];
    if (c === undefined) return;
    c.recvFrom += n;
    this.#markProduce(c);
  }

  // ---------------------------------------------------------------- writing

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(this.#turn);
  }

  #markDirty(c: Client): void {
    if (c.dirty) return;
    c.dirty = true;
    this.#dirty.push(c);
    this.#schedule();
  }

  #markProduce(c: Client): void {
    if (c.wantProduce || !this.#publishing) return;
    c.wantProduce = true;
    this.#toProduce.push(c);
    this.#schedule();
  }

  /** End of a turn: publish what the turn allowed, pass delivery counts on, write every socket once. */
  readonly #turn = (): void => {
    this.#scheduled = false;
    const produce = this.#toProduce;
    if (produce.length > 0) {
      const now = this.#clock.nowNs();
      for (let k = 0; k < produce.length; k++) {
        produce[k].wantProduce = false;
        this.#produce(produce[k], now);
      }
      produce.length = 0;
    }
    if (this.#tailCheck) this.#checkPublished();
    this.#peers?.flush();
    const dirty = this.#dirty;
    for (let k = 0; k < dirty.length; k++) {
      const c = dirty[k];
      c.dirty = false;
      if (!c.pumping && c.out.len > 0 && c.conn !== null) this.#pump(c, c.conn);
    }
    dirty.length = 0;
  };

  /** Writes `c`'s bytes until none wait; a publisher refills after each write, so the next goes at once. */
  async #pump(c: Client, conn: ByteStream): Promise<void> {
    c.pumping = true;
    try {
      while (c.out.len > 0) {
        const chunk = c.out.take();
        let off = await conn.write(chunk);
        while (off < chunk.length) off += await conn.write(chunk.subarray(off));
        c.out.written();
        const now = this.#clock.nowNs();
        c.lastTx = now;
        if (c.role === PUB) this.#produce(c, now);
      }
    } catch (error) {
      if (c.state !== DEAD && !this.#stopping) this.#fail(c, `send: ${message(error)}`);
    } finally {
      c.pumping = false;
    }
  }

  /** mqttload's pub_produce: as many PUBLISHes as the limits allow, up to OUT_HIGH bytes unsent. */
  #produce(c: Client, now: number): void {
    const cfg = this.#cfg;
    if (!this.#publishing || this.#pubCut || c.state !== READY || c.sent >= cfg.count) return;
    const pending = c.out.pending;
    if (pending >= OUT_HIGH) return;
    const left = cfg.count - c.sent;
    let allowed = left;
    // Limits re-open a message at a time as acks and deliveries trickle in; waiting for a quarter of the
    // limit batches the writes, as mqttload does.
    if (cfg.qos) {
      let room = c.inflight >= cfg.inflight ? 0 : cfg.inflight - c.inflight;
      const min = Math.floor(cfg.inflight / 4) || 1;
      if (room < min && room < left) room = 0;
      if (room < allowed) allowed = room;
    }
    if (cfg.window > 0 && c.fanout > 0) {
      const done = Math.floor(c.recvFrom / c.fanout);
      const outstanding = c.sent > done ? c.sent - done : 0;
      let room = outstanding >= cfg.window ? 0 : cfg.window - outstanding;
      const min = Math.floor(cfg.window / 4) || 1;
      if (room < min && room < left) room = 0;
      if (room < allowed) allowed = room;
    }
    if (cfg.rate > 0) {
      const t0 = this.#tPubStart + c.tOffset;
      const due = now < t0 ? 0 : Math.floor((now - t0) * cfg.rate / 1e9) + 1;
      const room = due > c.sent ? due - c.sent : 0;
      if (room < allowed) allowed = room;
    }
    if (allowed <= 0) return;
    const tmpl = c.template;
    const size = tmpl.length;
    let batch = Math.floor((OUT_HIGH - pending) / size) + 1;
    if (batch > allowed) batch = allowed;
    const payload = c.payloadOffset;
    // One send time per batch: the batch leaves in one write, microseconds after this stamp.
    writeU64(tmpl, payload, Math.round(this.#clock.nowNs()));
    const start = c.out.reserve(batch * size);
    const end = start + batch * size;
    const buf = c.out.buf;
    // Copies of the template by doubling (a few memmoves per batch, not one call per message), then the
    // per-message fields.
    buf.set(tmpl, start);
    for (let filled = start + size; filled < end;) {
      const n = Math.min(filled - start, end - filled);
      buf.copyWithin(filled, start, start + n);
      filled += n;
    }
    const ids = c.packetIds;
    let seq = c.sent;
    for (let pos = start; pos < end; pos += size) {
      if (ids !== null) {
        let id = c.nextPacketId;
        while (id === 0 || (ids[id >>> 5] & (1 << (id & 31))) !== 0) id = (id + 1) & 0xffff;
        c.nextPacketId = (id + 1) & 0xffff;
        ids[id >>> 5] |= 1 << (id & 31);
        buf[pos + c.packetIdOffset] = id >> 8;
        buf[pos + c.packetIdOffset + 1] = id & 0xff;
      }
      writeU32(buf, pos + payload + 12, seq++);
    }
    if (ids !== null) c.inflight += batch;
    c.sent = seq;
    c.out.len = end;
    this.#sent += batch;
    this.#expected += batch * c.fanout;
    if (c.sent >= cfg.count) this.#tailCheck = true;
    // Written at once rather than at the end of the turn: the send times were just stamped, and another
    // publisher's write first would add to this batch's measured latency.
    if (!c.pumping && c.conn !== null) this.#pump(c, c.conn);
  }

  // ---------------------------------------------------------------- phases

  /** Starts publishing at shared time `t0` (ns). */
  go(t0: number): void {
    this.#after(this.#clock.msUntil(t0), () => {
      this.#tPubStart = t0;
      this.#cpuStart = selfCpuSeconds();
      this.#publishing = true;
      if (this.#cfg.pubTime > 0) {
        this.#after(this.#clock.msUntil(t0 + this.#cfg.pubTime * 1e9), () => {
          this.#pubCut = true;
          this.#stopTicker();
          this.#tailCheck = true;
          this.#schedule();
        });
      }
      for (const c of this.#pubs) this.#markProduce(c);
      this.#tailCheck = true;
      if (this.#cfg.rate > 0 && this.#pubs.length > 0) this.#startTicker(t0);
      this.#every(PROGRESS_MS, () => this.#reportProgress(false));
    });
  }

  /**
   * Fixed rate: a tick per publishing slot (publishers are spread evenly over one interval, as in
   * mqttload), at least MIN_SLOT_NS apart; each tick sends whatever is due.
   */
  #startTicker(t0: number): void {
    const slot = Math.max(MIN_SLOT_NS, 1e9 / this.#cfg.rate / this.#cfg.npubs);
    this.#ticker = new Ticker(t0, slot, this.#clock.baseMs, () => {
      if (this.#pubCut || this.#stopping) return;
      for (const c of this.#pubs) this.#markProduce(c);
    });
  }

  #stopTicker(): void {
    this.#ticker?.stop();
    this.#ticker = null;
  }

  #checkPublished(): void {
    this.#tailCheck = false;
    if (!this.#publishing || this.#published) return;
    for (const c of this.#pubs) {
      if (c.state === DEAD) continue;
      if ((c.sent < this.#cfg.count && !this.#pubCut) || c.inflight > 0) return;
    }
    this.#published = true;
    this.#tPubDone = this.#clock.nowNs();
    this.#log(`published ${this.#sent}`);
    this.#reportProgress(true);
  }

  #progress(): Progress {
    return {
      sent: this.#sent,
      expected: this.#expected,
      received: this.#received,
      acked: this.#acked,
      lastRecv: this.#lastRecv,
      published: this.#published,
      tPubDone: this.#tPubDone,
      errors: this.#errors,
    };
  }

  #reportProgress(force: boolean): void {
    const p = this.#progress();
    const key = `${p.sent},${p.received},${p.acked},${p.errors},${p.published}`;
    if (!force && key === this.#lastProgressKey) return;
    this.#lastProgressKey = key;
    this.#events.progress(p);
  }

  /** Ends the run: best-effort DISCONNECT, close everything, report. */
  async stop(): Promise<WorkerResult> {
    // Publish phase only, as mqttload counts; a run that never published (conns mode) counts everything.
    const cpuS = selfCpuSeconds() - (this.#tPubStart > 0 ? this.#cpuStart : 0);
    this.#stopping = true;
    this.#publishing = false;
    this.#stopTicker();
    for (const id of this.#timers) clearTimeout(id);
    this.#timers.clear();
    this.#finishConnect();
    const goodbyes: Promise<unknown>[] = [];
    for (const c of this.#clients) {
      const conn = c.conn;
      if (conn !== null && !c.inHandshake && c.state >= READY && c.state !== DEAD && !c.pumping) {
        goodbyes.push(conn.write(DISCONNECT_PACKET).catch(() => {}));
      }
    }
    await Promise.race([Promise.all(goodbyes), new Promise<void>((resolve) => this.#after(200, resolve))]);
    for (const id of this.#timers) clearTimeout(id);
    this.#timers.clear();
    for (const c of this.#clients) this.#close(c);
    this.#dialer.close();
    this.#peers?.close();
    return {
      ...this.#progress(),
      ...this.#failure(),
      connect: this.#connectStats(),
      dups: this.#dups,
      gaps: this.#gaps,
      hist: this.#hist.toSparse(),
      cpuS,
      wallSkewMs: 0,
    };
  }

  // ---------------------------------------------------------------- errors and upkeep

  /** A protocol or connection error: counted, the first kept, the connection closed. */
  #fail(c: Client, why: string): void {
    if (c.state === DEAD) return;
    this.#errors++;
    if (this.#firstError === "") {
      this.#firstError = `${c.name}: ${why}`;
      this.#firstErrorAt = this.#clock.nowNs();
    }
    this.#log(`${c.name}: ${why}`);
    const inHandshake = c.inHandshake;
    if (inHandshake) this.#fails.set(why, (this.#fails.get(why) ?? 0) + 1);
    else if (c.state >= READY) this.#dropped++;
    this.#close(c);
    if (inHandshake) this.#hsFinished(c, false);
    if (c.role === PUB) {
      this.#tailCheck = true;
      this.#schedule();
    }
    if (this.#connectDone !== null && this.#hsDone === this.#clients.length) this.#finishConnect();
  }

  #close(c: Client): void {
    c.state = DEAD;
    c.out.clear();
    const conn = c.conn;
    c.conn = null;
    try {
      conn?.close();
    } catch { /* already closed */ }
  }

  #housekeeping(): void {
    const now = this.#clock.nowNs();
    const hsLimit = this.#cfg.hsTimeout * 1e9;
    const ping = this.#cfg.keepalive > 0 ? this.#cfg.keepalive * 1e9 / 2 : 0;
    for (const c of this.#clients) {
      if (c.state === DEAD || c.state === NEW) continue;
      if (c.inHandshake) {
        if (now - c.tStart > hsLimit) this.#fail(c, "handshake timeout");
        continue;
      }
      if (ping > 0 && now - c.lastTx > ping && c.out.pending === 0) {
        c.out.append(PINGREQ_PACKET);
        this.#markDirty(c);
      }
    }
  }

  #after(ms: number, fn: () => void): Timer {
    const id = setTimeout(() => {
      this.#timers.delete(id);
      fn();
    }, Math.max(0, ms));
    this.#timers.add(id);
    return id;
  }

  #every(ms: number, fn: () => void): void {
    this.#timers.add(setInterval(fn, ms));
  }

  #log(text: string): void {
    this.#events.log(text);
  }
}

function hex(byte: number): string {
  return byte.toString(16).padStart(2, "0");
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
