import assert from 'node:assert/strict';
import type { LookupAddress, promises as dns } from 'node:dns';
import type { LookupFunction } from 'node:net';
import { describe, it } from 'node:test';

import { createResolverLookup, nodesFromAddresses, nodesFromSrv } from '../../../lib/discovery/dns';

describe('nodesFromSrv', () => {
  it('names each node target:port, lower-cased, and keeps the name in its URL', () => {
    const { nodes, skipped } = nodesFromSrv(
      [
        { name: 'PGW-0.pgw.monitoring.svc.cluster.local', port: 9091, priority: 0, weight: 0 },
        { name: 'pgw-1.pgw.monitoring.svc.cluster.local.', port: 9092, priority: 10, weight: 5 },
      ],
      'https',
      '/prefix',
    );
    assert.deepEqual(nodes, [
      { id: 'pgw-0.pgw.monitoring.svc.cluster.local:9091', url: 'https://pgw-0.pgw.monitoring.svc.cluster.local:9091/prefix' },
      { id: 'pgw-1.pgw.monitoring.svc.cluster.local:9092', url: 'https://pgw-1.pgw.monitoring.svc.cluster.local:9092/prefix' },
    ]);
    assert.deepEqual(skipped, []);
  });

  it('skips a "." target (service not available there) and port 0, saying why', () => {
    const { nodes, skipped } = nodesFromSrv(
      [
        { name: '', port: 9091, priority: 0, weight: 0 },
        { name: 'a.test', port: 0, priority: 0, weight: 0 },
        { name: 'b.test', port: 9091, priority: 0, weight: 0 },
      ],
      'http',
      '',
    );
    assert.deepEqual(nodes.map((node) => node.id), ['b.test:9091']);
    assert.deepEqual(skipped, ['SRV ":9091": no target or port', 'SRV "a.test:0": no target or port']);
  });
});

describe('nodesFromAddresses', () => {
  it('puts every address on the given port, IPv6 in brackets', () => {
    const { nodes } = nodesFromAddresses(['127.0.0.11', 'fd00::1'], 9091, 'http', '');
    assert.deepEqual(nodes, [
      { id: '127.0.0.11:9091', url: 'http://127.0.0.11:9091' },
      { id: '[fd00::1]:9091', url: 'http://[fd00::1]:9091' },
    ]);
  });
});

type Answer = { address: string; ttl: number }[] | NodeJS.ErrnoException;

/** fakeResolver answers resolve4/resolve6 from tables (which specs may change) and counts the queries. */
function fakeResolver(v4: Record<string, Answer>, v6: Record<string, Answer> = {}) {
  const queries: string[] = [];
  const answer = (table: Record<string, Answer>, family: string) => (name: string) => {
    queries.push(`${family} ${name}`);
    const entry = table[name] ?? Object.assign(new Error(`query ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
    return entry instanceof Error ? Promise.reject(entry) : Promise.resolve(entry);
  };
  const resolver = { resolve4: answer(v4, 'A'), resolve6: answer(v6, 'AAAA') } as unknown as dns.Resolver;
  return { resolver, queries };
}

function lookupOnce(lookup: LookupFunction, name: string, options: { family?: number; all?: boolean } = {}) {
  return new Promise<{ error: NodeJS.ErrnoException | null; address: string | LookupAddress[]; family: number | undefined }>((resolve) => {
    lookup(name, options, (error, address, family) => resolve({ error, address, family }));
  });
}

describe('createResolverLookup', () => {
  it('answers as dns.lookup does: one address, or all of them', async () => {
    const { resolver } = fakeResolver({ 'a.test': [{ address: '127.0.0.11', ttl: 0 }, { address: '127.0.0.12', ttl: 0 }] }, { 'a.test': [{ address: 'fd00::1', ttl: 0 }] });
    const lookup = createResolverLookup(resolver);
    assert.deepEqual(await lookupOnce(lookup, 'a.test'), { error: null, address: '127.0.0.11', family: 4 });
    assert.deepEqual((await lookupOnce(lookup, 'A.TEST', { all: true })).address, [
      { address: '127.0.0.11', family: 4 },
      { address: '127.0.0.12', family: 4 },
      { address: 'fd00::1', family: 6 },
    ]);
    assert.deepEqual(await lookupOnce(lookup, 'a.test', { family: 6 }), { error: null, address: 'fd00::1', family: 6 });
    assert.deepEqual(await lookupOnce(lookup, '127.0.0.9'), { error: null, address: '127.0.0.9', family: 4 });
  });

  it('fails with ENOTFOUND for a name without addresses, and passes a server failure on', async () => {
    const refused = Object.assign(new Error('queryA EREFUSED b.test'), { code: 'EREFUSED' });
    const { resolver } = fakeResolver({ 'b.test': refused });
    const lookup = createResolverLookup(resolver);
    assert.equal((await lookupOnce(lookup, 'nothing.test')).error?.code, 'ENOTFOUND');
    assert.equal((await lookupOnce(lookup, 'b.test')).error?.code, 'EREFUSED');
  });

  it('reuses an answer for its TTL, capped, and shares one query between concurrent lookups', async () => {
    let now = 1_000_000;
    const { resolver, queries } = fakeResolver({ 'a.test': [{ address: '127.0.0.11', ttl: 5 }], 'z.test': [{ address: '127.0.0.13', ttl: 0 }] });
    const lookup = createResolverLookup(resolver, { maxCacheMs: 3000, now: () => now });
    await Promise.all([lookupOnce(lookup, 'a.test', { family: 4 }), lookupOnce(lookup, 'a.test', { family: 4 })]);
    assert.deepEqual(queries.splice(0), ['A a.test']);
    now += 2999;
    await lookupOnce(lookup, 'a.test', { family: 4 });
    assert.deepEqual(queries.splice(0), [], 'cached within the cap');
    now += 1;
    await lookupOnce(lookup, 'a.test', { family: 4 });
    assert.deepEqual(queries.splice(0), ['A a.test'], 'the cap (3s) wins over the TTL (5s)');
    await lookupOnce(lookup, 'z.test', { family: 4 });
    await lookupOnce(lookup, 'z.test', { family: 4 });
    assert.deepEqual(queries.splice(0), ['A z.test', 'A z.test'], 'TTL 0 is never cached');
  });

  it('uses the last good addresses while the server fails, and forgets them when the name is gone', async () => {
    const v4: Record<string, Answer> = { 'a.test': [{ address: '127.0.0.11', ttl: 0 }] };
    const { resolver } = fakeResolver(v4);
    const lookup = createResolverLookup(resolver);
    assert.equal((await lookupOnce(lookup, 'a.test', { family: 4 })).address, '127.0.0.11');
    v4['a.test'] = Object.assign(new Error('queryA ETIMEOUT a.test'), { code: 'ETIMEOUT' });
    assert.deepEqual(await lookupOnce(lookup, 'a.test', { family: 4 }), { error: null, address: '127.0.0.11', family: 4 });
    delete v4['a.test'];
    assert.equal((await lookupOnce(lookup, 'a.test', { family: 4 })).error?.code, 'ENOTFOUND');
    v4['a.test'] = Object.assign(new Error('queryA ETIMEOUT a.test'), { code: 'ETIMEOUT' });
    assert.equal((await lookupOnce(lookup, 'a.test', { family: 4 })).error?.code, 'ETIMEOUT', 'nothing stale to fall back on');
  });
});
