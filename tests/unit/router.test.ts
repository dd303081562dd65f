import assert from "node:assert/strict";
import { Router, type Subscription } from "../../src/broker/router.ts";
import { Session } from "../../src/broker/session.ts";
import { MemoryRetainedStore } from "../../src/store/memory.ts";
import type { Message } from "../../src/broker/message.ts";

/** The spec's matching rules written the obvious way, as an oracle for the tries. */
function oracle(filter: string, topic: string): boolean {
  const f = filter.split("/"), t = topic.split("/");
  if (topic.startsWith("$") && (f[0] === "+" || f[0] === "#")) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true;
    if (i >= t.length || (f[i] !== "+" && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

const FILTERS = [
  "#",
  "+",
  "+/+",
  "a",
  "a/#",
  "a/+",
  "a/b",
  "a/b/#",
  "a/+/c",
  "+/b",
  "+/+/c",
  "a//b",
  "a/+/+",
  "/a",
  "/+",
  "/#",
  "$SYS/#",
  "$SYS/+",
  "+/x",
  "$app",
  "a/b/c/#",
  "b/#",
];
const TOPICS = [
  "a",
  "a/b",
  "a/b/c",
  "a/x/c",
  "a//b",
  "/a",
  "/",
  "b",
  "b/b",
  "$SYS/x",
  "$SYS",
  "$app",
  "x/x",
  "a/b/c/d",
];

/** A plain (or, with `group`, shared) subscription with default options. */
function sub(filter: string, qos: 0 | 1 | 2 = 0, group?: string): Subscription {
  return { filter, qos, noLocal: false, retainAsPublished: false, retainHandling: 0, id: undefined, group };
}

const noGroups = () => assert.fail("no shared group expected");

Deno.test("router: matches exactly what the spec's rules match, for a grid of filters and topics", () => {
  const router = new Router();
  const sessions = new Map(FILTERS.map((f) => [f, new Session(f, 0)]));
  for (const [filter, session] of sessions) router.add(session, sub(filter));
  for (const topic of TOPICS) {
    const got = new Set<string>();
    router.match(topic, (s) => got.add(s.clientId), noGroups);
    const want = new Set(FILTERS.filter((f) => oracle(f, topic)));
    assert.deepEqual(got, want, `topic ${topic}`);
  }
});

Deno.test("router: remove prunes, and a removed subscription no longer matches", () => {
  const router = new Router();
  const s = new Session("s", 0);
  router.add(s, sub("a/+/c", 1));
  router.add(s, sub("a/#", 0));
  router.remove(s, sub("a/+/c", 1));
  const seen: number[] = [];
  router.match("a/b/c", (_, subscription) => seen.push(subscription.qos), noGroups);
  assert.deepEqual(seen, [0]);
  router.remove(s, sub("a/#"));
  router.remove(s, sub("never/added"));
  router.match("a/b/c", () => assert.fail("nothing should match"), noGroups);
});

Deno.test("router: a shared group is visited once per match, beside plain subscribers, and pruned when empty", () => {
  const router = new Router();
  const [a, b, plain] = [new Session("a", 0), new Session("b", 0), new Session("plain", 0)];
  router.add(a, sub("t/+", 1, "g"));
  router.add(b, sub("t/+", 0, "g"));
  router.add(b, sub("t/#", 0, "h"));
  router.add(plain, sub("t/+"));
  const groups: string[] = [];
  const sessions: string[] = [];
  router.match("t/x", (s) => sessions.push(s.clientId), (g) => groups.push(`${g.name}:${g.members.size}`));
  assert.deepEqual(sessions, ["plain"]);
  assert.deepEqual(groups.sort(), ["g:2", "h:1"]);
  router.remove(a, sub("t/+", 1, "g"));
  router.remove(b, sub("t/+", 0, "g"));
  router.remove(b, sub("t/#", 0, "h"));
  groups.length = 0;
  router.match("t/x", () => {}, (g) => groups.push(g.name));
  assert.deepEqual(groups, []);
});

Deno.test("retained store: filter lookups agree with the oracle; delete and replace", () => {
  const store = new MemoryRetainedStore(1000);
  const message = (topic: string): Message => ({ topic, payload: new Uint8Array([1]), qos: 0, retain: true });
  for (const topic of TOPICS) assert.ok(store.set(message(topic)));
  for (const filter of FILTERS) {
    const got: string[] = [];
    store.match(filter, (m) => got.push(m.topic));
    assert.deepEqual(got.sort(), TOPICS.filter((t) => oracle(filter, t)).sort(), `filter ${filter}`);
  }
  store.delete("a/b");
  assert.equal(store.size, TOPICS.length - 1);
  const after: string[] = [];
  store.match("a/#", (m) => after.push(m.topic));
  assert.ok(!after.includes("a/b") && after.includes("a/b/c"));
});

Deno.test("retained store: the limit refuses new topics but allows replacing existing ones", () => {
  const store = new MemoryRetainedStore(2);
  const message = (topic: string, v: number): Message => ({
    topic,
    payload: new Uint8Array([v]),
    qos: 0,
    retain: true,
  });
  assert.ok(store.set(message("a", 1)));
  assert.ok(store.set(message("b", 1)));
  assert.equal(store.set(message("c", 1)), false);
  assert.ok(store.set(message("a", 2)));
  let payload = 0;
  store.match("a", (m) => payload = m.payload[0]);
  assert.equal(payload, 2);
  store.delete("b");
  assert.ok(store.set(message("c", 1)));
});
