import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { type Action, type CopyCase, type Decision, type GroupFacts, decideCopy, decideGroup } from '../../../lib/reconcile/decide';

/**
 * The decision table. Each row is a pattern over CopyCase (a missing facet matches anything) and the decision it
 * leads to; rows are read top to bottom and the first match wins, exactly as a reader reads the rules. The spec
 * enumerates every combination of the facets, checks that some row matches it, and that decideCopy agrees with the
 * first row that does; and that every row is the first match of at least one combination (no dead rows).
 */
type Row = Readonly<{ when: Partial<CopyCase>; then: Decision; why: string }>;
const TABLE: readonly Row[] = [
  { when: { tombstone: 'after' }, then: { kind: 'tombstoned' }, why: 'a copy older than its tombstone is deleted wherever it is' },
  { when: { expired: true }, then: { kind: 'expire' }, why: 'a copy older than the TTL expires wherever it is' },
  { when: { rank: 'older', place: 'owner' }, then: { kind: 'keep', reason: 'receives-newer' }, why: "the owner's older copy receives the newest" },
  { when: { rank: 'older' }, then: { kind: 'delete' }, why: 'any other older copy is superseded, migrate or not, owner listed or not' },
  { when: { place: 'owner' }, then: { kind: 'keep', reason: 'on-owner' }, why: 'the newest copy on its owner stays' },
  { when: { owner: 'none' }, then: { kind: 'keep', reason: 'no-owner' }, why: 'with an empty ring nothing moves' },
  { when: { owner: 'unlisted' }, then: { kind: 'keep', reason: 'owner-unlisted' }, why: 'an owner that could not be listed receives nothing' },
  { when: { tombstone: 'unknown' }, then: { kind: 'keep', reason: 'tombstones-unknown' }, why: 'unreadable tombstones: moving could resurrect' },
  { when: { place: 'draining', ownerHoldsOlder: true }, then: { kind: 'migrate', merge: true }, why: 'a drained copy merges into an older one' },
  { when: { place: 'draining' }, then: { kind: 'migrate', merge: false }, why: 'a drained node gives up every group' },
  { when: { ownerHoldsOlder: true }, then: { kind: 'migrate', merge: true }, why: 'newest wins even without --reconcile.migrate' },
  { when: { migrate: true }, then: { kind: 'migrate', merge: false }, why: '--reconcile.migrate moves a lone misplaced copy' },
  { when: {}, then: { kind: 'keep', reason: 'not-migrating' }, why: 'without --reconcile.migrate a lone misplaced copy stays' },
];

const FACETS: { readonly [K in keyof CopyCase]: readonly CopyCase[K][] } = {
  tombstone: ['none', 'before', 'after', 'unknown'],
  expired: [false, true],
  place: ['owner', 'elsewhere', 'draining'],
  rank: ['newest', 'older'],
  owner: ['listed', 'unlisted', 'none'],
  ownerHoldsOlder: [false, true],
  migrate: [false, true],
};

function* combinations(): Generator<CopyCase> {
  const names = Object.keys(FACETS) as (keyof CopyCase)[];
  const walk = function* (i: number, partial: Record<string, unknown>): Generator<CopyCase> {
    if (i === names.length) {
      yield { ...partial } as CopyCase;
      return;
    }
    const name = names[i] as keyof CopyCase;
    for (const value of FACETS[name]) yield* walk(i + 1, { ...partial, [name]: value });
  };
  yield* walk(0, {});
}

const matches = (row: Row, c: CopyCase): boolean =>
  Object.entries(row.when).every(([name, value]) => c[name as keyof CopyCase] === value);

