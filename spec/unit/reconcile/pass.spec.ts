import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Registry } from 'prom-client';

import { type Family, type Group, groupIdentity, groupKeyOf } from '../../../lib/core/group';
import type { Node } from '../../../lib/core/node';
import type { EachGroupOptions, HealthAnswer, ListedGroup, NodeClient } from '../../../lib/nodes/client';
import { Placement } from '../../../lib/placement';
import { type ReconcileOptions, createReconcileMetrics, createReconciler } from '../../../lib/reconcile';
import type { TombstoneStore } from '../../../lib/tombstones';
import { createMemoryTombstones } from '../../../lib/tombstones/memory';
import { LogSink } from '../../support/director';
import { createLogger } from '../../../lib/logger';

const NODES: Node[] = ['a', 'b', 'c', 'd'].map((name, i) => ({ id: `127.0.0.${i + 1}:9091`, url: `http://127.0.0.${i + 1}:9091` }));
const [A, B, C, D] = NODES as [Node, Node, Node, Node];
const NOW = Date.now() / 1000;

const family = (value: string, at: number): Family => ({ time_stamp: new Date(at * 1000).toISOString(), type: 'GAUGE', help: '', metrics: [{ labels: {}, value }] });

/** A fleet in memory behind the NodeClient interface, with failures on demand (`list:<id>`, `put:<id>`, ...). */
class Fleet implements NodeClient {
  readonly held = new Map<string, Map<string, Group>>(NODES.map((node) => [node.id, new Map()]));
  readonly fail = new Set<string>();
  readonly calls: string[] = [];
  /** When true, pushes answer 200 and store nothing. */
  swallow = false;
  private lists = 0;
  failListAfter: { node: string; after: number } | undefined;

  put(node: Node, labels: Record<string, string>, families: Record<string, Family>, pushTime: number): void {
    (this.held.get(node.id) as Map<string, Group>).set(groupIdentity(labels), { labels, lastPushSuccessful: true, pushTime, families });
  }

  where(labels: Record<string, string>): string[] {
    return NODES.filter((node) => this.held.get(node.id)?.has(groupIdentity(labels))).map((node) => node.id);
  }

  group(node: Node, labels: Record<string, string>): Group | undefined {
    return this.held.get(node.id)?.get(groupIdentity(labels));
  }

  private check(op: string, node: Node): void {
    this.calls.push(`${op}:${node.id}`);
    if (this.fail.has(`${op}:${node.id}`)) throw new Error(`${op} on ${node.id} failed`);
  }

