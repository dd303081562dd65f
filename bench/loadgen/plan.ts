/**
 * Who talks to whom, and which worker process runs which client. Pure.
 *
 * Publisher i publishes on topic i % topics; subscriber j subscribes topic j % topics, or every topic with
 * a wildcard (as in mqttload). Placement keeps a publisher and its subscribers in one process when there
 * are at least as many independent groups as processes (pairwise: no cross-process traffic at all), and
 * otherwise balances estimated work per process, one client at a time.
 */

export interface Topology {
  npubs: number;
  nsubs: number;
  topics: number;
  wildcard: boolean;
}

/** The clients one worker runs, by global index. */
export interface Share {
  pubs: number[];
  subs: number[];
}

export function subMatches(topo: Topology, sub: number, pub: number): boolean {
  return topo.wildcard || sub % topo.topics === pub % topo.topics;
}

/** Subscribers receiving publisher `pub`'s messages. */
export function fanoutOf(topo: Topology, pub: number): number {
  if (topo.wildcard) return topo.nsubs;
  let n = 0;
  for (let j = 0; j < topo.nsubs; j++) if (subMatches(topo, j, pub)) n++;
  return n;
}

interface Item {
  pubs: number[];
  subs: number[];
  /** Messages handled per message a publisher sends: one send per publisher, one receipt per delivery. */
  load: number;
}

/** Splits the clients over at most `processes` workers; never returns an empty share. */
export function placeClients(topo: Topology, processes: number): Share[] {
  const groups = components(topo);
  let items: Item[] = groups;
  if (groups.length < processes) {
    items = [];
    for (let i = 0; i < topo.npubs; i++) items.push({ pubs: [i], subs: [], load: 1 });
    for (let j = 0; j < topo.nsubs; j++) {
      let load = 0;
      for (let i = 0; i < topo.npubs; i++) if (subMatches(topo, j, i)) load++;
      items.push({ pubs: [], subs: [j], load });
    }
  }
  // Longest processing time first: heaviest item to the least loaded worker (ties: lowest index).
  const order = items.map((item, k) => ({ item, k })).sort((a, b) => b.item.load - a.item.load || a.k - b.k);
  const shares: Share[] = [];
  const loads: number[] = [];
  const n = Math.max(1, Math.min(processes, items.length));
  for (let w = 0; w < n; w++) {
    shares.push({ pubs: [], subs: [] });
    loads.push(0);
  }
  for (const { item } of order) {
    let best = 0;
    for (let w = 1; w < n; w++) if (loads[w] < loads[best]) best = w;
    shares[best].pubs.push(...item.pubs);
    shares[best].subs.push(...item.subs);
    loads[best] += item.load;
  }
  for (const s of shares) {
    s.pubs.sort((a, b) => a - b);
    s.subs.sort((a, b) => a - b);
  }
  return shares.filter((s) => s.pubs.length + s.subs.length > 0);
}

/** Groups of clients with no messages between groups: one per topic, or one in all with a wildcard. */
function components(topo: Topology): Item[] {
  if (topo.wildcard && topo.nsubs > 0) {
    const pubs = range(topo.npubs);
    const subs = range(topo.nsubs);
    return [{ pubs, subs, load: topo.npubs * (1 + topo.nsubs) }];
  }
  const byTopic = new Map<number, Item>();
  const get = (t: number) => {
    let item = byTopic.get(t);
    if (item === undefined) byTopic.set(t, item = { pubs: [], subs: [], load: 0 });
    return item;
  };
  for (let i = 0; i < topo.npubs; i++) get(i % topo.topics).pubs.push(i);
  for (let j = 0; j < topo.nsubs; j++) get(j % topo.topics).subs.push(j);
  const items = [...byTopic.values()];
  for (const item of items) item.load = item.pubs.length * (1 + item.subs.length) + item.subs.length;
  return items;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** `total` split into `parts` near-equal integers, larger ones first: 10 over 3 -> [4, 3, 3]. */
export function splitEvenly(total: number, parts: number): number[] {
  const base = Math.floor(total / parts);
  const extra = total - base * parts;
  return Array.from({ length: parts }, (_, k) => base + (k < extra ? 1 : 0));
}
