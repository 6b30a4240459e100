/**
 * The reconciler's decisions, and nothing else: the facts about every copy of one group in, one action per copy out.
 * Pure (no I/O, no clock: the time comes in as a fact), so the code that deletes users' data is a table the unit
 * specs cover combination by combination; lib/reconcile.ts lists, pushes and deletes around it.
 *
 * The rules, in order, for each copy:
 * 1. Its last push is older than the group's tombstone (a DELETE went through a director after it): delete it,
 *    wherever it is. A deleted group never comes back from an old copy.
 * 2. Its last push is older than --group.ttl: expire it, wherever it is.
 * 3. Of the live copies left, the newest wins (ties: the owner's copy, then the lowest node id, so every replica
 *    picks the same one). Every other live copy is deleted, except the owner's own older copy, which the newest is
 *    merged into.
 * 4. The newest copy stays where it is when it is on its owner; otherwise it moves to its owner when the owner is
 *    known (listed this pass), the tombstones could be read, and one of these holds: its node is being drained, the
 *    owner holds an older live copy (two copies must not both live: the newest data wins), or --reconcile.migrate.
 */

/** ActionKind is what happens to one copy. */
export type ActionKind = 'keep' | 'delete' | 'migrate' | 'expire' | 'tombstoned';

/** KeepReason says why a copy stays where it is. */
export type KeepReason =
  | 'on-owner'
  | 'receives-newer'
  | 'no-owner'
  | 'owner-unlisted'
  | 'tombstones-unknown'
  | 'not-migrating';

/** Action is the decision for one copy. `execute` is false in a dry run: the action is reported, not performed. */
export type Action =
  | Readonly<{ node: string; kind: 'keep'; reason: KeepReason; execute: false }>
  | Readonly<{ node: string; kind: 'delete' | 'expire' | 'tombstoned'; execute: boolean }>
  /** Copy the group onto `to`, merging into the owner's older copy (`merge`) or as the only copy, then delete it here. */
  | Readonly<{ node: string; kind: 'migrate'; to: string; merge: boolean; execute: boolean }>;

/**
 * CopyCase is everything that decides one copy's fate, reduced to the facets the rules read. decideGroup derives it
 * from GroupFacts; the unit specs enumerate every combination of it.
 */
export type CopyCase = Readonly<{
  /** none: no tombstone; before: the group was deleted before this copy's last push; after: deleted after it. */
  tombstone: 'none' | 'before' | 'after' | 'unknown';
  /** Its last push is older than the TTL. */
  expired: boolean;
  /** Where the copy is: on the group's owner, on another node, or on a node being drained. */
  place: 'owner' | 'elsewhere' | 'draining';
  /** newest: the newest live copy of the group (one per group); older: another live copy. */
  rank: 'newest' | 'older';
  /** The owner on the current ring: listed this pass, not listable, or none (an empty ring). */
  owner: 'listed' | 'unlisted' | 'none';
  /** The owner holds a live copy older than this one (read only for a newest copy elsewhere). */
  ownerHoldsOlder: boolean;
  migrate: boolean;
}>;

/** Decision is the kind of action a CopyCase leads to, before it is bound to nodes. */
export type Decision =
  | Readonly<{ kind: 'keep'; reason: KeepReason }>
  | Readonly<{ kind: 'delete' | 'expire' | 'tombstoned' }>
  | Readonly<{ kind: 'migrate'; merge: boolean }>;

