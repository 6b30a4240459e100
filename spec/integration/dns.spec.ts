import assert from 'node:assert/strict';
import http from 'node:http';
import { after, afterEach, before, describe, it } from 'node:test';

import request from 'supertest';

import { type Dnsmasq, startDnsmasq } from '../support/dnsmasq';
import { type TestDirector, directorFromFlags } from '../support/director';
import { freePort } from '../support/processes';
import { until } from '../support/wait';

const FAST = { timeoutMs: 300, tries: 1, backoffBaseMs: 50, backoffMaxMs: 200 };
const SRV = '_pgw._tcp.test.local';

describe('dns discovery against dnsmasq', () => {
  let dnsmasq: Dnsmasq;
  let director: TestDirector | undefined;

  before(async () => {
    dnsmasq = await startDnsmasq();
  });
  after(async () => {
    await dnsmasq.stop();
  });
  afterEach(async () => {
    await director?.close();
    director = undefined;
    if (!dnsmasq.running) await dnsmasq.start();
  });

  const start = (flags: string[] = []): TestDirector => {
    director = directorFromFlags([`--dns.server=${dnsmasq.server}`, '--dns.refresh-interval=200ms', ...flags], {}, { dnsTuning: FAST });
    director.discovery.start();
    return director;
  };
  const members = (): string => (director as TestDirector).placement.ring.nodes.map((node) => node.id).join(' ');
  const changes = (): Record<string, unknown>[] => (director as TestDirector).log.lines.filter((line) => line['msg'] === 'ring changed');
  const gauge = async (metric: { get(): Promise<{ values: { value: number }[] }> }): Promise<number> => (await metric.get()).values[0]?.value ?? NaN;

  it('is not ready, and answers pushes 503, until dns first answers', async () => {
    await dnsmasq.setRecords({ srv: { [SRV]: [{ target: 'pgw-0.test.local', port: 9101 }] } });
    await dnsmasq.stop();
    const d = start([`--dns.name=${SRV}`]);
    await until(async () => (await gauge(d.metrics.discovery.errors)) >= 2, 'two failed lookups');
    const push = await request(d.server).put('/metrics/job/j').send('m 1\n');
    assert.equal(push.status, 503);
    assert.equal(push.text, 'no pushgateway nodes available (waiting for dns)\n');
    assert.equal((await request(d.server).get('/-/ready')).status, 503);
    await dnsmasq.start();
    await until(() => members() === 'pgw-0.test.local:9101', 'the first answer');
    assert.equal((await request(d.server).get('/-/ready')).status, 200);
  });

  it('follows SRV members that join and leave, honours their ports, and keeps the name in Location', async () => {
    await dnsmasq.setRecords({ srv: { [SRV]: [{ target: 'pgw-0.test.local', port: 9101 }] } });
    const d = start([`--dns.name=${SRV}`]);
    await until(() => members() === 'pgw-0.test.local:9101', 'pgw-0');
    const push = await request(d.server).put('/metrics/job/j/instance/i').send('m 1\n');
    assert.equal(push.status, 307);
    assert.equal(push.headers['location'], 'http://pgw-0.test.local:9101/metrics/job/j/instance/i');

    await dnsmasq.setRecords({ srv: { [SRV]: [{ target: 'pgw-0.test.local', port: 9101 }, { target: 'pgw-1.test.local', port: 9202 }] } });
    await until(() => members() === 'pgw-0.test.local:9101 pgw-1.test.local:9202', 'pgw-1 joins');
    await dnsmasq.setRecords({ srv: { [SRV]: [{ target: 'pgw-1.test.local', port: 9202 }] } });
    await until(() => members() === 'pgw-1.test.local:9202', 'pgw-0 leaves');
    assert.deepEqual(
      changes().map((line) => [line['joined'], line['left']]),
      [[['pgw-0.test.local:9101'], []], [['pgw-1.test.local:9202'], []], [[], ['pgw-0.test.local:9101']]],
    );

    // The same answer again is no change: three more queries, still three ring changes.
    const seen = dnsmasq.queries(SRV, 'SRV');
    await until(() => dnsmasq.queries(SRV, 'SRV') >= seen + 3, 'three more refreshes');
    assert.equal(changes().length, 3);
    assert.equal(await gauge(d.metrics.discovery.up), 1);
  });

  it('empties the ring when the name has no records: 503 and not ready, until records return', async () => {
    await dnsmasq.setRecords({ srv: { [SRV]: [{ target: 'pgw-0.test.local', port: 9101 }] } });
    const d = start([`--dns.name=${SRV}`]);
    await until(() => members() === 'pgw-0.test.local:9101', 'pgw-0');
    await dnsmasq.setRecords({ srv: {} });
    await until(() => members() === '', 'the ring empties on NXDOMAIN');
    const push = await request(d.server).put('/metrics/job/j').send('m 1\n');
    assert.equal(push.status, 503);
    assert.equal(push.text, 'no pushgateway nodes available\n');
    assert.equal((await request(d.server).get('/-/ready')).status, 503);
    assert.equal(await gauge(d.metrics.discovery.up), 1, 'an empty answer is an answer');
    assert.ok(d.log.lines.some((line) => line['msg'] === 'dns lists no pushgateway: the ring is empty and pushes get 503'));
    await dnsmasq.setRecords({ srv: { [SRV]: [{ target: 'pgw-2.test.local', port: 9103 }] } });
    await until(() => members() === 'pgw-2.test.local:9103', 'pgw-2 arrives');
    assert.equal((await request(d.server).get('/-/ready')).status, 200);
  });

  it('keeps the last good ring while the dns server is down, and says so once with backoff', async () => {
    await dnsmasq.setRecords({ srv: { [SRV]: [{ target: 'pgw-0.test.local', port: 9101 }, { target: 'pgw-1.test.local', port: 9102 }] } });
    const d = start([`--dns.name=${SRV}`]);
    await until(() => members() === 'pgw-0.test.local:9101 pgw-1.test.local:9102', 'two members');
    await dnsmasq.stop();
    await until(async () => (await gauge(d.metrics.discovery.errors)) >= 4, 'four failed lookups');
    assert.equal(await gauge(d.metrics.discovery.up), 0);
    assert.equal(members(), 'pgw-0.test.local:9101 pgw-1.test.local:9102');
    assert.equal((await request(d.server).put('/metrics/job/j').send('m 1\n')).status, 307);
    assert.equal((await request(d.server).get('/-/ready')).status, 200);
    const errors = d.log.lines.filter((line) => line['component'] === 'dns' && line['level'] === 50);
    assert.match(String(errors[0]?.['msg']), /^dns lookup of SRV "_pgw\._tcp\.test\.local" failed \(ECONNREFUSED; server 127\.0\.0\.1:\d+\); keeping the last good ring and retrying$/);
    // Logged at the 1st, 2nd, 4th... failure, not at every retry.
    assert.ok(errors.length < (await gauge(d.metrics.discovery.errors)), `${errors.length} error lines`);
    await dnsmasq.start();
    await until(async () => (await gauge(d.metrics.discovery.up)) === 1, 'dns answers again');
    assert.equal(changes().length, 1, 'the outage changed nothing');
  });

  it('reads an answer too big for one UDP packet (c-ares retries over TCP)', async () => {
    const targets = Array.from({ length: 100 }, (_, i) => ({ target: `pushgateway-${i}.pushgateway.test.local`, port: 9000 + i }));
    await dnsmasq.setRecords({ srv: { [SRV]: targets } });
    start([`--dns.name=${SRV}`]);
    await until(() => (director as TestDirector).placement.ring.nodes.length === 100, 'a hundred members');
    assert.ok(members().includes('pushgateway-99.pushgateway.test.local:9099'));
  });

  it('treats a refused query as a failure, not as an empty answer, and needs every name to answer', async () => {
    await dnsmasq.setRecords({ srv: { [SRV]: [{ target: 'pgw-0.test.local', port: 9101 }] } });
    // dnsmasq refuses names outside its local domain: it forwards nothing.
    const d = start([`--dns.name=${SRV}`, '--dns.name=_pgw._tcp.elsewhere.invalid']);
    await until(async () => (await gauge(d.metrics.discovery.errors)) >= 2, 'two failed refreshes');
    assert.equal(d.placement.pendingReason, 'waiting for dns');
    assert.ok(d.log.lines.some((line) => /"_pgw\._tcp\.elsewhere\.invalid" failed \(EREFUSED/.test(String(line['msg']))));
  });

  it('reads A records with --dns.port, and AAAA records', async () => {
    await dnsmasq.setRecords({ hosts: { 'pgw.test.local': ['127.0.0.2', '127.0.0.3'] } });
    const d = start(['--dns.name=pgw.test.local', '--dns.type=A', '--dns.port=9555']);
    await until(() => members() === '127.0.0.2:9555 127.0.0.3:9555', 'two addresses');
    const push = await request(d.server).put('/metrics/job/j').send('m 1\n');
    assert.match(String(push.headers['location']), /^http:\/\/127\.0\.0\.[23]:9555\/metrics\/job\/j$/);
    await dnsmasq.setRecords({ hosts: { 'pgw.test.local': ['127.0.0.3', '127.0.0.4'] } });
    await until(() => members() === '127.0.0.3:9555 127.0.0.4:9555', 'one address replaced');
    await d.close();

    await dnsmasq.setRecords({ hosts: { 'pgw6.test.local': ['::1'] } });
    const d6 = start(['--dns.name=pgw6.test.local', '--dns.type=AAAA', '--dns.port=9556']);
    await until(() => members() === '[::1]:9556', 'an IPv6 member');
    const push6 = await request(d6.server).put('/metrics/job/j').send('m 1\n');
    assert.equal(push6.headers['location'], 'http://[::1]:9556/metrics/job/j');
  });

  it('keeps a named node in place when its address changes, and reaches it there through the same dns server', async () => {
    // Two listeners on one port at two addresses stand for one pod before and after a restart.
    const port = await freePort();
    const seen: string[] = [];
    const listen = async (address: string): Promise<http.Server> => {
      const server = http.createServer((req, res) => {
        seen.push(`${address} ${req.method} ${req.url}`);
        req.resume();
        req.on('end', () => {
          const body = req.url === '/api/v1/metrics' ? '{"status":"success","data":[]}' : '';
          res.writeHead(200, { 'Content-Length': Buffer.byteLength(body) });
          res.end(body);
        });
      });
      await new Promise<void>((resolve) => server.listen(port, address, resolve));
      return server;
    };
    const before = await listen('127.0.0.2');
    const afterRestart = await listen('127.0.0.3');
    try {
      await dnsmasq.setRecords({ srv: { [SRV]: [{ target: 'pgw-0.test.local', port }] }, hosts: { 'pgw-0.test.local': ['127.0.0.2'] } });
      const d = start([`--dns.name=${SRV}`, '--mode=proxy']);
      await until(() => members() === `pgw-0.test.local:${port}`, 'pgw-0');
      // The system resolver has never heard of pgw-0.test.local: only dnsmasq can make these reach a listener.
      assert.equal((await request(d.server).put('/metrics/job/a').send('m 1\n')).status, 200);
      assert.equal((await d.reconciler.pass()).errors, 0);
      assert.deepEqual(seen.splice(0), ['127.0.0.2 PUT /metrics/job/a', '127.0.0.2 GET /api/v1/metrics']);

      await dnsmasq.setRecords({ srv: { [SRV]: [{ target: 'pgw-0.test.local', port }] }, hosts: { 'pgw-0.test.local': ['127.0.0.3'] } });
      // The old pod is gone: its connections close, new ones resolve the name again.
      await new Promise<void>((resolve) => {
        before.close(() => resolve());
        before.closeAllConnections();
      });
      assert.equal((await request(d.server).put('/metrics/job/b').send('m 1\n')).status, 200);
      assert.equal((await d.reconciler.pass()).errors, 0);
      assert.deepEqual(seen.splice(0), ['127.0.0.3 PUT /metrics/job/b', '127.0.0.3 GET /api/v1/metrics']);
      assert.equal(members(), `pgw-0.test.local:${port}`);
      assert.equal(changes().length, 1, 'the ring never changed');

      // The dns server goes down: new connections use the name's last good address, as the ring stays the last good.
      await dnsmasq.stop();
      afterRestart.closeAllConnections();
      assert.equal((await request(d.server).put('/metrics/job/c').send('m 1\n')).status, 200);
      assert.equal((await d.reconciler.pass()).errors, 0);
      assert.deepEqual(seen.splice(0), ['127.0.0.3 PUT /metrics/job/c', '127.0.0.3 GET /api/v1/metrics']);
    } finally {
      before.close();
      afterRestart.close();
      afterRestart.closeAllConnections();
    }
  });
});
