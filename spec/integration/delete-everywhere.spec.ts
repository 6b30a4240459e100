import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import Consul from 'consul';
import request from 'supertest';

import { groupPath } from '../../lib/core/group';
import { parseGroupingKey } from '../../lib/core/grouping-key';
import { parseNodeUrl } from '../../lib/core/node';
import { tombstoneKey } from '../../lib/tombstones/consul';
import { type ConsulDouble, startConsulDouble } from '../support/consul-double';
import { type TestDirector, directorFromFlags } from '../support/director';
import { type FakePushgateway, startFakePushgateway } from '../support/fake-pushgateway';
import { until } from '../support/wait';

const FAST = { burst: 3, refillMs: 100, backoffBaseMs: 50, backoffMaxMs: 200 };
const J4 = { job: 'j4' };

function ownerOf(director: TestDirector, path: string): string {
  const parsed = parseGroupingKey(path);
  assert.ok(parsed.ok);
  const owner = director.placement.owner(parsed.key, parsed.path);
  assert.ok(owner);
  return owner.id;
}

function nodeOf(pgw: FakePushgateway) {
  const parsed = parseNodeUrl(pgw.url);
  assert.ok(parsed.ok);
  return parsed.node;
}

const deletesOf = (pgw: FakePushgateway): string[] => pgw.requests.filter((r) => r.method === 'DELETE').map((r) => r.url);

