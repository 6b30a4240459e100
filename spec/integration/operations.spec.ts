import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';

import request from 'supertest';

import { startBackend } from '../support/backend';
import { type TestDirector, directorFromFlags } from '../support/director';
import { until } from '../support/wait';

const BIN = join(__dirname, '..', '..', 'bin', 'pgw-director.js');

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : Number((error as { code?: number }).code ?? 1), stdout, stderr });
    });
  });
}

describe('inspection endpoints', () => {
  let director: TestDirector;
  before(() => {
    director = directorFromFlags(['--node', 'http://127.0.0.11:9091', '--node', 'http://127.0.0.12:9091', '--ring.vnodes=100']);
    director.discovery.start();
  });

  it('describes the ring', async () => {
    const res = await request(director.server).get('/api/v1/ring');
    assert.equal(res.status, 200);
    const data = (res.body as { data: { members: { id: string; url: string; share: number }[]; vnodes: number; hash_key: string; last_change: string } }).data;
    assert.deepEqual(
      data.members.map((m) => [m.id, m.url]),
      [
        ['127.0.0.11:9091', 'http://127.0.0.11:9091'],
        ['127.0.0.12:9091', 'http://127.0.0.12:9091'],
      ],
    );
    assert.ok(Math.abs(data.members.reduce((sum, m) => sum + m.share, 0) - 1) < 1e-9);
    assert.ok(data.members.every((m) => m.share > 0.3 && m.share < 0.7));
    assert.equal(data.vnodes, 100);
    assert.equal(data.hash_key, 'grouping-key');
    assert.ok(!Number.isNaN(Date.parse(data.last_change)));
  });

  it('looks a path up: labels, canonical key, owner', async () => {
    const res = await request(director.server).get('/api/v1/lookup').query({ path: '/metrics/job@base64/YQ/y/2/x/1' });
    assert.equal(res.status, 200);
    const data = (res.body as { data: Record<string, unknown> }).data;
    assert.deepEqual(data['labels'], { job: 'a', x: '1', y: '2' });
    assert.equal(data['canonical_key'], 'job\\xffa\\xffx\\xff1\\xffy\\xff2\\xff');
    const push = await request(director.server).put('/metrics/job/a/x/1/y/2');
    assert.equal(`${(data['node'] as { url: string }).url}/metrics/job/a/x/1/y/2`, push.headers['location']);
  });

  it('answers a bad lookup with 400 and the parser message', async () => {
    const res = await request(director.server).get('/api/v1/lookup').query({ path: '/metrics/job/a/__x/1' });
    assert.equal(res.status, 400);
    assert.deepEqual(res.body, { status: 'error', errorType: 'bad_data', error: 'improper label name "__x"' });
    const missing = await request(director.server).get('/api/v1/lookup');
    assert.equal(missing.status, 400);
    assert.deepEqual(missing.body, { status: 'error', errorType: 'bad_data', error: 'query parameter "path" is required' });
    const twice = await request(director.server).get('/api/v1/lookup?path=/metrics/job/a&path=/metrics/job/b');
    assert.equal(twice.status, 400);
    assert.deepEqual(twice.body, { status: 'error', errorType: 'bad_data', error: 'query parameter "path" must be given once' });
  });

  it('is read-only', async () => {
    for (const path of ['/api/v1/ring', '/api/v1/lookup']) {
      assert.equal((await request(director.server).post(path)).status, 404);
      assert.equal((await request(director.server).delete(path)).status, 404);
    }
  });

  it('counts pushes by method, outcome and node on /metrics', async () => {
    await request(director.server).put('/metrics/job/counted');
    await request(director.server).put('/metrics/job/counted');
    await request(director.server).delete('/metrics/job/counted');
    await request(director.server).put('/metrics/job/counted/x');
    const owner = (await request(director.server).get('/api/v1/lookup').query({ path: '/metrics/job/counted' })).body as { data: { node: { id: string } } };
    const text = (await request(director.server).get('/metrics')).text;
    assert.match(text, new RegExp(`pgw_director_pushes_total\\{method="PUT",outcome="redirected",node="${owner.data.node.id}"\\} [2-9]`));
    assert.match(text, new RegExp(`pgw_director_pushes_total\\{method="DELETE",outcome="redirected",node="${owner.data.node.id}"\\} 1`));
    assert.match(text, /pgw_director_pushes_total\{method="PUT",outcome="rejected",node=""\} [1-9]/);
    assert.match(text, /^pgw_director_ring_members 2$/m);
    assert.match(text, /^pgw_director_ring_vnodes 100$/m);
    assert.match(text, /^pgw_director_build_info\{version="\d+\.\d+\.\d+",nodejs_version="v\d+/m);
    assert.match(text, /^process_cpu_seconds_total /m);
    assert.match(text, /^nodejs_eventloop_lag_seconds /m);
  });

  it('never logs credentials', async () => {
    const secret = 'Basic c2VjcmV0LXVzZXI6c2VjcmV0LXBhc3M=';
    await request(director.server).get('/nope').set('Authorization', secret).set('Cookie', 'session=secret-cookie');
    await request(director.server).get('/-/healthy').set('Authorization', secret);
    await request(director.server).put('/metrics/job/a/__x/1').set('Authorization', secret);
    await request(director.server).put('/metrics/job/a').set('Authorization', secret).set('Proxy-Authorization', secret);
    const logged = director.log.raw.join('\n');
    assert.ok(director.log.raw.some((line) => line.includes('"/nope"')), 'the 404 was not logged at all');
    assert.ok(!logged.includes('c2VjcmV0') && !logged.includes('secret-cookie'), 'a credential reached the log');
  });

  it('counts ring changes', async () => {
    director.placement.update([{ id: '127.0.0.13:9091', url: 'http://127.0.0.13:9091' }]);
    const text = (await request(director.server).get('/metrics')).text;
    assert.match(text, /^pgw_director_ring_changes_total 2$/m);
    assert.match(text, /^pgw_director_ring_members 1$/m);
  });
});

describe('the log under probes and scanners', () => {
  it('logs a 503 from /-/ready and a 404 at debug, by method and URL only, without a stack or headers', async () => {
    // Never started: the ring waits for Consul, so /-/ready answers 503.
    const director = directorFromFlags(['--consul.address=127.0.0.1:1']);
    assert.equal((await request(director.server).get('/-/ready')).status, 503);
    assert.equal((await request(director.server).get('/wp-login.php').set('X-Scanner', 'probe-header-value')).status, 404);
    const lines = director.log.lines.filter((line) => ['/-/ready', '/wp-login.php'].includes(String((line['req'] as { url?: string } | undefined)?.url)));
    assert.equal(lines.length, 2, 'both requests are still logged at debug');
    for (const line of lines) {
      assert.equal(line['level'], 20, JSON.stringify(line));
      assert.deepEqual(Object.keys(line['req'] as object).sort(), ['id', 'method', 'remoteAddress', 'url']);
    }
    assert.ok(!director.log.raw.join('\n').includes('probe-header-value'), 'request headers reached the log');
    assert.ok(!director.log.raw.join('\n').includes('"stack"'), 'a stack trace reached the log');
  });
});

describe('periodic reconciliation', () => {
  it('runs the first pass as soon as the ring is known, not an interval later', async () => {
    const node = await startBackend((_req, res) => res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"status":"success","data":[]}'));
    const director = directorFromFlags(['--node', node.url, '--reconcile.interval=1h']);
    try {
      await director.listen();
      // Well under the hour an interval would take; the pass runs under the idle policy, which a machine busy with
      // other specs can hold back for seconds.
      await until(() => node.received.some((r) => r.method === 'GET' && r.url === '/api/v1/metrics'), 'the first pass lists the node', 30_000);
      await until(() => director.log.lines.some((line) => line['msg'] === 'reconciliation pass done'), 'the first pass ends', 30_000);
    } finally {
      await director.close();
      await node.close();
    }
  });
});

describe('pgw-director lookup and ring', () => {
  const nodes = ['--node', '1.1.1.1:9091', '--node', '1.1.1.2:9091'];

  it('prints each path with its owner, with the old Go director placement under --hash.key=path', async () => {
    const result = await cli(['lookup', '--hash.key=path', ...nodes, '/metrics/job/job_a', '/metrics/job/job_c', '/metrics/job/job_a/tag_a/value_b']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(
      result.stdout,
      [
        '/metrics/job/job_a\thttp://1.1.1.1:9091',
        '/metrics/job/job_c\thttp://1.1.1.2:9091',
        '/metrics/job/job_a/tag_a/value_b\thttp://1.1.1.2:9091',
        '',
      ].join('\n'),
    );
  });

  it('agrees with the server, and reports bad paths with exit status 1', async () => {
    const director = directorFromFlags(nodes);
    director.discovery.start();
    const push = await request(director.server).put('/metrics/job/a/x/1');
    const result = await cli(['lookup', ...nodes, '/metrics/job/a/x/1', '/metrics/job/a/x']);
    assert.equal(result.code, 1);
    assert.equal(result.stdout, `/metrics/job/a/x/1\t${(push.headers['location'] as string).replace('/metrics/job/a/x/1', '')}\n`);
    assert.equal(result.stderr, '/metrics/job/a/x\terror: odd number of components in label string "/x"\n');
  });

  it('prints the members and their shares', async () => {
    const result = await cli(['ring', ...nodes]);
    assert.equal(result.code, 0);
    const lines = result.stdout.trim().split('\n');
    assert.equal(lines.length, 2);
    assert.match(lines[0] as string, /^1\.1\.1\.1:9091\thttp:\/\/1\.1\.1\.1:9091\t\d+\.\d\d%$/);
  });

  it('exits 2 with a clear message on a bad flag or config', async () => {
    for (const args of [['--ring.vnodes=zero'], ['--mode=teleport'], ['--node', 'ftp://x:1'], ['--config.file=/nonexistent.yml'], ['--bogus']]) {
      const result = await cli(args);
      assert.equal(result.code, 2, args.join(' '));
      assert.match(result.stderr, /^pgw-director: .+\nRun "pgw-director --help" for the flags\.\n$/);
    }
  });
});
