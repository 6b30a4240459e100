/**
 * The fleet as readers see it: every copy of every group on the nodes the director knows (ring members and nodes
 * being drained), where each copy sits against its owner, and the newest copy of each group. Pure: the listings, the
 * owner function and the clock come in as values; lib/fleet.ts does the I/O and the caching.
 */
import type { Group } from './group';
import { groupIdentity } from './group';
import type { Node } from './node';

/**
 * FleetGroup is what the fleet view keeps of one listed group: its grouping key, whether its last push succeeded,
 * its last push time in seconds (0 when unknown), and `json`, the UTF-8 text of its element in the node's
 * `/api/v1/metrics` answer, which the director's own `/api/v1/metrics` re-emits as it is. Its metric families are not
 * kept parsed: nothing but that answer reads them, and parsed they would cost several times the text's memory and
 * garbage-collection time. Immutable; shared by every view and reader.
 */
export type FleetGroup = Readonly<{
  labels: Readonly<Record<string, string>>;
  /** groupIdentity of the labels, made once. */
  identity: string;
  lastPushSuccessful: boolean;
  pushTime: number;
  json: Uint8Array;
}>;

/** fleetGroupOf keeps what the fleet needs of a listed group and the JSON text of its element. */
export function fleetGroupOf(group: Group, text: string): FleetGroup {
  return {
    labels: group.labels,
    identity: groupIdentity(group.labels),
    lastPushSuccessful: group.lastPushSuccessful,
    pushTime: group.pushTime,
    json: Buffer.from(text, 'utf8'),
  };
}

/**
 * NodeRole says why a node is read: it is on the ring, it is leaving it (`--reconcile.drain`), or discovery names it
 * but its health checks took it off the ring (`down`: it may still hold groups, and answer listings).
 */
export type NodeRole = 'member' | 'draining' | 'down';

/** Listing is one node's answer to a listing: its groups, or why it could not be listed. */
export type Listing = Readonly<{
  node: Node;
  role: NodeRole;
  /** When the listing started, in milliseconds since the epoch. */
  listedAt: number;
  groups: readonly FleetGroup[] | undefined;
  /** One line, set exactly when `groups` is undefined. */
  error: string | undefined;
}>;

/** FleetCopy is one copy of one group on one node. */
export type FleetCopy = Readonly<{
  group: FleetGroup;
  node: Node;
  /** The node that owns the group on the current ring; undefined when the ring is empty or owners are not defined. */
  owner: Node | undefined;
  /** True when an owner is known and the copy sits elsewhere. */
  misplaced: boolean;
  /** Equal for two copies exactly when they are copies of the same group (see groupIdentity). */
  identity: string;
  job: string;
}>;

/** NodeSummary is one node's line in the fleet view. */
export type NodeSummary = Readonly<{
  node: Node;
  role: NodeRole;
  /** The node's share of the hash space (0 for a node off the ring). */
  share: number;
  reachable: boolean;
  error: string | undefined;
  listedAt: number;
  groups: number;
  misplaced: number;
}>;

/**
 * FleetView is the whole fleet at one moment: nodes in ring order then draining, every copy sorted by job, group and
 * node, and the newest copy of each group in the same order.
 */
export type FleetView = Readonly<{
  nodes: readonly NodeSummary[];
  copies: readonly FleetCopy[];
  newest: readonly FleetCopy[];
}>;

/** OwnerOf returns the owner of a group's labels (whose groupIdentity is `identity`) on the current ring, or undefined. */
export type OwnerOf = (labels: Readonly<Record<string, string>>, identity: string) => Node | undefined;

/** copiesOf returns the copies one listing holds, each placed against its owner. An unlisted node holds none. */
export function copiesOf(listing: Listing, ownerOf: OwnerOf): FleetCopy[] {
  const copies: FleetCopy[] = [];
  for (const group of listing.groups ?? []) {
    const owner = ownerOf(group.labels, group.identity);
    copies.push({
      group,
      node: listing.node,
      owner,
      misplaced: owner !== undefined && owner.id !== listing.node.id,
      identity: group.identity,
      job: group.labels['job'] ?? '',
    });
  }
  return copies;
}