describe('decideCopy, as a table over every combination of facts', () => {
  const all = [...combinations()];
  it(`covers all ${4 * 2 * 3 * 2 * 3 * 2 * 2} combinations`, () => {
    assert.equal(all.length, 4 * 2 * 3 * 2 * 3 * 2 * 2);
  });

  for (const [i, row] of TABLE.entries()) {
    it(`row ${i + 1}: ${row.why}`, () => {
      const firstMatches = all.filter((c) => TABLE.findIndex((r) => matches(r, c)) === i);
      assert.ok(firstMatches.length > 0, 'a dead row: every combination it matches is taken by an earlier row');
      for (const c of firstMatches) assert.deepEqual(decideCopy(c), row.then, JSON.stringify(c));
    });
  }

  it('never migrates or keeps a copy older than its tombstone, whatever else holds', () => {
    for (const c of all.filter((c) => c.tombstone === 'after')) assert.equal(decideCopy(c).kind, 'tombstoned');
  });

  it('migrates only to a listed owner, with readable tombstones, the newest copy', () => {
    for (const c of all.filter((c) => decideCopy(c).kind === 'migrate')) {
      assert.deepEqual([c.owner, c.rank, c.expired, c.place !== 'owner'], ['listed', 'newest', false, true], JSON.stringify(c));
      assert.ok(c.tombstone === 'none' || c.tombstone === 'before', JSON.stringify(c));
    }
  });
});

const facts = (overrides: Partial<GroupFacts>): GroupFacts => ({
  copies: [],
  owner: 'c',
  ownerListed: true,
  draining: new Set(),
  tombstone: undefined,
  tombstonesKnown: true,
  now: 10_000,
  ttl: undefined,
  migrate: false,
  dryRun: false,
  ...overrides,
});

