import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Registry } from 'prom-client';

import { type Group, groupIdentity, groupKeyOf } from '../../lib/core/group';
import { type Node, parseNodeUrl } from '../../lib/core/node';
import { createLogger } from '../../lib/logger';
import type { NodeClient } from '../../lib/nodes/client';
import { Placement } from '../../lib/placement';
import { type ReconcileOptions, createReconcileMetrics, createReconciler } from '../../lib/reconcile';

/**
 * The pass's I/O shell against nodes held in memory: what it sends, in what order, how many at once, and whether it
 * lets the event loop run. (What a pass decides for each copy is the e2e suite's and the decision table's concern.)
 */

function node(url: string): Node {
  const parsed = parseNodeUrl(url);
  assert.ok(parsed.ok);
  return parsed.node;
}

const A = node('http://127.0.0.1:9001');
const B = node('http://127.0.0.1:9002');
const C = node('http://127.0.0.1:9003');

type Store = Map<string, Map<string, Group>>;

/** fakeClient serves listings from `store` and applies puts and deletes to it, after a turn of the event loop. */
function fakeClient(store: Store, hooks: { failPut?: (labels: Readonly<Record<string, string>>) => boolean; dropPuts?: boolean } = {}) {
  let inFlight = 0;
  const seen = { maxInFlight: 0, puts: 0, deletes: 0, listings: 0 };
  const io = async <T>(work: () => T): Promise<T> => {
    inFlight++;
    seen.maxInFlight = Math.max(seen.maxInFlight, inFlight);
    await new Promise((resolve) => setImmediate(resolve));
    inFlight--;
    return work();
  };
  const groups = (n: Node): Map<string, Group> => store.get(n.id) ?? store.set(n.id, new Map()).get(n.id) as Map<string, Group>;
  const client: NodeClient = {
    listGroups: (n) => io(() => [...groups(n).values()]),
    listGroupsWithText: (n) => io(() => [...groups(n).values()].map((group) => ({ group, text: JSON.stringify(group) }))),
    eachGroup: (n, visit) =>
      io(() => {
        seen.listings++;
        for (const group of groups(n).values()) visit(group, '');
      }),
    deleteGroup: (n, labels) =>
      io(() => {
        seen.deletes++;
        groups(n).delete(groupIdentity(labels));
      }),
    putGroup: (n, labels) =>
      io(() => {
        seen.puts++;
        if (hooks.failPut?.(labels) === true) throw new Error(`pushing to ${n.id}: HTTP 400 nope`);
        if (hooks.dropPuts !== true) groups(n).set(groupIdentity(labels), { labels, lastPushSuccessful: true, pushTime: Date.now() / 1000, families: {} });
      }),
    request: () => Promise.reject(new Error('not used')),
  };
  return { client, seen };
}

function group(instance: string, pushTime: number): Group {
  return {
    labels: { job: 'j', instance },
    lastPushSuccessful: true,
    pushTime,
    families: { m: { type: 'GAUGE', metrics: [{ labels: { job: 'j', instance }, value: '1' }] } },
  };
}

function setup(members: readonly Node[], options: Partial<ReconcileOptions>, store: Store, hooks: Parameters<typeof fakeClient>[1] = {}) {
  const placement = new Placement({ vnodes: 50, hashKey: 'grouping-key' });
  placement.update(members);
  const { client, seen } = fakeClient(store, hooks);
  const reconciler = createReconciler(
    placement,
    { migrate: false, drain: [], dryRun: false, ttlMs: undefined, ...options },
    createReconcileMetrics(new Registry()),
    createLogger('silent'),
    client,
  );
  const ownerOf = (g: Group): string => placement.ring.lookup(placement.hash(groupKeyOf(g.labels), ''))?.id ?? '';
  return { reconciler, seen, ownerOf };
}

/** fill puts `count` groups on `on`, and returns them. */
function fill(store: Store, on: Node, count: number, pushTime = 1000): Group[] {
  const groups = store.get(on.id) ?? new Map<string, Group>();
  store.set(on.id, groups);
  const made = Array.from({ length: count }, (_, i) => group(`${on.id}-${i}`, pushTime));
  for (const g of made) groups.set(groupIdentity(g.labels), g);
  return made;
}

