/**
 * The consistent-hash ring: virtual nodes of every Pushgateway placed by MurmurHash3, built once and never changed.
 * Pure. Placement is dynamic-sharding's, so a director migrating from it sends every group where it went before:
 * vnode `i` of node `id` sits at hash(`${i}${id}`), a key belongs to the first vnode whose hash is strictly greater
 * than the key's, wrapping to the first vnode, and when two vnodes share a hash the greater id wins.
 */
import { type HashFn, murmur3, utf8Bytes } from './hash';
import { type Node, dedupeNodes } from './node';

/** RingOptions configures buildRing. */
export type RingOptions = {
  /** Virtual nodes per node. @default 500 */
  vnodes?: number;
  /** The hash function. @default murmur3 */
  hash?: HashFn;
};

/** DEFAULT_VNODES is dynamic-sharding's replica count, kept so placements match it. */
export const DEFAULT_VNODES = 500;

/** Ring is an immutable ring. It may be shared freely; a membership change builds a new one. */
export type Ring = Readonly<{
  /** The members, sorted by id. */
  nodes: readonly Node[];
  /** Virtual nodes per member. */
  vnodes: number;
  /** Distinct points on the ring (fewer than nodes x vnodes only when hashes collide). */
  points: number;
  /** lookup returns the owner of a key hash, or undefined when the ring is empty. */
  lookup(keyHash: number): Node | undefined;
  /**
   * lookupExcluding returns the owner a key hash would have on this ring without the members whose ids are in
   * `excluded`: the first point clockwise from the key owned by a member not excluded (the successor, when the
   * owner is excluded), exactly as a ring rebuilt without them would answer. Undefined when no member is left.
   * Costs a walk along the ring: meant for the rare failure path, not for every push.
   */
  lookupExcluding(keyHash: number, excluded: ReadonlySet<string>): Node | undefined;
  /** shares returns each member's fraction of the 32-bit hash space, in `nodes` order. */
  shares(): readonly number[];
}>;

/** MAX_NODES is the most members a ring can hold. */
export const MAX_NODES = 2 ** 24;

/**
 * buildRing builds a ring over the given nodes. The order of `nodes` does not matter: they are sorted by id and
 * duplicate ids are dropped first, so every director replica given the same members computes the same owners.
 * Throws only on impossible options (a bug or a start-up misconfiguration).
 */
export function buildRing(nodes: readonly Node[], options: RingOptions = {}): Ring {
  const vnodes = options.vnodes ?? DEFAULT_VNODES;
  const hash = options.hash ?? murmur3;
  if (!Number.isInteger(vnodes) || vnodes < 1) throw new RangeError(`vnodes must be a positive integer, got ${vnodes}`);
  const members = dedupeNodes(nodes);
  if (members.length > MAX_NODES) throw new RangeError(`a ring holds at most ${MAX_NODES} nodes`);

  // Points are generated rank by rank (rank = position in id order) and sorted stably by hash, so within a run of
  // equal hashes the last point is the one with the greatest id: the one that wins.
  const total = members.length * vnodes;
  const pointHashes = new Uint32Array(total);
  const pointRanks = new Uint32Array(total);
  members.forEach((node, rank) => {
    hashVnodes(utf8Bytes(node.id), vnodes, hash, pointHashes.subarray(rank * vnodes, (rank + 1) * vnodes));
    pointRanks.fill(rank, rank * vnodes, (rank + 1) * vnodes);
  });
  const [sortedHashes, sortedRanks] = radixSortByHash(pointHashes, pointRanks);

  // Where vnodes collide only the greatest id keeps the point; the others are remembered (greatest id first) so
  // that lookupExcluding answers as a ring without the winner would.
  const shadowed = new Map<number, number[]>();
  let count = 0;
  for (let i = 0; i < total; i++) {
    if (i + 1 < total && sortedHashes[i + 1] === sortedHashes[i]) {
      const h = sortedHashes[i] as number;
      const ranks = shadowed.get(h) ?? [];
      ranks.unshift(sortedRanks[i] as number);
      shadowed.set(h, ranks);
      continue;
    }
    sortedHashes[count] = sortedHashes[i] as number;
    sortedRanks[count] = sortedRanks[i] as number;
    count++;
  }
  return createRing(members, vnodes, sortedHashes.subarray(0, count), sortedRanks.subarray(0, count), shadowed);
}

