import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';

import request from 'supertest';

import { nodesFromEntries } from '../../lib/discovery/consul';
import { type ConsulDouble, startConsulDouble } from '../support/consul-double';
import { type TestDirector, directorFromFlags } from '../support/director';
import { sleep, until } from '../support/wait';

const FAST = { burst: 3, refillMs: 100, backoffBaseMs: 50, backoffMaxMs: 200 };

describe('consul discovery', () => {
  let consul: ConsulDouble;
  let director: TestDirector;
  const start = async (flags: string[] = [], env: Record<string, string> = {}): Promise<void> => {
    consul ??= await startConsulDouble();
    director = directorFromFlags([`--consul.address=${consul.address}`, '--consul.wait=2s', ...flags], env, { consulTuning: FAST });
    director.discovery.start();
  };
  const members = (): string[] => director.placement.ring.nodes.map((node) => node.id);

  afterEach(async () => {
    await director.close();
    await consul.stop();
    consul = undefined as unknown as ConsulDouble;
  });

  it('is not ready, and answers pushes 503, until consul first answers', async () => {
    consul = await startConsulDouble();
    consul.fault = 'slow';
    consul.slowMs = 400;
    consul.add({ id: 'a', port: 9101 });
    await start();
    const push = await request(director.server).put('/metrics/job/j').send('m 1\n');
    assert.equal(push.status, 503);
    assert.equal(push.text, 'no pushgateway nodes available (waiting for consul)\n');
    assert.equal((await request(director.server).get('/-/ready')).status, 503);
    await until(() => members().length === 1, 'the first answer');
    assert.equal((await request(director.server).get('/-/ready')).status, 200);
    assert.equal((await request(director.server).put('/metrics/job/j')).status, 307);
  });

  it('follows nodes that join, leave and flap, within a blocking query', async () => {
    consul = await startConsulDouble();
    consul.add({ id: 'a', port: 9101 });
    await start();
    await until(() => members().length === 1, 'a');
    const before = consul.healthRequests();
    consul.add({ id: 'b', port: 9102 });
    await until(() => members().join() === '127.0.0.1:9101,127.0.0.1:9102', 'b joins');
    consul.setStatus('a', 'critical');
    await until(() => members().join() === '127.0.0.1:9102', 'a leaves when critical');
    const asked = consul.healthRequests();
    consul.setStatus('a', 'warning');
    // The director asks again only once it has applied the answer the change woke.
    await until(() => consul.healthRequests() > asked, 'the answer after the change');
    assert.deepEqual(members(), ['127.0.0.1:9102'], 'warning is not passing');
    consul.setStatus('a', 'passing');
    await until(() => members().length === 2, 'a comes back');
    consul.remove('b');
    await until(() => members().join() === '127.0.0.1:9101', 'b deregistered');
    // Each change wakes the blocked query: a handful of requests, not a poll loop.
    assert.ok(consul.healthRequests() - before < 15, `${consul.healthRequests() - before} requests`);
    const joined = director.log.lines.filter((line) => line['msg'] === 'ring changed');
    assert.ok(joined.some((line) => JSON.stringify(line['joined']) === '["127.0.0.1:9102"]'));
    assert.ok(joined.some((line) => JSON.stringify(line['left']) === '["127.0.0.1:9101"]'));
  });

  it('empties the ring when no node passes: 503, not a redirect to a dead node', async () => {
    consul = await startConsulDouble();
    consul.add({ id: 'a', port: 9101 });
    await start();
    await until(() => members().length === 1, 'a');
    consul.setStatus('a', 'critical');
    await until(() => members().length === 0, 'empty ring');
    const push = await request(director.server).put('/metrics/job/j');
    assert.equal(push.status, 503);
    assert.equal(push.text, 'no pushgateway nodes available\n');
    assert.equal((await request(director.server).get('/-/ready')).status, 503);
  });

  it('keeps the last good ring while consul is down, then follows it again', async () => {
    consul = await startConsulDouble();
    consul.add({ id: 'a', port: 9101 });
    await start();
    await until(() => members().length === 1, 'a');
    await consul.down();
    await until(() => director.log.lines.some((l) => String(l['msg']).startsWith('consul unreachable: ECONNREFUSED')), 'the outage is seen');
    assert.deepEqual(members(), ['127.0.0.1:9101']);
    assert.equal((await request(director.server).put('/metrics/job/j')).status, 307);
    consul.add({ id: 'b', port: 9102 });
    await consul.up();
    await until(() => members().length === 2, 'b after consul is back');
    const errors = director.log.lines.filter((line) => String(line['msg']).startsWith('consul unreachable: ECONNREFUSED'));
    assert.ok(errors.length >= 1, 'the outage was logged');
    assert.ok(errors.length <= 4, `logged ${errors.length} lines for one outage`);
    const metrics = await request(director.server).get('/metrics');
    assert.match(metrics.text, /pgw_director_discovery_errors_total [1-9]/);
    assert.match(metrics.text, /pgw_director_discovery_up 1/);
  });

  it('says discovery is up again on the first good answer, not a whole blocking wait later', async () => {
    consul = await startConsulDouble();
    consul.add({ id: 'a', port: 9101 });
    // A wait far longer than the until() below: a blocking query after the outage would miss it.
    await start(['--consul.wait=30s']);
    await until(() => members().length === 1, 'a');
    const up = async (): Promise<number> => (await director.metrics.discovery.up.get()).values[0]?.value ?? -1;
    await consul.down();
    await until(async () => (await up()) === 0, 'discovery_up 0 while consul is down');
    await consul.up();
    await until(async () => (await up()) === 1, 'discovery_up 1 once consul answers', 5000);
  });

  it('keeps the ring when consul answers 500, garbage, or JSON of the wrong shape', async () => {
    consul = await startConsulDouble();
    consul.add({ id: 'a', port: 9101 });
    await start();
    await until(() => members().length === 1, 'a');
    consul.fault = 'error';
    consul.bump();
    await until(() => director.log.lines.some((l) => String(l['msg']).startsWith('consul answered 500')), '500 logged');
    consul.fault = 'garbage';
    consul.bump();
    await until(
      () => director.log.lines.some((l) => String(l['msg']).startsWith('consul answered with a body that is not valid JSON')),
      'garbage logged',
    );
    consul.fault = 'object';
    consul.bump();
    await until(
      () => director.log.lines.some((l) => String(l['msg']).startsWith('consul answered 200 with a body that is not a JSON array')),
      'a non-array logged',
    );
    assert.deepEqual(members(), ['127.0.0.1:9101']);
    consul.fault = 'none';
    consul.add({ id: 'b', port: 9102 });
    await until(() => members().length === 2, 'b after the faults');
  });

  it('starts over when the index goes backwards', async () => {
    consul = await startConsulDouble();
    consul.index = 100;
    consul.add({ id: 'a', port: 9101 });
    await start();
    await until(() => members().length === 1, 'a');
    const asked = consul.healthRequests();
    consul.resetIndex(3);
    await until(() => consul.healthRequests() > asked, 'the director asks after the reset');
    consul.add({ id: 'b', port: 9102 });
    await until(() => members().length === 2, 'b after the reset');
    const indexes = consul.requests.filter((r) => r.path.startsWith('/v1/health')).map((r) => r.query.get('index'));
    assert.ok(indexes.includes('0'), `asked with ${indexes.join(',')}`);
  });

  it('stays rate-limited when consul answers at once without a change', async () => {
    consul = await startConsulDouble();
    consul.add({ id: 'a', port: 9101 });
    consul.fault = 'instant';
    await start();
    await until(() => members().length === 1, 'a');
    const before = consul.healthRequests();
    await sleep(1000);
    const count = consul.healthRequests() - before;
    // 100ms refill: about 10 a second; a busy loop would make thousands.
    assert.ok(count >= 5 && count <= 14, `${count} requests in one second`);
  });

  it('sends the token as X-Consul-Token, and names its source, never its value, on 403', async () => {
    consul = await startConsulDouble();
    consul.tokens = new Set(['good-token']);
    consul.add({ id: 'a', port: 9101 });
    await start([], { CONSUL_HTTP_TOKEN: 'secret-bad-token' });
    await until(() => director.log.lines.some((l) => String(l['msg']).includes('403')), '403 logged');
    const line = director.log.raw.find((l) => l.includes('403')) ?? '';
    assert.match(line, /consul refused the ACL token \(403; token from CONSUL_HTTP_TOKEN\)/);
    assert.ok(!director.log.raw.some((l) => l.includes('secret-bad-token')), 'the token was logged');
    assert.equal(members().length, 0);
    assert.equal(consul.requests.at(-1)?.token, 'secret-bad-token');
    await director.close();

    const dir = mkdtempSync(join(tmpdir(), 'pgw-token-'));
    writeFileSync(join(dir, 'token'), 'good-token\n');
    await start([`--consul.token-file=${join(dir, 'token')}`]);
    await until(() => members().length === 1, 'a with a good token');
    assert.equal(consul.requests.at(-1)?.token, 'good-token');
  });

  it('filters by tag and asks the datacenter', async () => {
    consul = await startConsulDouble();
    consul.add({ id: 'a', port: 9101, tags: ['prod'] });
    consul.add({ id: 'b', port: 9102, tags: ['staging'] });
    await start(['--consul.tag=prod', '--consul.datacenter=eu1']);
    await until(() => members().length === 1, 'a');
    assert.deepEqual(members(), ['127.0.0.1:9101']);
    const last = consul.requests.at(-1);
    assert.equal(last?.query.get('dc'), 'eu1');
    assert.equal(last?.query.get('tag'), 'prod');
    assert.equal(last?.query.get('passing'), 'true');
  });

  it('registers pushgateways, re-asserts them, and deregisters them on exit', async () => {
    consul = await startConsulDouble();
    await start(['--consul.register=http://127.0.0.1:9191', '--consul.register-interval=200ms', '--consul.deregister-on-exit']);
    await until(() => consul.services.has('127.0.0.1_9191'), 'registered');
    const entry = consul.services.get('127.0.0.1_9191');
    assert.equal(entry?.name, 'pushgateway');
    assert.equal(entry?.port, 9191);
    assert.equal(entry?.check?.http, 'http://127.0.0.1:9191/-/healthy');
    consul.remove('127.0.0.1_9191');
    await until(() => consul.services.has('127.0.0.1_9191'), 're-registered after being reaped');
    await director.close();
    assert.ok(!consul.services.has('127.0.0.1_9191'), 'still registered after exit');
  });
});

