import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import { parseGroupingKey } from '../../lib/core/grouping-key';
import { parseNodeUrl } from '../../lib/core/node';
import { type TestDirector, directorFromFlags } from '../support/director';
import { type Pushgateway, httpRequest, startPushgateway } from '../support/pushgateway';

const GROUPS = 200;
const path = (i: number): string => `/metrics/job/reconcile/instance/host-${i}`;
const body = (value: number): string => `# TYPE reconcile_value gauge\nreconcile_value ${value}\n`;

function node(pgw: Pushgateway) {
  const result = parseNodeUrl(pgw.url);
  assert.ok(result.ok);
  return result.node;
}

function ownerOf(director: TestDirector, i: number): string {
  const parsed = parseGroupingKey(path(i));
  assert.ok(parsed.ok);
  const owner = director.placement.owner(parsed.key, parsed.path);
  assert.ok(owner);
  return owner.url;
}

async function pushToOwner(director: TestDirector, i: number, value: number): Promise<void> {
  const res = await httpRequest(`${ownerOf(director, i)}${path(i)}`, { method: 'PUT', body: body(value) });
  assert.equal(res.status, 200, res.body);
}

/** where maps each group (by instance) to the nodes holding it and the value each holds. */
async function where(pgws: readonly Pushgateway[]): Promise<Map<string, { url: string; value: number }[]>> {
  const out = new Map<string, { url: string; value: number }[]>();
  for (const pgw of pgws) {
    for (const group of await pgw.groups()) {
      const instance = group.labels['instance'] ?? '';
      out.set(instance, [...(out.get(instance) ?? []), { url: pgw.url, value: Number(group.values['reconcile_value']) }]);
    }
  }
  return out;
}

describe('reconciliation with real Pushgateways', () => {
  let pgws: Pushgateway[] = [];
  let director: TestDirector | undefined;
  const start = async (count: number): Promise<Pushgateway[]> => {
    pgws = await Promise.all(Array.from({ length: count }, () => startPushgateway()));
    return pgws;
  };
  afterEach(async () => {
    await director?.close();
    director = undefined;
    await Promise.all(pgws.map((pgw) => pgw.stop()));
  });

  it('grows from two nodes to three: every group ends exactly once, on its owner, with its latest value', async () => {
    const [a, b, c] = await start(3);
    assert.ok(a && b && c);
    director = directorFromFlags(['--node', a.url, '--node', b.url, '--reconcile.interval=0', '--reconcile.migrate']);
    director.discovery.start();
    for (let i = 0; i < GROUPS; i++) await pushToOwner(director, i, i);
    director.placement.update([node(a), node(b), node(c)]);
    // Some jobs push again after the change: their new copy goes to the new owner, the old one lingers.
    for (let i = 0; i < GROUPS; i += 5) await pushToOwner(director, i, i + 1000);
    const before = await where([a, b, c]);
    assert.ok([...before.values()].some((copies) => copies.length === 2), 'the ring change left no stale copy to clean');

    const report = await director.reconciler.pass();
    assert.equal(report.errors, 0);
    assert.ok(report.deleted > 0 && report.migrated > 0, JSON.stringify(report));
    const after = await where([a, b, c]);
    assert.equal(after.size, GROUPS);
    for (let i = 0; i < GROUPS; i++) {
      const copies = after.get(`host-${i}`) ?? [];
      assert.equal(copies.length, 1, `host-${i} on ${copies.length} nodes`);
      assert.equal(copies[0]?.url, ownerOf(director, i));
      assert.equal(copies[0]?.value, i % 5 === 0 ? i + 1000 : i);
    }
    const again = await director.reconciler.pass();
    assert.equal(again.misplaced, 0, 'a second pass found work: the first was not complete');
  });

  it('shrinks from three nodes to two by draining the leaving node, losing no group', async () => {
    const [a, b, c] = await start(3);
    assert.ok(a && b && c);
    const before = directorFromFlags(['--node', a.url, '--node', b.url, '--node', c.url]);
    before.discovery.start();
    for (let i = 0; i < GROUPS; i++) await pushToOwner(before, i, i);
    assert.ok((await c.groups()).length > 0);
    // c leaves the node list (a drain node still on it is refused), and is named to be drained.
    director = directorFromFlags(['--node', a.url, '--node', b.url, '--reconcile.interval=0', `--reconcile.drain=${c.url}`]);
    director.discovery.start();

    const report = await director.reconciler.pass();
    assert.equal(report.errors, 0);
    assert.deepEqual(report.drainedEmpty, [c.id]);
    assert.equal((await c.groups()).length, 0);
    const after = await where([a, b]);
    assert.equal(after.size, GROUPS);
    for (let i = 0; i < GROUPS; i++) {
      const copies = after.get(`host-${i}`) ?? [];
      assert.equal(copies.length, 1);
      assert.equal(copies[0]?.url, ownerOf(director, i));
      assert.equal(copies[0]?.value, i);
    }
    const metrics = await director.metrics.registry.metrics();
    assert.match(metrics, new RegExp(`pgw_director_reconcile_drained_node_empty\\{node="${c.id.replace(/\./g, '\\.')}"\\} 1`));
  });

  it('expires only the groups older than --group.ttl', async () => {
    const [a] = await start(1);
    assert.ok(a);
    director = directorFromFlags(['--node', a.url, '--reconcile.interval=0', '--group.ttl=2s']);
    director.discovery.start();
    for (let i = 0; i < 5; i++) await pushToOwner(director, i, i);
    await new Promise((resolve) => setTimeout(resolve, 2300));
    for (let i = 5; i < 10; i++) await pushToOwner(director, i, i);
    const report = await director.reconciler.pass();
    assert.equal(report.expired, 5);
    const left = [...(await where([a])).keys()].sort();
    assert.deepEqual(left, ['host-5', 'host-6', 'host-7', 'host-8', 'host-9']);
  });

  it('changes nothing in a dry run', async () => {
    const [a, b, c] = await start(3);
    assert.ok(a && b && c);
    director = directorFromFlags(['--node', a.url, '--node', b.url, '--reconcile.interval=0', '--reconcile.migrate', '--reconcile.dry-run']);
    director.discovery.start();
    for (let i = 0; i < 50; i++) await pushToOwner(director, i, i);
    director.placement.update([node(a), node(b), node(c)]);
    for (let i = 0; i < 50; i += 5) await pushToOwner(director, i, i + 1000);
    const before = JSON.stringify([...(await where([a, b, c])).entries()].sort());
    const report = await director.reconciler.pass();
    assert.ok(report.misplaced > 0);
    assert.equal(JSON.stringify([...(await where([a, b, c])).entries()].sort()), before);
  });

  it('skips a node that is down, and deletes nothing on the strength of a failed read', async () => {
    const [a, b, c] = await start(3);
    assert.ok(a && b && c);
    director = directorFromFlags(['--node', a.url, '--node', b.url, '--reconcile.interval=0', '--reconcile.migrate']);
    director.discovery.start();
    for (let i = 0; i < 100; i++) await pushToOwner(director, i, i);
    director.placement.update([node(a), node(b), node(c)]);
    await c.stop();
    const before = JSON.stringify([...(await where([a, b])).entries()].sort());
    const report = await director.reconciler.pass();
    assert.deepEqual(report.skipped, [c.id]);
    assert.ok(report.errors >= 1);
    assert.equal(report.migrated, 0);
    assert.equal(JSON.stringify([...(await where([a, b])).entries()].sort()), before);
  });
});
