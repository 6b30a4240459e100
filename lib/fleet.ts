/**
 * The fleet view's I/O: lists the groups of every ring member and every node being drained, in parallel, through the
 * NodeClient (its timeout and credentials), and keeps each node's listing for a short while. However many readers
 * ask, a node is listed at most once per `cacheMs` and never twice at once: readers that arrive while a listing runs
 * share it. Readers do not wait for a refresh while the last view is younger than `maxStaleMs`: a Pushgateway takes
 * seconds to list 10,000 groups, and readers get the last view meanwhile. A node that cannot be listed is a Listing
 * with an error; it never hides the others. Building the view takes turns with the other background reads, one slice
 * of the event loop at a time (lib/pace.ts). In the director all of this runs on the fleet's own worker thread
 * (lib/fleet/thread.ts), whose loop also answers the reads between slices, so its garbage never pauses pushes.
 */
import { Counter, type Registry } from 'prom-client';

import {
  type FleetCopy,
  type FleetGroup,
  type FleetView,
  type Listing,
  type NodeRole,
  type OwnerOf,
  copiesOf,
  copySortKey,
  fleetGroupOf,
  isNewerCopy,
  summarise,
} from './core/fleet';
import { groupKeyOf } from './core/group';
import type { Node } from './core/node';
import type { Ring } from './core/ring';
import type { NodeClient } from './nodes/client';
import { BACKGROUND, type Pacer } from './pace';
import type { Placement } from './placement';

/** FLEET_CACHE_MS is how long a node's listing is reused: at most one listing per node per 5 s. */
export const FLEET_CACHE_MS = 5000;

/** FLEET_MAX_STALE_MS is how old (from its listings' start) a view may be and still be served while a new one is made. */
export const FLEET_MAX_STALE_MS = 60_000;

/** Groups handled between two looks at the pacer; a run of this many is sorted in one piece. */
const UNIT = 500;

/** FleetOptions configures createFleet. */
export type FleetOptions = Readonly<{
  placement: Placement;
  /** Lists the nodes: `eachGroup`, keeping of each group what the view needs and its JSON text (FleetGroup). */
  client: Pick<NodeClient, 'eachGroup'>;
  /** Nodes leaving the ring (`--reconcile.drain`) whose groups are still read. */
  drain: readonly Node[];
  /** Nodes discovery names that health checks took off the ring, read too (role `down`). @default none */
  down?: () => readonly Node[];
  /** How long a listing is reused, from its start. @default FLEET_CACHE_MS */
  cacheMs?: number;
  /** Serve the last view while a fresher one is made, as long as its oldest listing started less than this ago; 0: always wait. @default FLEET_MAX_STALE_MS */
  maxStaleMs?: number;
  /** Where listings are counted; none by default. */
  registry?: Registry;
  /** Called after each listing with its outcome (the fleet's worker thread counts them on the main thread's registry). */
  onListing?: (node: Node, outcome: 'ok' | 'error') => void;
  /** The clock, in milliseconds. @default Date.now */
  now?: () => number;
  /** Hands out slices of the event loop to building a view. @default BACKGROUND (lib/pace.ts) */
  pacer?: Pacer;
}>;

/** Fleet reads the fleet view. One per director; share it between every reader. */
export type Fleet = Readonly<{
  /**
   * read returns the current view: the last one made, while it is younger than `maxStaleMs` and the ring did not
   * change (a refresh starts behind it when its listings are due), else the next one. Never rejects.
   */
  read(): Promise<FleetView>;
  /** maxStaleMs is how old a view may be and still be served (FleetOptions.maxStaleMs). */
  maxStaleMs: number;
  /** nodes returns the nodes a read lists, with their role: ring members, draining nodes off the ring, then down ones. */
  nodes(): readonly { node: Node; role: NodeRole }[];
}>;

type Entry = { listedAt: number; listing: Promise<Listing>; settled: boolean };
type Keyed = { key: string; copy: FleetCopy };

/** breathe waits for the next slice when the pacer says this one is used up. */
async function breathe(pacer: Pacer): Promise<void> {
  if (pacer.due()) await pacer.next();
}

/** mergeRuns merges two sorted runs, yielding to the event loop when the pacer says so. */
async function mergeRuns(a: readonly Keyed[], b: readonly Keyed[], pacer: Pacer): Promise<Keyed[]> {
  const out: Keyed[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x = a[i];
    const y = b[j];
    if (y === undefined || (x !== undefined && x.key <= y.key)) {
      out.push(x as Keyed);
      i++;
    } else {
      out.push(y);
      j++;
    }
    if (out.length % UNIT === 0) await breathe(pacer);
  }
  return out;
}

