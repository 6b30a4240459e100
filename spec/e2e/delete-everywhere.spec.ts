import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';

import { parseGroupingKey } from '../../lib/core/grouping-key';
import { type Node, parseNodeUrl } from '../../lib/core/node';
import { type TestDirector, directorFromFlags } from '../support/director';
import { type Pushgateway, httpRequest, startPushgateway } from '../support/pushgateway';

const J4 = '/metrics/job/j4';

function nodeOf(pgw: Pushgateway): Node {
  const result = parseNodeUrl(pgw.url);
  assert.ok(result.ok);
  return result.node;
}

function ownerOf(director: TestDirector): string {
  const parsed = parseGroupingKey(J4);
  assert.ok(parsed.ok);
  const owner = director.placement.owner(parsed.key, parsed.path);
  assert.ok(owner);
  return owner.id;
}

/** send makes a push or DELETE through the director, following a 307 as Go and curl -L do. */
async function send(director: TestDirector, address: string, method: string, body?: string): Promise<number> {
  const res = await httpRequest(`http://${address}${J4}`, { method, ...(body === undefined ? {} : { body }) });
  if (res.status !== 307) return res.status;
  const location = res.headers.location;
  assert.ok(location);
  return (await httpRequest(location, { method, ...(body === undefined ? {} : { body }) })).status;
}

const holders = async (pgws: readonly Pushgateway[]): Promise<string[]> => {
  const out: string[] = [];
  for (const pgw of pgws) if ((await pgw.groups()).some((group) => group.labels['job'] === 'j4')) out.push(pgw.id);
  return out;
};

describe('j4: DELETE after a reshard, with real Pushgateways', () => {
  let pgws: Pushgateway[] = [];
  const directors: TestDirector[] = [];
  afterEach(async () => {
    for (const director of directors.splice(0)) await director.close();
    await Promise.all(pgws.map((pgw) => pgw.stop()));
    pgws = [];
  });

  /**
   * Picks, among four Pushgateways, two first members and a third that takes j4 over when it joins: the j4 scenario
   * needs j4 to move to the new node, and which node that is depends on the ports the kernel handed out.
   */
  const scenario = async (flags: string[], persistence?: string) => {
    pgws = await Promise.all([0, 1, 2, 3].map((i) => startPushgateway(persistence === undefined ? {} : { persistenceFile: join(persistence, `pgw-${i}.db`) })));
    const director = directorFromFlags([...flags, '--node', pgws[0]?.url ?? '', '--reconcile.interval=0']);
    directors.push(director);
    // Listening starts the static discovery, which sets the ring: set it afterwards.
    const address = await director.listen();
    for (const [i, a] of pgws.entries()) {
      for (const b of pgws.slice(i + 1)) {
        for (const c of pgws.filter((p) => p !== a && p !== b)) {
          director.placement.update([nodeOf(a), nodeOf(b)]);
          const first = ownerOf(director);
          director.placement.update([nodeOf(a), nodeOf(b), nodeOf(c)]);
          if (ownerOf(director) === c.id) {
            director.placement.update([nodeOf(a), nodeOf(b)]);
            return { director, address: `127.0.0.1:${address.port}`, a, b, c, first: pgws.find((p) => p.id === first) as Pushgateway };
          }
        }
      }
    }
    throw new Error('no choice of nodes moves j4 to the joining node');
  };

  for (const mode of ['redirect', 'proxy'] as const) {
    it(`${mode} mode: the DELETE leaves no copy anywhere, and passes with and without --reconcile.migrate bring nothing back`, async () => {
      const { director, address, a, b, c, first } = await scenario([`--mode=${mode}`, '--reconcile.migrate']);
      assert.equal(await send(director, address, 'PUT', 'j4_value 1\n'), 200);
      assert.deepEqual(await holders(pgws), [first.id]);
      director.placement.update([nodeOf(a), nodeOf(b), nodeOf(c)]);

      assert.equal(await send(director, address, 'DELETE'), 202);
      await director.fanOut.idle();
      assert.deepEqual(await holders(pgws), [], 'a copy survived the DELETE');

      const migrating = await director.reconciler.pass();
      assert.equal(migrating.migrated, 0);
      const plain = directorFromFlags(['--node', a.url, '--node', b.url, '--node', c.url, '--reconcile.interval=0']);
      directors.push(plain);
      plain.discovery.start();
      await plain.reconciler.pass();
      assert.deepEqual(await holders(pgws), []);
    });
  }

  it('the node holding the old copy was down during the DELETE: its tombstone deletes the copy when it returns', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgw-director-j4-'));
    const { director, address, a, b, c, first } = await scenario(['--mode=proxy', '--reconcile.migrate'], dir);
    assert.equal(await send(director, address, 'PUT', 'j4_value 1\n'), 200);
    director.placement.update([nodeOf(a), nodeOf(b), nodeOf(c)]);

    // SIGTERM: the Pushgateway writes its persistence file and exits; it comes back with j4 on the same port.
    const index = pgws.indexOf(first);
    await first.stop();
    assert.equal(await send(director, address, 'DELETE'), 202);
    await director.fanOut.idle();
    const metrics = await director.metrics.registry.metrics();
    assert.ok(metrics.includes(`pgw_director_fanout_deletes_total{node="${first.id}",outcome="failed"} 1`), metrics);
    const back = await startPushgateway({ port: first.port, persistenceFile: join(dir, `pgw-${index}.db`) });
    pgws[index] = back;
    assert.deepEqual(await holders(pgws), [back.id], 'the returning node did not bring its old copy back');

    const report = await director.reconciler.pass();
    assert.equal(report.tombstoned, 1, JSON.stringify(report));
    assert.equal(report.migrated, 0);
    assert.deepEqual(await holders(pgws), []);
    await director.reconciler.pass();
    assert.deepEqual(await holders(pgws), []);

    // The job pushes again: newer than the tombstone, the group lives on its owner.
    assert.equal(await send(director, address, 'PUT', 'j4_value 2\n'), 200);
    await director.reconciler.pass();
    assert.deepEqual(await holders(pgws), [c.id]);
  });

  it('newest copy wins: a copy pushed elsewhere while the owner was away replaces the owner\'s older one, without --reconcile.migrate', async () => {
    const { director, address, a, b, c, first } = await scenario(['--mode=proxy']);
    director.placement.update([nodeOf(a), nodeOf(b), nodeOf(c)]);
    // The owner C gets the first push; then, as after a hand-off, the job's next push lands on the previous owner.
    assert.equal(await send(director, address, 'PUT', 'j4_value 1\nj4_only_first 7\n'), 200);
    const later = await httpRequest(`${first.url}${J4}`, { method: 'POST', body: 'j4_value 2\n' });
    assert.equal(later.status, 200);
    assert.deepEqual((await holders(pgws)).sort(), [c.id, first.id].sort());

    const report = await director.reconciler.pass();
    assert.equal(report.migrated, 1, JSON.stringify(report));
    assert.deepEqual(await holders(pgws), [c.id]);
    const group = (await c.groups()).find((g) => g.labels['job'] === 'j4');
    assert.deepEqual([group?.values['j4_value'], group?.values['j4_only_first']], ['2', '7']);
  });
});