/** copySortKey orders copies by job, then group, then node, bytewise, so every page of the table is stable. */
export function copySortKey(copy: FleetCopy): string {
  return `${copy.job}\u0000${copy.identity}\u0000${copy.node.id}`;
}

/** sortCopies returns the copies ordered by job, group and node. */
export function sortCopies(copies: readonly FleetCopy[]): FleetCopy[] {
  const keyed = copies.map((copy) => ({ key: copySortKey(copy), copy }));
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return keyed.map((entry) => entry.copy);
}

/** summarise returns each node's line: reachable or not, its groups and misplaced copies. */
export function summarise(listings: readonly Listing[], copies: readonly FleetCopy[], shareOf: (node: Node) => number): NodeSummary[] {
  const misplaced = new Map<string, number>();
  for (const copy of copies) if (copy.misplaced) misplaced.set(copy.node.id, (misplaced.get(copy.node.id) ?? 0) + 1);
  return listings.map((listing) => ({
    node: listing.node,
    role: listing.role,
    share: shareOf(listing.node),
    reachable: listing.groups !== undefined,
    error: listing.error,
    listedAt: listing.listedAt,
    groups: listing.groups?.length ?? 0,
    misplaced: misplaced.get(listing.node.id) ?? 0,
  }));
}

/**
 * newestCopies returns one copy per group: the one with the newest push time; on a tie, the owner's copy, then the
 * first in node order. The order of `copies` is kept.
 */
export function newestCopies(copies: readonly FleetCopy[]): FleetCopy[] {
  const best = new Map<string, FleetCopy>();
  for (const copy of copies) {
    const current = best.get(copy.identity);
    if (current === undefined || isNewerCopy(copy, current)) best.set(copy.identity, copy);
  }
  return copies.filter((copy) => best.get(copy.identity) === copy);
}

/** isNewerCopy tells whether `copy` wins over `than` (another copy of the same group) in newestCopies. */
export function isNewerCopy(copy: FleetCopy, than: FleetCopy): boolean {
  if (copy.group.pushTime !== than.group.pushTime) return copy.group.pushTime > than.group.pushTime;
  return !copy.misplaced && than.misplaced;
}

/** CopyFilter selects copies: every field given must match. */
export type CopyFilter = Readonly<{
  job?: string;
  /** Label name to exact value; `job` may appear here too. */
  labels?: Readonly<Record<string, string>>;
  /** A node id. */
  node?: string;
  misplaced?: boolean;
  /** Only groups whose last push is older than `staleAfterMs` at `nowMs` (or never succeeded). */
  stale?: Readonly<{ nowMs: number; staleAfterMs: number }>;
}>;

/** isStale tells whether a group's last successful push is older than `staleAfterMs` at `nowMs`, or unknown. */
export function isStale(group: Readonly<{ pushTime: number }>, nowMs: number, staleAfterMs: number): boolean {
  return group.pushTime <= 0 || nowMs - group.pushTime * 1000 > staleAfterMs;
}

/** filterCopies returns the copies the filter selects, in order. */
export function filterCopies(copies: readonly FleetCopy[], filter: CopyFilter): FleetCopy[] {
  const labels = Object.entries(filter.labels ?? {});
  const { stale } = filter;
  return copies.filter(
    (copy) =>
      (filter.job === undefined || copy.job === filter.job) &&
      (filter.node === undefined || copy.node.id === filter.node) &&
      (filter.misplaced !== true || copy.misplaced) &&
      (stale === undefined || isStale(copy.group, stale.nowMs, stale.staleAfterMs)) &&
      labels.every(([name, value]) => copy.group.labels[name] === value),
  );
}