  listGroups = (node: Node): Promise<Group[]> => {
    this.lists++;
    try {
      this.check('list', node);
      if (this.failListAfter?.node === node.id && this.lists > this.failListAfter.after) throw new Error('listing failed later');
      return Promise.resolve([...(this.held.get(node.id) as Map<string, Group>).values()]);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  };

  deleteGroup = (node: Node, labels: Readonly<Record<string, string>>): Promise<void> => {
    try {
      this.check('delete', node);
      this.held.get(node.id)?.delete(groupIdentity(labels));
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  };

  private send(op: 'put' | 'post', node: Node, labels: Readonly<Record<string, string>>, body: string): Promise<void> {
    try {
      this.check(op, node);
      if (this.swallow) return Promise.resolve();
      const families: Record<string, Family> = op === 'post' ? { ...this.group(node, labels)?.families } : {};
      for (const line of body.split('\n')) {
        const match = /^(\w+)(?:\{[^}]*\})? (\S+)$/.exec(line);
        if (match) families[match[1] as string] = family(match[2] as string, Date.now() / 1000);
      }
      this.put(node, { ...labels }, families, Date.now() / 1000);
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  putGroup = (node: Node, labels: Readonly<Record<string, string>>, body: string): Promise<void> => this.send('put', node, labels, body);
  postGroup = (node: Node, labels: Readonly<Record<string, string>>, body: string): Promise<void> => this.send('post', node, labels, body);
  request = (): Promise<Response> => Promise.reject(new Error('not used'));

  checkHealth = (): Promise<HealthAnswer> => Promise.reject(new Error('not used'));

  listGroupsWithText = async (node: Node): Promise<ListedGroup[]> => (await this.listGroups(node)).map((group) => ({ group, text: JSON.stringify(group) }));

  eachGroup = async (node: Node, visit: (group: Group, text: string) => void, _options?: EachGroupOptions): Promise<void> => {
    for (const group of await this.listGroups(node)) visit(group, JSON.stringify(group));
  };
}

/** labelsOwnedBy finds a job name whose group `owner` owns on `placement`'s ring. */
function labelsOwnedBy(placement: Placement, owner: Node, prefix = 'job'): Record<string, string> {
  for (let i = 0; ; i++) {
    const labels = { job: `${prefix}-${i}` };
    if (placement.owner(groupKeyOf(labels), '')?.id === owner.id) return labels;
  }
}

function setUp(options: Partial<ReconcileOptions> & { ring?: Node[]; tombstones?: TombstoneStore } = {}) {
  const placement = new Placement({ vnodes: 50, hashKey: 'grouping-key' });
  placement.update(options.ring ?? [A, B, C]);
  const fleet = new Fleet();
  const sink = new LogSink();
  const reconciler = createReconciler(
    placement,
    { migrate: false, drain: [], dryRun: false, ttlMs: undefined, ...options },
    createReconcileMetrics(new Registry()),
    createLogger('debug', sink),
    fleet,
    options.tombstones,
  );
  const messages = (): string[] => sink.lines.map((line) => String(line['msg']));
  return { placement, fleet, reconciler, sink, messages };
}

describe('a reconciliation pass around the decisions', () => {
  it('merges the newest copy into the owner\'s older one: each family in its newest version, then deletes it where it was', async () => {
    const { placement, fleet, reconciler } = setUp();
    const labels = labelsOwnedBy(placement, C);
    fleet.put(C, labels, { kept_only_on_owner: family('1', NOW - 300), shared: family('1', NOW - 300), newer_on_owner: family('9', NOW - 100) }, NOW - 100);
    fleet.put(A, labels, { shared: family('2', NOW - 50), only_elsewhere: family('3', NOW - 50), newer_on_owner: family('0', NOW - 400) }, NOW - 50);
    const report = await reconciler.pass();
    assert.deepEqual([report.migrated, report.errors, report.misplaced], [1, 0, 1], JSON.stringify(report));
    assert.deepEqual(fleet.where(labels), [C.id]);
    const merged = fleet.group(C, labels)?.families ?? {};
    const values = Object.fromEntries(Object.entries(merged).map(([name, f]) => [name, f.metrics?.[0]?.value]));
    assert.deepEqual(values, { kept_only_on_owner: '1', shared: '2', newer_on_owner: '9', only_elsewhere: '3' });
    assert.ok(fleet.calls.includes(`post:${C.id}`));
    assert.equal((await reconciler.pass()).misplaced, 0, 'a second pass found work');
  });

  it('moves a lone copy with PUT under --reconcile.migrate, and checks arrivals with one listing per owner', async () => {
    const { placement, fleet, reconciler } = setUp({ migrate: true });
    const groups = ['x', 'y', 'z'].map((prefix) => labelsOwnedBy(placement, C, prefix));
    for (const labels of groups) fleet.put(A, labels, { m: family('1', NOW - 10) }, NOW - 10);
    fleet.calls.length = 0;
    const report = await reconciler.pass();
    assert.equal(report.migrated, groups.length, JSON.stringify(report));
    assert.equal(fleet.calls.filter((call) => call === `list:${C.id}`).length, 2, 'one listing before, one to check arrivals');
  });

  it('keeps the copy where it was when the move fails, when it does not arrive, or when the owner cannot be listed afterwards', async () => {
    for (const failure of ['put', 'swallow', 'list-after'] as const) {
      const { placement, fleet, reconciler, messages } = setUp({ migrate: true });
      const labels = labelsOwnedBy(placement, C);
      fleet.put(A, labels, { m: family('1', NOW - 10) }, NOW - 10);
      if (failure === 'put') fleet.fail.add(`put:${C.id}`);
      if (failure === 'swallow') fleet.swallow = true;
      if (failure === 'list-after') fleet.failListAfter = { node: C.id, after: 3 };
      const report = await reconciler.pass();
      assert.deepEqual([report.migrated, report.errors], [0, 1], `${failure}: ${JSON.stringify(report)}`);
      assert.ok(fleet.where(labels).includes(A.id), failure);
      assert.ok(messages().includes('moving the group failed; it stays where it is'), failure);
    }
  });

  it('refuses to move native histograms, which the text format cannot carry', async () => {
    const { placement, fleet, reconciler, sink } = setUp({ migrate: true });
    const labels = labelsOwnedBy(placement, C);
    fleet.put(A, labels, { h: { type: 'HISTOGRAM', metrics: [{ labels: {} }] } }, NOW - 10);
    const report = await reconciler.pass();
    assert.equal(report.errors, 1);
    assert.ok(sink.lines.some((line) => String(line['err']).includes('native histograms')));
  });

  it('deletes from the owner too a group deleted through a director while the pass moved it', async () => {
    const memory = createMemoryTombstones({ ttlSeconds: 3600 });
    let reads = 0;
    const tombstones: TombstoneStore = {
      record: memory.record,
      read: async (now) => {
        reads++;
        return memory.read(now);
      },
    };
    const { placement, fleet, reconciler } = setUp({ migrate: true, tombstones });
    const labels = labelsOwnedBy(placement, C);
    fleet.put(A, labels, { m: family('1', NOW - 10) }, NOW - 10);
    const put = fleet.putGroup;
    fleet.putGroup = async (node, l, body) => {
      await put(node, l, body);
      await memory.record(labels, Date.now() / 1000);
    };
    const report = await reconciler.pass();
    assert.equal(reads, 2);
    assert.deepEqual([report.tombstoned, report.migrated], [1, 0], JSON.stringify(report));
    assert.deepEqual(fleet.where(labels), []);
  });

  it('moves nothing when the tombstones cannot be read, and still deletes superseded copies', async () => {
    const tombstones: TombstoneStore = { record: () => Promise.resolve(), read: () => Promise.reject(new Error('consul down')) };
    const { placement, fleet, reconciler, sink } = setUp({ migrate: true, tombstones });
    const labels = labelsOwnedBy(placement, C);
    fleet.put(A, labels, { m: family('1', NOW - 10) }, NOW - 10);
    fleet.put(B, labels, { m: family('0', NOW - 20) }, NOW - 20);
    const report = await reconciler.pass();
    assert.deepEqual([report.migrated, report.deleted, report.kept], [0, 1, 1], JSON.stringify(report));
    assert.deepEqual(fleet.where(labels), [A.id]);
    assert.ok(sink.lines.some((line) => line['reason'] === 'tombstones-unknown'));
  });

  it('counts a failed delete as an error and leaves the copy', async () => {
    const { placement, fleet, reconciler } = setUp();
    const labels = labelsOwnedBy(placement, C);
    fleet.put(C, labels, { m: family('1', NOW - 10) }, NOW - 10);
    fleet.put(A, labels, { m: family('0', NOW - 20) }, NOW - 20);
    fleet.fail.add(`delete:${A.id}`);
    const report = await reconciler.pass();
    assert.deepEqual([report.deleted, report.errors], [0, 1]);
    assert.deepEqual(fleet.where(labels), [A.id, C.id]);
  });

  it('in a dry run, says what it would do, reports dryRun, and changes nothing', async () => {
    const { placement, fleet, reconciler, messages, sink } = setUp({ migrate: true, dryRun: true, drain: [D], ring: [A, B, C] });
    const moved = labelsOwnedBy(placement, C);
    const stale = labelsOwnedBy(placement, B);
    fleet.put(A, moved, { m: family('1', NOW - 10) }, NOW - 10);
    fleet.put(B, stale, { m: family('1', NOW - 10) }, NOW - 10);
    fleet.put(D, stale, { m: family('0', NOW - 20) }, NOW - 20);
    const before = JSON.stringify([...fleet.held].map(([id, groups]) => [id, [...groups.keys()]]));
    const report = await reconciler.pass();
    assert.equal(report.dryRun, true);
    assert.deepEqual([report.migrated, report.deleted, report.drainedEmpty], [1, 1, []]);
    assert.equal(JSON.stringify([...fleet.held].map(([id, groups]) => [id, [...groups.keys()]])), before);
    assert.ok(messages().includes('would migrate the group to its owner'));
    assert.ok(messages().some((m) => m.startsWith('would delete the copy')));
    assert.ok(messages().includes('reconciliation pass done (dry run: nothing changed)'));
    assert.ok(sink.lines.every((line) => line['component'] !== 'reconcile' || line['dry_run'] === true));
  });

  it('drains a node: every group moves, and it is reported empty; a node to drain still on the ring is warned about', async () => {
    const { placement, fleet, reconciler, messages } = setUp({ drain: [D, C], ring: [A, B, C] });
    const labels = labelsOwnedBy(placement, A);
    fleet.put(D, labels, { m: family('1', NOW - 10) }, NOW - 10);
    const report = await reconciler.pass();
    assert.deepEqual([report.migrated, report.drainedEmpty], [1, [D.id]], JSON.stringify(report));
    assert.ok(messages().includes('a node to drain is still on the ring: take it out of discovery first'));
  });

  it('skips a node it cannot list and expires old groups with their age', async () => {
    const { placement, fleet, reconciler, sink } = setUp({ ttlMs: 60_000 });
    const labels = labelsOwnedBy(placement, A);
    fleet.put(A, labels, { m: family('1', NOW - 600) }, NOW - 600);
    fleet.fail.add(`list:${B.id}`);
    const report = await reconciler.pass();
    assert.deepEqual([report.expired, report.skipped, report.errors], [1, [B.id], 1]);
    assert.ok(sink.lines.some((line) => typeof line['age_s'] === 'number' && line['age_s'] >= 600));
  });
  it('asks one node at a time for its listing, the next once the one before starts answering, and goes on past a failed one', async () => {
    const { placement, fleet, reconciler } = setUp({ migrate: true });
    for (const owner of [A, B]) fleet.put(C, labelsOwnedBy(placement, owner), { m: family('1', NOW - 10) }, NOW - 10);
    fleet.fail.add(`list:${B.id}`);
    // Each listing is held before it answers until the test lets it go: the log says which listings were asked for.
    const asked: string[] = [];
    const answer = new Map<string, () => void>();
    const each = fleet.eachGroup;
    fleet.eachGroup = async (node, visit, options) => {
      asked.push(node.id);
      await new Promise<void>((resolve) => answer.set(node.id, resolve));
      options?.onAnswer?.();
      await each(node, visit);
    };
    const settle = async (): Promise<void> => {
      for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    };
    const passing = reconciler.pass();
    await settle();
    assert.deepEqual(asked, [A.id], 'the second node is asked only when the first answers');
    answer.get(A.id)?.();
    await settle();
    assert.deepEqual(asked, [A.id, B.id]);
    answer.get(B.id)?.();
    await settle();
    assert.deepEqual(asked, [A.id, B.id, C.id], 'a node that failed to answer ends its turn');
    answer.get(C.id)?.();
    // Step 3: the owner that received a group (A; B could not be listed, so it receives nothing) is listed again.
    await settle();
    assert.deepEqual(asked.slice(3), [A.id]);
    answer.get(A.id)?.();
    const report = await passing;
    assert.deepEqual([report.migrated, report.skipped], [1, [B.id]], JSON.stringify(report));
  });
});