describe('decideGroup, one action per copy', () => {
  const cases: { name: string; facts: GroupFacts; actions: Action[] }[] = [
    {
      name: 'j4 after the reshard: the only copy sits on the old owner and stays without --reconcile.migrate',
      facts: facts({ copies: [{ node: 'a', pushTime: 100 }] }),
      actions: [{ node: 'a', kind: 'keep', reason: 'not-migrating', execute: false }],
    },
    {
      name: 'j4 after the reshard, with --reconcile.migrate: it moves to its owner',
      facts: facts({ copies: [{ node: 'a', pushTime: 100 }], migrate: true }),
      actions: [{ node: 'a', kind: 'migrate', to: 'c', merge: false, execute: true }],
    },
    {
      name: 'j4 deleted through a director while a was down: the tombstone deletes it, migrate or not',
      facts: facts({ copies: [{ node: 'a', pushTime: 100 }], tombstone: 200, migrate: true }),
      actions: [{ node: 'a', kind: 'tombstoned', execute: true }],
    },
    {
      name: 'pushed again after the DELETE: the new copy lives, the old one goes',
      facts: facts({ copies: [{ node: 'a', pushTime: 100 }, { node: 'c', pushTime: 300 }], tombstone: 200 }),
      actions: [
        { node: 'a', kind: 'tombstoned', execute: true },
        { node: 'c', kind: 'keep', reason: 'on-owner', execute: false },
      ],
    },
    {
      name: 'hand-off: the copy elsewhere is newer than the owner\'s, and is merged into it without --reconcile.migrate',
      facts: facts({ copies: [{ node: 'c', pushTime: 100 }, { node: 'b', pushTime: 200 }] }),
      actions: [
        { node: 'c', kind: 'keep', reason: 'receives-newer', execute: false },
        { node: 'b', kind: 'migrate', to: 'c', merge: true, execute: true },
      ],
    },
    {
      name: 'the owner holds the newest copy: every other copy is deleted',
      facts: facts({ copies: [{ node: 'a', pushTime: 100 }, { node: 'c', pushTime: 300 }, { node: 'b', pushTime: 200 }] }),
      actions: [
        { node: 'a', kind: 'delete', execute: true },
        { node: 'c', kind: 'keep', reason: 'on-owner', execute: false },
        { node: 'b', kind: 'delete', execute: true },
      ],
    },
    {
      name: 'equal push times: the owner\'s copy wins; between two others, the lower node id',
      facts: facts({ copies: [{ node: 'b', pushTime: 100 }, { node: 'c', pushTime: 100 }, { node: 'a', pushTime: 50 }] }),
      actions: [
        { node: 'b', kind: 'delete', execute: true },
        { node: 'c', kind: 'keep', reason: 'on-owner', execute: false },
        { node: 'a', kind: 'delete', execute: true },
      ],
    },
    {
      name: 'two copies elsewhere with equal push times: the lower node id stays, the other goes',
      facts: facts({ copies: [{ node: 'b', pushTime: 100 }, { node: 'a', pushTime: 100 }] }),
      actions: [
        { node: 'b', kind: 'delete', execute: true },
        { node: 'a', kind: 'keep', reason: 'not-migrating', execute: false },
      ],
    },
    {
      name: 'the owner\'s copy is tombstoned, a newer one elsewhere: the dead one goes, the live one moves as the only copy',
      facts: facts({ copies: [{ node: 'c', pushTime: 100 }, { node: 'b', pushTime: 300 }], tombstone: 200 }),
      actions: [
        { node: 'c', kind: 'tombstoned', execute: true },
        { node: 'b', kind: 'keep', reason: 'not-migrating', execute: false },
      ],
    },
    {
      name: 'the owner could not be listed: older copies still go, the newest stays put',
      facts: facts({ copies: [{ node: 'a', pushTime: 100 }, { node: 'b', pushTime: 200 }], ownerListed: false, migrate: true }),
      actions: [
        { node: 'a', kind: 'delete', execute: true },
        { node: 'b', kind: 'keep', reason: 'owner-unlisted', execute: false },
      ],
    },
    {
      name: 'tombstones unreadable: nothing moves, nothing is tombstoned',
      facts: facts({ copies: [{ node: 'a', pushTime: 100 }], tombstone: 200, tombstonesKnown: false, migrate: true }),
      actions: [{ node: 'a', kind: 'keep', reason: 'tombstones-unknown', execute: false }],
    },
    {
      name: 'a drained node gives its copy to the owner without --reconcile.migrate',
      facts: facts({ copies: [{ node: 'd', pushTime: 100 }], draining: new Set(['d']) }),
      actions: [{ node: 'd', kind: 'migrate', to: 'c', merge: false, execute: true }],
    },
    {
      name: 'TTL: old copies expire wherever they are; the fresh one is the newest',
      facts: facts({ copies: [{ node: 'c', pushTime: 1000 }, { node: 'a', pushTime: 9000 }], ttl: 3600 }),
      actions: [
        { node: 'c', kind: 'expire', execute: true },
        { node: 'a', kind: 'keep', reason: 'not-migrating', execute: false },
      ],
    },
    {
      name: 'TTL: an unknown push time (0) never expires',
      facts: facts({ copies: [{ node: 'c', pushTime: 0 }], ttl: 3600 }),
      actions: [{ node: 'c', kind: 'keep', reason: 'on-owner', execute: false }],
    },
    {
      name: 'an empty ring: nothing moves, tombstones still apply',
      facts: facts({ copies: [{ node: 'a', pushTime: 100 }, { node: 'b', pushTime: 300 }], owner: undefined, tombstone: 200, migrate: true }),
      actions: [
        { node: 'a', kind: 'tombstoned', execute: true },
        { node: 'b', kind: 'keep', reason: 'no-owner', execute: false },
      ],
    },
    {
      name: 'a dry run decides the same and executes nothing',
      facts: facts({ copies: [{ node: 'c', pushTime: 100 }, { node: 'b', pushTime: 200 }, { node: 'a', pushTime: 50 }], dryRun: true }),
      actions: [
        { node: 'c', kind: 'keep', reason: 'receives-newer', execute: false },
        { node: 'b', kind: 'migrate', to: 'c', merge: true, execute: false },
        { node: 'a', kind: 'delete', execute: false },
      ],
    },
  ];
  for (const { name, facts: input, actions } of cases) {
    it(name, () => assert.deepEqual(decideGroup(input), actions));
  }
});