/** FleetQuery is a parsed filter and page request. */
export type FleetQuery = Readonly<{
  job: string | undefined;
  labels: Readonly<Record<string, string>>;
  node: string | undefined;
  misplaced: boolean;
  stale: boolean;
  offset: number;
  limit: number;
}>;

/** QueryResult is a parsed query or the 400 to answer. */
export type QueryResult = Readonly<{ ok: true; query: FleetQuery }> | Readonly<{ ok: false; message: string }>;

/** Query values as Express hands them over (repeated parameters become arrays). */
export type RawQuery = Readonly<Record<string, unknown>>;

const MAX_LIMIT = 10_000;

function values(raw: unknown): string[] | undefined {
  if (raw === undefined) return [];
  if (typeof raw === 'string') return [raw];
  if (Array.isArray(raw) && raw.every((item) => typeof item === 'string')) return raw;
  return undefined;
}

/**
 * parseFleetQuery reads `job`, `label` (`name=value`, repeatable), `node`, `misplaced`, `stale`, and either
 * `offset`/`limit` or `page` (1-based, `limit` per page). Empty parameters are ignored, as a GET form sends them.
 */
export function parseFleetQuery(raw: RawQuery, defaultLimit: number): QueryResult {
  const one = (name: string): { ok: true; value: string | undefined } | { ok: false; message: string } => {
    const list = values(raw[name]);
    if (list === undefined || list.length > 1) return { ok: false, message: `query parameter ${JSON.stringify(name)} must be given once` };
    return { ok: true, value: list[0] === '' ? undefined : list[0] };
  };
  const flag = (name: string): boolean | string => {
    const got = one(name);
    if (!got.ok) return got.message;
    if (got.value === undefined || got.value === '0' || got.value === 'false') return false;
    if (got.value === '1' || got.value === 'true' || got.value === 'on') return true;
    return `query parameter ${JSON.stringify(name)} must be true or false; got ${JSON.stringify(got.value)}`;
  };
  const count = (name: string, min: number, max: number): number | undefined | string => {
    const got = one(name);
    if (!got.ok) return got.message;
    if (got.value === undefined) return undefined;
    const n = Number(got.value);
    if (!/^\d{1,9}$/.test(got.value) || n < min || n > max) {
      return `query parameter ${JSON.stringify(name)} must be an integer from ${min} to ${max}; got ${JSON.stringify(got.value)}`;
    }
    return n;
  };

  const job = one('job');
  if (!job.ok) return job;
  const node = one('node');
  if (!node.ok) return node;
  const labelList = values(raw['label']);
  if (labelList === undefined) return { ok: false, message: 'query parameter "label" must be name=value' };
  const labels: Record<string, string> = {};
  for (const text of labelList) {
    if (text === '') continue;
    const at = text.indexOf('=');
    if (at <= 0) return { ok: false, message: `label filter must be name=value; got ${JSON.stringify(text)}` };
    // Defined, not assigned: `labels.__proto__ = "x"` would be dropped, and a dropped filter lists every group.
    Object.defineProperty(labels, text.slice(0, at), { value: text.slice(at + 1), enumerable: true, writable: true, configurable: true });
  }
  const misplaced = flag('misplaced');
  if (typeof misplaced === 'string') return { ok: false, message: misplaced };
  const stale = flag('stale');
  if (typeof stale === 'string') return { ok: false, message: stale };
  const limit = count('limit', 1, MAX_LIMIT);
  if (typeof limit === 'string') return { ok: false, message: limit };
  const offset = count('offset', 0, 1e9);
  if (typeof offset === 'string') return { ok: false, message: offset };
  const page = count('page', 1, 1e9);
  if (typeof page === 'string') return { ok: false, message: page };
  if (offset !== undefined && page !== undefined) return { ok: false, message: 'give either "offset" or "page", not both' };
  const perPage = limit ?? defaultLimit;
  return {
    ok: true,
    query: {
      job: job.value,
      labels,
      node: node.value,
      misplaced,
      stale,
      limit: perPage,
      offset: offset ?? ((page ?? 1) - 1) * perPage,
    },
  };
}