/** radixSortByHash sorts (hash, rank) pairs by hash, stably: two 16-bit LSD passes, linear in the point count. */
function radixSortByHash(hashes: Uint32Array, ranks: Uint32Array): [Uint32Array, Uint32Array] {
  let fromHashes: Uint32Array = hashes;
  let fromRanks: Uint32Array = ranks;
  let toHashes: Uint32Array = new Uint32Array(hashes.length);
  let toRanks: Uint32Array = new Uint32Array(ranks.length);
  const counts = new Uint32Array(65536);
  for (const shift of [0, 16]) {
    counts.fill(0);
    for (let i = 0; i < fromHashes.length; i++) {
      const digit = ((fromHashes[i] as number) >>> shift) & 0xffff;
      counts[digit] = (counts[digit] as number) + 1;
    }
    for (let digit = 0, sum = 0; digit < 65536; digit++) {
      const c = counts[digit] as number;
      counts[digit] = sum;
      sum += c;
    }
    for (let i = 0; i < fromHashes.length; i++) {
      const h = fromHashes[i] as number;
      const digit = (h >>> shift) & 0xffff;
      const to = counts[digit] as number;
      counts[digit] = to + 1;
      toHashes[to] = h;
      toRanks[to] = fromRanks[i] as number;
    }
    [fromHashes, toHashes] = [toHashes, fromHashes];
    [fromRanks, toRanks] = [toRanks, fromRanks];
  }
  return [fromHashes, fromRanks];
}

/**
 * hashVnodes writes hash(`${i}${id}`) for i in [0, vnodes) into `out`. One key buffer per digit count, with the id
 * copied in once: the library wants an array of the key's exact length.
 */
function hashVnodes(id: Uint8Array, vnodes: number, hash: HashFn, out: Uint32Array): void {
  let digits = 1;
  let key = new Uint8Array(digits + id.length);
  key.set(id, digits);
  for (let i = 0, nextPower = 10; i < vnodes; i++) {
    if (i === nextPower) {
      digits++;
      nextPower *= 10;
      key = new Uint8Array(digits + id.length);
      key.set(id, digits);
    }
    for (let value = i, d = digits - 1; d >= 0; d--, value = Math.floor(value / 10)) key[d] = 0x30 + (value % 10);
    out[i] = hash(key);
  }
}

// A lookup first narrows the search to the points sharing the key hash's top 16 bits, through a table of where each
// 16-bit prefix starts: one or two cache misses instead of a binary search's dozen on a large ring.
const PREFIX_SHIFT = 16;
const PREFIXES = 2 ** (32 - PREFIX_SHIFT);

function prefixTable(hashes: Uint32Array): Uint32Array {
  const starts = new Uint32Array(PREFIXES + 1);
  let at = 0;
  for (let prefix = 0; prefix <= PREFIXES; prefix++) {
    while (at < hashes.length && (hashes[at] as number) >>> PREFIX_SHIFT < prefix) at++;
    starts[prefix] = at;
  }
  return starts;
}

function createRing(
  nodes: readonly Node[],
  vnodes: number,
  hashes: Uint32Array,
  owners: Uint32Array,
  shadowed: ReadonlyMap<number, readonly number[]> = new Map(),
): Ring {
  const points = hashes.length;
  const starts = prefixTable(hashes);
  /** pointAfter returns the index of the first point strictly greater than the key's hash, wrapping to 0. */
  const pointAfter = (keyHash: number): number => {
    // First point strictly greater than the key's hash; past the end wraps to the first. Every point before
    // starts[prefix] is below the key's hash and every point from starts[prefix + 1] on is above it.
    const prefix = keyHash >>> PREFIX_SHIFT;
    let lo = starts[prefix] as number;
    let hi = starts[prefix + 1] as number;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((hashes[mid] as number) > keyHash) hi = mid;
      else lo = mid + 1;
    }
    return lo === points ? 0 : lo;
  };
  const lookup = (keyHash: number): Node | undefined => {
    if (points === 0) return undefined;
    return nodes[owners[pointAfter(keyHash)] as number];
  };
  const lookupExcluding = (keyHash: number, excluded: ReadonlySet<string>): Node | undefined => {
    if (points === 0) return undefined;
    const start = pointAfter(keyHash);
    for (let step = 0; step < points; step++) {
      const at = (start + step) % points;
      const owner = nodes[owners[at] as number] as Node;
      if (!excluded.has(owner.id)) return owner;
      for (const rank of shadowed.get(hashes[at] as number) ?? []) {
        const other = nodes[rank] as Node;
        if (!excluded.has(other.id)) return other;
      }
    }
    return undefined;
  };
  const shares = (): readonly number[] => {
    const result = new Array<number>(nodes.length).fill(0);
    for (let i = 0; i < points; i++) {
      const previous = i === 0 ? (hashes[points - 1] as number) - 2 ** 32 : (hashes[i - 1] as number);
      const owner = owners[i] as number;
      result[owner] = (result[owner] as number) + ((hashes[i] as number) - previous) / 2 ** 32;
    }
    return result;
  };
  return Object.freeze({ nodes, vnodes, points, lookup, lookupExcluding, shares });
}
