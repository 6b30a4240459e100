/**
 * The fleet view's I/O: lists the groups of every ring member and every node being drained, in parallel, through the
 * NodeClient (its timeout and credentials), and keeps each node's listing for a short while. However many readers
 * ask, a node is listed at most once per `cacheMs`: readers that arrive while a listing runs share it, and readers
 * within `cacheMs` of its start get its result. A node that cannot be listed is a Listing with an error; it never
 * hides the others. Building the view yields to the event loop between slices, so a large fleet never holds pushes.
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';

import { Counter, type Registry } from 'prom-client';

import { type FleetCopy, type FleetView, type Listing, type NodeRole, type OwnerOf, copiesOf, sortCopies, summarise } from './core/fleet';
import { groupKeyOf } from './core/group';
import type { Node } from './core/node';
import type { Ring } from './core/ring';
import type { NodeClient } from './nodes/client';
import type { Placement } from './placement';

/** FLEET_CACHE_MS is how long a node's listing is reused: at most one listing per node per 5 s. */
export const FLEET_CACHE_MS = 5000;

/** Groups handled per slice of work before yielding to the event loop. */
const SLICE = 2000;

/** FleetOptions configures createFleet. */
export type FleetOptions = Readonly<{
  placement: Placement;
  client: Pick<NodeClient, 'listGroups'>;
  /** Nodes leaving the ring (`--reconcile.drain`) whose groups are still read. */
  drain: readonly Node[];
  /** Nodes discovery names that health checks took off the ring, read too (role `down`). @default none */
  down?: () => readonly Node[];
  /** How long a listing is reused, from its start. @default FLEET_CACHE_MS */
  cacheMs?: number;
  /** Where listings are counted; none by default. */
  registry?: Registry;
  /** The clock, in milliseconds. @default Date.now */
  now?: () => number;
}>;

/** Fleet reads the fleet view. One per director; share it between every reader. */
export type Fleet = Readonly<{
  /** read returns the current view; the same object while no listing and the ring did not change. Never rejects. */
  read(): Promise<FleetView>;
  /** nodes returns the nodes a read lists, with their role: ring members, draining nodes off the ring, then down ones. */
  nodes(): readonly { node: Node; role: NodeRole }[];
}>;

type Entry = { listedAt: number; listing: Promise<Listing> };

/** describeListingError turns a failed listing into one line: the cause's code where fetch hides it. */
export function describeListingError(error: unknown): string {
  const err = error as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (err.name === 'TimeoutError') return 'unreachable: timed out';
  // fetch says only "fetch failed"; the reason (ECONNREFUSED, ENOTFOUND...) is in its cause.
  const cause = err.cause?.code ?? err.cause?.message;
  if (err.message === 'fetch failed' && cause !== undefined) return `unreachable: ${cause}`;
  return String(err.message ?? error);
}

/** createFleet returns the fleet reader. */
export function createFleet(options: FleetOptions): Fleet {
  const { placement, client } = options;
  const cacheMs = options.cacheMs ?? FLEET_CACHE_MS;
  const now = options.now ?? Date.now;
  const listings = options.registry === undefined
    ? undefined
    : new Counter({
      name: 'pgw_director_fleet_listings_total',
      help: 'Listings of a node\'s groups made for the fleet views, by outcome (ok or error).',
      labelNames: ['node', 'outcome'] as const,
      registers: [options.registry],
    });
  const cache = new Map<string, Entry>();
  let memo: { ring: Ring; inputs: readonly Promise<Listing>[]; view: Promise<FleetView> } | undefined;

  const nodes = (): { node: Node; role: NodeRole }[] => {
    const members = placement.ring.nodes;
    const onRing = new Set(members.map((node) => node.id));
    return [
      ...members.map((node) => ({ node, role: 'member' as const })),
      ...options.drain.filter((node) => !onRing.has(node.id)).map((node) => ({ node, role: 'draining' as const })),
      // A node its checks took out vanished from the page and the API, its groups with it: the moment to show it.
      ...(options.down?.() ?? [])
        .filter((node) => !onRing.has(node.id) && !options.drain.some((drained) => drained.id === node.id))
        .map((node) => ({ node, role: 'down' as const })),
    ];
  };

  const list = (node: Node, role: NodeRole, listedAt: number): Promise<Listing> =>
    client.listGroups(node).then(
      (groups) => {
        listings?.inc({ node: node.id, outcome: 'ok' });
        return { node, role, listedAt, groups, error: undefined };
      },
      (error: unknown) => {
        listings?.inc({ node: node.id, outcome: 'error' });
        return { node, role, listedAt, groups: undefined, error: describeListingError(error) };
      },
    );

  const build = async (ring: Ring, inputs: readonly Promise<Listing>[]): Promise<FleetView> => {
    const done = await Promise.all(inputs);
    // Owners are only defined for the canonical key: under --hash.key=path they depend on how each push was spelled.
    const ownerOf: OwnerOf =
      placement.hashKey === 'grouping-key' ? (labels) => ring.lookup(placement.hash(groupKeyOf(labels), '')) : () => undefined;
    const copies: FleetCopy[] = [];
    for (const listing of done) {
      const groups = listing.groups ?? [];
      for (let at = 0; at < groups.length; at += SLICE) {
        for (const copy of copiesOf({ ...listing, groups: groups.slice(at, at + SLICE) }, ownerOf)) copies.push(copy);
        await yieldToLoop();
      }
    }
    const sorted = sortCopies(copies);
    await yieldToLoop();
    const shareList = ring.shares();
    const shares = new Map(ring.nodes.map((node, i) => [node.id, shareList[i] ?? 0]));
    return { nodes: summarise(done, sorted, (node) => shares.get(node.id) ?? 0), copies: sorted };
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
      if (entry === undefined || at - entry.listedAt >= cacheMs) {
        entry = { listedAt: at, listing: list(node, role, at) };
        cache.set(key, entry);
      }
      return entry.listing;
    });
    for (const key of cache.keys()) if (!keys.has(key)) cache.delete(key);
    const same = memo !== undefined && memo.ring === ring && memo.inputs.length === inputs.length && memo.inputs.every((p, i) => p === inputs[i]);
    if (!same || memo === undefined) memo = { ring, inputs, view: build(ring, inputs) };
    return memo.view;
  };

  return Object.freeze({ read, nodes });
}