/** sortInSlices sorts copies as copySortKey orders them: slices sorted apart, then merged, never in one piece. */
async function sortInSlices(copies: readonly FleetCopy[], pacer: Pacer): Promise<FleetCopy[]> {
  let runs: Keyed[][] = [];
  for (let at = 0; at < copies.length; at += UNIT) {
    const run = copies.slice(at, at + UNIT).map((copy) => ({ key: copySortKey(copy), copy }));
    run.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    runs.push(run);
    await breathe(pacer);
  }
  while (runs.length > 1) {
    const next: Keyed[][] = [];
    for (let i = 0; i < runs.length; i += 2) next.push(i + 1 < runs.length ? await mergeRuns(runs[i] as Keyed[], runs[i + 1] as Keyed[], pacer) : (runs[i] as Keyed[]));
    runs = next;
  }
  return (runs[0] ?? []).map((entry) => entry.copy);
}

/** newestInSlices is newestCopies (lib/core/fleet.ts) in slices: the newest copy of each group, in order. */
async function newestInSlices(copies: readonly FleetCopy[], pacer: Pacer): Promise<FleetCopy[]> {
  const best = new Map<string, FleetCopy>();
  for (let at = 0; at < copies.length; at += UNIT) {
    for (const copy of copies.slice(at, at + UNIT)) {
      const current = best.get(copy.identity);
      if (current === undefined || isNewerCopy(copy, current)) best.set(copy.identity, copy);
    }
    await breathe(pacer);
  }
  const newest: FleetCopy[] = [];
  for (let at = 0; at < copies.length; at += UNIT) {
    for (const copy of copies.slice(at, at + UNIT)) if (best.get(copy.identity) === copy) newest.push(copy);
    await breathe(pacer);
  }
  return newest;
}

/** describeListingError is a failed listing in one line (NodeClient's errors already are; anything else, its message). */
function describeListingError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * fleetNodes returns the nodes a fleet read lists, with their role: the ring's members, then the draining nodes off
 * the ring, then the nodes health checks took off it (neither on the ring nor draining).
 */
export function fleetNodes(members: readonly Node[], drain: readonly Node[], down: readonly Node[]): { node: Node; role: NodeRole }[] {
  const onRing = new Set(members.map((node) => node.id));
  return [
    ...members.map((node) => ({ node, role: 'member' as const })),
    ...drain.filter((node) => !onRing.has(node.id)).map((node) => ({ node, role: 'draining' as const })),
    // A node its checks took out vanished from the page and the API, its groups with it: the moment to show it.
    ...down
      .filter((node) => !onRing.has(node.id) && !drain.some((drained) => drained.id === node.id))
      .map((node) => ({ node, role: 'down' as const })),
  ];
}

/** listingsCounter registers pgw_director_fleet_listings_total{node,outcome}: listings made for the fleet views. */
export function listingsCounter(registry: Registry): Counter<'node' | 'outcome'> {
  return new Counter({
    name: 'pgw_director_fleet_listings_total',
    help: 'Listings of a node\'s groups made for the fleet views, by outcome (ok or error).',
    labelNames: ['node', 'outcome'] as const,
    registers: [registry],
  });
}