describe('a reconciliation pass', () => {
  it('drains 2,000 groups with at most 16 requests in flight, listing each owner once to check them', async () => {
    const store: Store = new Map();
    fill(store, C, 2000);
    const { reconciler, seen } = setup([A, B], { drain: [C] }, store);
    const report = await reconciler.pass();
    assert.equal(report.migrated, 2000);
    assert.equal(report.errors, 0);
    assert.deepEqual(report.drainedEmpty, [C.id]);
    assert.equal(store.get(C.id)?.size, 0);
    assert.equal((store.get(A.id)?.size ?? 0) + (store.get(B.id)?.size ?? 0), 2000);
    assert.equal(seen.maxInFlight, 16);
    assert.equal(seen.puts, 2000);
    assert.equal(seen.deletes, 2000);
    // Three listings to read the nodes, then one per owner to check the copies: not one per group.
    assert.equal(seen.listings, 3 + 2);
  });

  it('keeps a copy whose migration did not arrive, and reports it', async () => {
    const store: Store = new Map();
    fill(store, C, 50);
    const { reconciler } = setup([A, B], { drain: [C] }, store, { dropPuts: true });
    const report = await reconciler.pass();
    assert.equal(report.migrated, 0);
    assert.equal(report.errors, 50);
    assert.equal(store.get(C.id)?.size, 50);
    assert.deepEqual(report.drainedEmpty, []);
  });

  it('deletes a second misplaced copy only once the first arrived on the owner', async () => {
    const store: Store = new Map();
    const { reconciler, ownerOf } = setup([A], { migrate: true, drain: [B, C] }, store);
    // The same two groups on B and C, owned by A (the only member).
    const twins = [group('x', 1000), group('y', 1000)];
    for (const n of [B, C]) store.set(n.id, new Map(twins.map((g) => [groupIdentity(g.labels), g])));
    assert.ok(twins.every((g) => ownerOf(g) === A.id));
    const report = await reconciler.pass();
    assert.deepEqual({ migrated: report.migrated, deleted: report.deleted, errors: report.errors }, { migrated: 2, deleted: 2, errors: 0 });
    assert.equal(store.get(A.id)?.size, 2);
    assert.equal(store.get(B.id)?.size, 0);
    assert.equal(store.get(C.id)?.size, 0);
  });

  it('keeps both misplaced copies when the copy to the owner fails', async () => {
    const store: Store = new Map();
    const { reconciler } = setup([A], { migrate: true, drain: [B, C] }, store, { failPut: (labels) => labels['instance'] === 'x' });
    const twins = [group('x', 1000), group('y', 1000)];
    for (const n of [B, C]) store.set(n.id, new Map(twins.map((g) => [groupIdentity(g.labels), g])));
    const report = await reconciler.pass();
    assert.deepEqual({ migrated: report.migrated, deleted: report.deleted, errors: report.errors }, { migrated: 1, deleted: 1, errors: 1 });
    assert.deepEqual([...(store.get(B.id)?.keys() ?? []), ...(store.get(C.id)?.keys() ?? [])], [groupIdentity({ job: 'j', instance: 'x' }), groupIdentity({ job: 'j', instance: 'x' })]);
    assert.deepEqual(report.drainedEmpty, []);
  });

  it('lets timers run while it decides over 30,000 groups', async () => {
    const store: Store = new Map();
    for (const n of [A, B, C]) fill(store, n, 10_000);
    const { reconciler } = setup([A, B, C], {}, store);
    let ticks = 0;
    // The fake listings hand over all groups in one turn: only the pass's own yielding lets the timer in afterwards.
    const timer = setInterval(() => ticks++, 1);
    const report = await reconciler.pass();
    clearInterval(timer);
    assert.equal(report.groups, 30_000);
    // The listings alone give the timer a handful of turns; deciding in one block would add none.
    assert.ok(ticks >= 10, `the timer ran ${ticks} times during the pass`);
  });
});