describe('nodesFromEntries', () => {
  it('uses the service address, the node address when it is empty, and a url meta over both', () => {
    const { nodes, skipped } = nodesFromEntries(
      [
        { Node: { Node: 'n1', Address: '127.0.0.11' }, Service: { ID: 'a', Address: '127.0.1.1', Port: 9091 } },
        { Node: { Node: 'n2', Address: '127.0.0.12' }, Service: { ID: 'b', Address: '', Port: 9091 } },
        { Node: { Node: 'n3', Address: '127.0.0.13' }, Service: { ID: 'c', Address: '', Port: 9091, Meta: { url: 'https://pgw3.example/p' } } },
        { Node: { Node: 'n4', Address: 'fd00::4' }, Service: { ID: 'd', Address: '', Port: 9091, Meta: null } },
        { Node: { Node: 'n5' }, Service: { ID: 'e', Address: '', Port: 9091 } },
      ],
      'http',
      '/pgw',
    );
    assert.deepEqual(nodes, [
      { id: '127.0.1.1:9091', url: 'http://127.0.1.1:9091/pgw' },
      { id: '127.0.0.12:9091', url: 'http://127.0.0.12:9091/pgw' },
      { id: 'pgw3.example:443', url: 'https://pgw3.example:443/p' },
      { id: '[fd00::4]:9091', url: 'http://[fd00::4]:9091/pgw' },
    ]);
    assert.equal(skipped.length, 1);
  });
});