/** createFleet returns the fleet reader. */
export function createFleet(options: FleetOptions): Fleet {
  const { placement, client } = options;
  const cacheMs = options.cacheMs ?? FLEET_CACHE_MS;
  const maxStaleMs = options.maxStaleMs ?? FLEET_MAX_STALE_MS;
  const now = options.now ?? Date.now;
  const pacer = options.pacer ?? BACKGROUND;
  const listings = options.registry === undefined ? undefined : listingsCounter(options.registry);
  const cache = new Map<string, Entry>();
  // Per node, the groups of its last complete listing by their JSON text: an element whose text did not change since
  // (most of them, 5 s apart) is taken over as it is, neither parsed nor rebuilt.
  const lastGroups = new Map<string, ReadonlyMap<string, FleetGroup>>();
  // Owners by group identity on the ring of the last view, carried over to the next view while the ring stays.
  let owners: { ring: Ring; byIdentity: Map<string, Node | undefined> } | undefined;
  let memo: { ring: Ring; inputs: readonly Promise<Listing>[]; view: Promise<FleetView> } | undefined;
  // The last view made, for readers that need not wait: its ring and when its oldest listing started.
  let latest: { ring: Ring; view: FleetView; oldestListedAt: number } | undefined;

  const nodes = (): { node: Node; role: NodeRole }[] => fleetNodes(placement.ring.nodes, options.drain, options.down?.() ?? []);

  const list = (key: string, node: Node, role: NodeRole, listedAt: number): Promise<Listing> => {
    const groups: FleetGroup[] = [];
    const before = lastGroups.get(key);
    const byText = new Map<string, FleetGroup>();
    const keep = (group: FleetGroup, text: string): void => {
      groups.push(group);
      byText.set(text, group);
    };
    const known = (text: string): boolean => {
      const group = before?.get(text);
      if (group === undefined) return false;
      keep(group, text);
      return true;
    };
    return client.eachGroup(node, (group, text) => keep(fleetGroupOf(group, text), text), before === undefined ? {} : { known }).then(
      () => {
        listings?.inc({ node: node.id, outcome: 'ok' });
        options.onListing?.(node, 'ok');
        lastGroups.set(key, byText);
        return { node, role, listedAt, groups, error: undefined };
      },
      (error: unknown) => {
        listings?.inc({ node: node.id, outcome: 'error' });
        options.onListing?.(node, 'error');
        return { node, role, listedAt, groups: undefined, error: describeListingError(error) };
      },
    );
  };

  const build = async (ring: Ring, inputs: readonly Promise<Listing>[]): Promise<FleetView> => {
    const done = await Promise.all(inputs);
    // Owners are only defined for the canonical key: under --hash.key=path they depend on how each push was spelled.
    const lookup: OwnerOf = (labels) => ring.lookup(placement.hash(groupKeyOf(labels), ''));
    const previous = owners?.ring === ring ? owners.byIdentity : undefined;
    const byIdentity = new Map<string, Node | undefined>();
    const cachedLookup: OwnerOf = (labels, identity) => {
      const owner = previous !== undefined && previous.has(identity) ? previous.get(identity) : lookup(labels, identity);
      byIdentity.set(identity, owner);
      return owner;
    };
    const ownerOf: OwnerOf = placement.hashKey === 'grouping-key' ? cachedLookup : () => undefined;
    const copies: FleetCopy[] = [];
    for (const listing of done) {
      const groups = listing.groups ?? [];
      for (let at = 0; at < groups.length; at += UNIT) {
        for (const copy of copiesOf({ ...listing, groups: groups.slice(at, at + UNIT) }, ownerOf)) copies.push(copy);
        await breathe(pacer);
      }
    }
    owners = { ring, byIdentity };
    const sorted = await sortInSlices(copies, pacer);
    const newest = await newestInSlices(sorted, pacer);
    const shareList = ring.shares();
    const shares = new Map(ring.nodes.map((node, i) => [node.id, shareList[i] ?? 0]));
    return { nodes: summarise(done, sorted, (node) => shares.get(node.id) ?? 0), copies: sorted, newest };
  };

  const read = (): Promise<FleetView> => {
    const at = now();
    const ring = placement.ring;
    const wanted = nodes();
    const keys = new Set<string>();
    const inputs = wanted.map(({ node, role }) => {
      const key = `${role} ${node.id} ${node.url}`;
      keys.add(key);
      let entry = cache.get(key);
      // A new listing only when the last one is done and due: never two at once towards one node.
      if (entry === undefined || (entry.settled && at - entry.listedAt >= cacheMs)) {
        const fresh: Entry = { listedAt: at, listing: list(key, node, role, at), settled: false };
        void fresh.listing.then(() => (fresh.settled = true));
        entry = fresh;
        cache.set(key, entry);
      }
      return entry.listing;
    });
    for (const key of cache.keys()) if (!keys.has(key)) cache.delete(key);
    for (const key of lastGroups.keys()) if (!keys.has(key)) lastGroups.delete(key);
    const same = memo !== undefined && memo.ring === ring && memo.inputs.length === inputs.length && memo.inputs.every((p, i) => p === inputs[i]);
    if (!same || memo === undefined) {
      const view = build(ring, inputs);
      memo = { ring, inputs, view };
      void view.then((made) => {
        const oldestListedAt = Math.min(...made.nodes.map((line) => line.listedAt));
        if (latest === undefined || oldestListedAt >= latest.oldestListedAt || latest.ring !== ring) latest = { ring, view: made, oldestListedAt };
      });
    }
    if (latest !== undefined && latest.ring === ring && at - latest.oldestListedAt < maxStaleMs) return Promise.resolve(latest.view);
    return memo.view;
  };

  return Object.freeze({ read, nodes, maxStaleMs });
}