/** decideCopy applies the rules to one copy. Total: every combination has an answer, impossible ones included. */
export function decideCopy(c: CopyCase): Decision {
  if (c.tombstone === 'after') return { kind: 'tombstoned' };
  if (c.expired) return { kind: 'expire' };
  if (c.rank === 'older') {
    // The owner's own older copy stays to receive the newest one; any other older copy is superseded.
    return c.place === 'owner' ? { kind: 'keep', reason: 'receives-newer' } : { kind: 'delete' };
  }
  if (c.place === 'owner') return { kind: 'keep', reason: 'on-owner' };
  if (c.owner === 'none') return { kind: 'keep', reason: 'no-owner' };
  // Nothing is known of the owner's copy: moving the group could overwrite newer data there.
  if (c.owner === 'unlisted') return { kind: 'keep', reason: 'owner-unlisted' };
  // A DELETE this director cannot see may have happened: moving the copy could bring a deleted group back.
  if (c.tombstone === 'unknown') return { kind: 'keep', reason: 'tombstones-unknown' };
  if (c.place === 'draining' || c.ownerHoldsOlder || c.migrate) return { kind: 'migrate', merge: c.ownerHoldsOlder };
  return { kind: 'keep', reason: 'not-migrating' };
}

/** CopyFacts is one copy of a group as a pass saw it: the node holding it and its last push (seconds; 0 unknown). */
export type CopyFacts = Readonly<{ node: string; pushTime: number }>;

/** GroupFacts is everything a pass knows about one group. Times are in seconds since the epoch. */
export type GroupFacts = Readonly<{
  copies: readonly CopyFacts[];
  /** The owner's node id on the current ring; undefined when the ring is empty. */
  owner: string | undefined;
  /** The owner's groups were listed this pass (so its copy, or its lack of one, is known). */
  ownerListed: boolean;
  /** Nodes being drained. */
  draining: ReadonlySet<string>;
  /** When the group was last deleted through a director, if it was (and the tombstone has not expired). */
  tombstone: number | undefined;
  /** False when the tombstones could not be read this pass. */
  tombstonesKnown: boolean;
  now: number;
  /** --group.ttl in seconds; undefined: off. */
  ttl: number | undefined;
  migrate: boolean;
  dryRun: boolean;
}>;

/** decideGroup returns one action per copy, in the order of `facts.copies`. */
export function decideGroup(facts: GroupFacts): Action[] {
  const tombstoneOf = (copy: CopyFacts): CopyCase['tombstone'] => {
    if (!facts.tombstonesKnown) return 'unknown';
    if (facts.tombstone === undefined) return 'none';
    return copy.pushTime < facts.tombstone ? 'after' : 'before';
  };
  const isExpired = (copy: CopyFacts): boolean => facts.ttl !== undefined && copy.pushTime > 0 && facts.now - copy.pushTime > facts.ttl;
  const live = facts.copies.filter((copy) => tombstoneOf(copy) !== 'after' && !isExpired(copy));
  const newest = live.reduce<CopyFacts | undefined>((best, copy) => (best === undefined || newer(copy, best, facts.owner) ? copy : best), undefined);
  const ownerCopy = live.find((copy) => copy.node === facts.owner);

  return facts.copies.map((copy): Action => {
    const decision = decideCopy({
      tombstone: tombstoneOf(copy),
      expired: isExpired(copy),
      place: copy.node === facts.owner ? 'owner' : facts.draining.has(copy.node) ? 'draining' : 'elsewhere',
      rank: copy === newest ? 'newest' : 'older',
      owner: facts.owner === undefined ? 'none' : facts.ownerListed ? 'listed' : 'unlisted',
      ownerHoldsOlder: ownerCopy !== undefined && ownerCopy !== copy,
      migrate: facts.migrate,
    });
    const execute = !facts.dryRun;
    switch (decision.kind) {
      case 'keep':
        return { node: copy.node, kind: 'keep', reason: decision.reason, execute: false };
      case 'migrate':
        return { node: copy.node, kind: 'migrate', to: facts.owner as string, merge: decision.merge, execute };
      default:
        return { node: copy.node, kind: decision.kind, execute };
    }
  });
}

/** newer tells whether copy `a` beats copy `b`: a later push, then the owner's copy, then the lower node id. */
function newer(a: CopyFacts, b: CopyFacts, owner: string | undefined): boolean {
  if (a.pushTime !== b.pushTime) return a.pushTime > b.pushTime;
  if ((a.node === owner) !== (b.node === owner)) return a.node === owner;
  return a.node < b.node;
}