describe('DELETE removes the group from the whole fleet', () => {
  let pgws: FakePushgateway[] = [];
  const directors: TestDirector[] = [];
  let consul: ConsulDouble | undefined;
  afterEach(async () => {
    for (const director of directors.splice(0)) await director.close();
    await Promise.all(pgws.map((pgw) => pgw.stop().catch(() => undefined)));
    pgws = [];
    await consul?.stop();
    consul = undefined;
  });
  const fleet = async (count: number): Promise<FakePushgateway[]> => {
    pgws = await Promise.all(Array.from({ length: count }, () => startFakePushgateway()));
    return pgws;
  };
  const staticDirector = (flags: string[]): TestDirector => {
    const director = directorFromFlags([...pgws.flatMap((pgw) => ['--node', pgw.url]), '--reconcile.interval=0', ...flags]);
    director.discovery.start();
    directors.push(director);
    return director;
  };

  for (const mode of ['redirect', 'proxy'] as const) {
    it(`${mode} mode: the owner gets the client's DELETE, every other node the director's, on the all-@base64 path`, async () => {
      await fleet(3);
      const director = staticDirector([`--mode=${mode}`]);
      const owner = ownerOf(director, '/metrics/job/j4/instance/x');
      for (const pgw of pgws) pgw.push({ job: 'j4', instance: 'x' }, { m: 1 }, 100);
      const res = await request(director.server).delete('/metrics/job/j4/instance/x');
      assert.equal(res.status, mode === 'redirect' ? 307 : 202);
      await director.fanOut.idle();
      for (const pgw of pgws) {
        if (pgw.id === owner) {
          assert.deepEqual(deletesOf(pgw), mode === 'redirect' ? [] : ['/metrics/job/j4/instance/x']);
        } else {
          assert.deepEqual(deletesOf(pgw), [groupPath({ job: 'j4', instance: 'x' })]);
          assert.equal(pgw.has({ job: 'j4', instance: 'x' }), false);
        }
      }
      const metrics = await director.metrics.registry.metrics();
      const others = pgws.filter((pgw) => pgw.id !== owner);
      for (const pgw of others) assert.ok(metrics.includes(`pgw_director_fanout_deletes_total{node="${pgw.id}",outcome="deleted"} 1`), metrics);
    });
  }

  it('proxy mode: both lanes fan out, and the client gets the owner\'s answer even when another node fails', async () => {
    await fleet(3);
    const director = staticDirector(['--mode=proxy']);
    const owner = ownerOf(director, '/metrics/job/j4');
    const other = pgws.find((pgw) => pgw.id !== owner) as FakePushgateway;
    other.failWith = 503;
    const fast = await request(director.server).delete('/metrics/job/j4');
    // Transfer-Encoding keeps the fast lane out: Node's HTTP server takes this one.
    const slow = await request(director.server).delete('/metrics/job/j4').set('Transfer-Encoding', 'chunked').send('');
    assert.deepEqual([fast.status, slow.status], [202, 202]);
    await director.fanOut.idle();
    const lanes = director.log.lines.filter((line) => line['msg'] === 'push proxied').map((line) => line['lane']);
    assert.deepEqual(lanes, ['fast', 'node']);
    for (const pgw of pgws.filter((p) => p.id !== owner)) assert.equal(deletesOf(pgw).length, 2);
    const metrics = await director.metrics.registry.metrics();
    assert.ok(metrics.includes(`pgw_director_fanout_deletes_total{node="${other.id}",outcome="failed"} 2`), metrics);
    assert.ok(director.log.lines.some((line) => line['msg'] === 'cannot delete the group on this node: its tombstone deletes the copy on the first pass that can reach it'));
  });

  it('deletes on a draining node too, and fans nothing out for a refused path', async () => {
    const [a, b, drained] = await fleet(3);
    assert.ok(a && b && drained);
    const director = directorFromFlags(['--node', a.url, '--node', b.url, '--reconcile.interval=0', `--reconcile.drain=${drained.url}`]);
    director.discovery.start();
    directors.push(director);
    assert.equal((await request(director.server).delete('/metrics/job/j4/odd')).status, 400);
    assert.equal((await request(director.server).delete('/metrics/job/j4')).status, 307);
    await director.fanOut.idle();
    assert.deepEqual(deletesOf(drained), [groupPath(J4)]);
    assert.equal([a, b].flatMap(deletesOf).length, 1);
  });

  it('j4: a DELETE after a reshard leaves no copy, and a pass with --reconcile.migrate does not bring it back', async () => {
    const [a, b, c] = await fleet(3);
    assert.ok(a && b && c);
    const director = staticDirector(['--mode=proxy', '--reconcile.migrate']);
    director.placement.update([nodeOf(a), nodeOf(b)]);
    const first = pgws.find((pgw) => pgw.id === ownerOf(director, '/metrics/job/j4')) as FakePushgateway;
    first.push(J4, { m: 1 }, Date.now() / 1000 - 60);
    director.placement.update([nodeOf(a), nodeOf(b), nodeOf(c)]);
    const res = await request(director.server).delete('/metrics/job/j4');
    assert.equal(res.status, 202);
    await director.fanOut.idle();
    assert.deepEqual(pgws.filter((pgw) => pgw.has(J4)), []);
    const report = await director.reconciler.pass();
    assert.equal(report.migrated, 0);
    assert.deepEqual(pgws.filter((pgw) => pgw.has(J4)), []);
  });

  it('two replicas share tombstones through Consul KV: a copy on a node that was down during the DELETE is deleted, not moved', async () => {
    const [a, b, c] = await fleet(3);
    assert.ok(a && b && c);
    consul = await startConsulDouble();
    consul.tokens = new Set(['secret']);
    for (const pgw of [a, b, c]) consul.add({ id: pgw.id, port: pgw.port });
    const replica = (flags: string[]): TestDirector => {
      const director = directorFromFlags(
        [`--consul.address=${(consul as ConsulDouble).address}`, '--consul.wait=2s', '--reconcile.interval=0', '--reconcile.migrate', ...flags],
        { CONSUL_HTTP_TOKEN: 'secret' },
        { consulTuning: FAST },
      );
      director.discovery.start();
      directors.push(director);
      return director;
    };
    const proxying = replica(['--mode=proxy']);
    const redirecting = replica(['--mode=redirect']);
    await until(() => proxying.placement.ring.nodes.length === 3 && redirecting.placement.ring.nodes.length === 3, 'both replicas see 3 nodes');
    // The old copy sits on a node that does not own j4 (it did before a reshard), and that node is down.
    const owner = ownerOf(proxying, '/metrics/job/j4');
    const holder = pgws.find((pgw) => pgw.id !== owner) as FakePushgateway;
    const pushedAt = Date.now() / 1000 - 60;
    holder.push(J4, { m: 1 }, pushedAt);
    await holder.down();

    assert.equal((await request(proxying.server).delete('/metrics/job/j4')).status, 202);
    await proxying.fanOut.idle();
    const key = tombstoneKey('pgw-director/', J4);
    const stored = consul.kv.get(key);
    assert.ok(stored, 'no tombstone in consul');
    const value = JSON.parse(stored.value.toString('utf8')) as { labels: unknown; deleted_at: number };
    assert.deepEqual(value.labels, J4);
    assert.ok(value.deleted_at > pushedAt);

    // The holder returns; the other replica's pass reads the tombstone and deletes its copy instead of moving it.
    await holder.up();
    const report = await redirecting.reconciler.pass();
    assert.equal(report.tombstoned, 1, JSON.stringify(report));
    assert.equal(report.migrated, 0);
    assert.deepEqual(pgws.filter((pgw) => pgw.has(J4)), []);
    // A push after the DELETE is newer than the tombstone: it lives.
    assert.equal((await request(proxying.server).put('/metrics/job/j4').send('m 2\n')).status, 200);
    assert.equal((await redirecting.reconciler.pass()).tombstoned, 0);
    assert.deepEqual(pgws.filter((pgw) => pgw.has(J4)).map((pgw) => pgw.id), [owner]);
  });

  it('consul KV: the later deletion time wins by compare-and-set, expired tombstones are pruned, a read-only token keeps them in memory', async () => {
    const [a] = await fleet(1);
    assert.ok(a);
    consul = await startConsulDouble();
    consul.tokens = new Set(['writer', 'reader']);
    consul.kvReadOnly.add('reader');
    consul.add({ id: a.id, port: a.port });
    const replica = (token: string): TestDirector => {
      const director = directorFromFlags(
        [`--consul.address=${(consul as ConsulDouble).address}`, '--consul.wait=2s', '--reconcile.interval=0', '--group.tombstone-ttl=1h', '--consul.kv-prefix=team/pgw/'],
        { CONSUL_HTTP_TOKEN: token },
        { consulTuning: FAST },
      );
      directors.push(director);
      return director;
    };
    const writer = replica('writer');
    const store = writer.tombstones;
    assert.ok(store);
    const now = Date.now() / 1000;
    await store.record(J4, now - 10);
    await store.record(J4, now - 20);
    const key = tombstoneKey('team/pgw/', J4);
    const first = consul.kv.get(key);
    assert.equal((JSON.parse(first?.value.toString() ?? '{}') as { deleted_at: number }).deleted_at, now - 10, 'an earlier time overwrote a later one');
    await store.record(J4, now - 5);
    assert.ok((consul.kv.get(key)?.modifyIndex ?? 0) > (first?.modifyIndex ?? 0));
    assert.equal((await store.read(now)).size, 1);

    // The double keeps Consul's cas rules, which the store relies on (the npm client turns Consul's `false` into
    // undefined).
    const client = new Consul({ host: '127.0.0.1', port: consul.port, defaults: { token: 'writer' } });
    const held = consul.kv.get(key)?.modifyIndex;
    assert.notEqual(await client.kv.set({ key, value: 'x', cas: 0 }), true);
    assert.notEqual(await client.kv.set({ key, value: 'x', cas: 1 }), true);
    assert.notEqual(await client.kv.del({ key, cas: 1 }), true);
    assert.equal(consul.kv.get(key)?.modifyIndex, held);
    assert.equal(await client.kv.set({ key: 'team/pgw/x', value: 'x', cas: 0 }), true);
    assert.equal(await client.kv.del({ key: 'team/pgw/x', cas: consul.kv.get('team/pgw/x')?.modifyIndex ?? 0 }), true);

    const old = { job: 'old' };
    await store.record(old, now - 7200);
    assert.ok(consul.kv.has(tombstoneKey('team/pgw/', old)));
    const live = await store.read(now);
    assert.deepEqual([...live.values()], [now - 5]);
    assert.equal(consul.kv.has(tombstoneKey('team/pgw/', old)), false, 'the expired tombstone was not pruned');

    const reader = replica('reader');
    assert.ok(reader.tombstones);
    const other = { job: 'other' };
    await reader.tombstones.record(other, now);
    assert.equal(consul.kv.has(tombstoneKey('team/pgw/', other)), false);
    assert.ok(reader.log.lines.some((line) => String(line['msg']).startsWith('cannot write the tombstone to consul')));
    assert.ok(reader.log.raw.every((line) => !line.includes('reader"') && !line.includes('writer')), 'a token reached the log');
    assert.equal((await reader.tombstones.read(now)).size, 2, 'the pending tombstone does not count');
    consul.kvReadOnly.delete('reader');
    await reader.tombstones.read(now);
    assert.ok(consul.kv.has(tombstoneKey('team/pgw/', other)), 'the pending tombstone was not written once allowed');
  });

  it('with consul KV unreachable, a pass moves nothing, since a DELETE it cannot see may have happened', async () => {
    const [a, b] = await fleet(2);
    assert.ok(a && b);
    consul = await startConsulDouble();
    consul.add({ id: a.id, port: a.port });
    consul.add({ id: b.id, port: b.port });
    const director = directorFromFlags([`--consul.address=${consul.address}`, '--consul.wait=2s', '--reconcile.interval=0', '--reconcile.migrate'], {}, { consulTuning: FAST });
    director.discovery.start();
    directors.push(director);
    await until(() => director.placement.ring.nodes.length === 2, 'two nodes');
    const owner = ownerOf(director, '/metrics/job/j4');
    const holder = owner === a.id ? b : a;
    holder.push(J4, { m: 1 }, Date.now() / 1000 - 60);
    consul.fault = 'error';
    const report = await director.reconciler.pass();
    assert.equal(report.migrated, 0);
    assert.equal(report.kept, 1);
    assert.ok(report.errors >= 1);
    assert.equal(holder.has(J4), true);
    consul.fault = 'none';
    assert.equal((await director.reconciler.pass()).migrated, 1);
    assert.deepEqual(pgws.filter((pgw) => pgw.has(J4)).map((pgw) => pgw.id), [owner]);
  });
});
