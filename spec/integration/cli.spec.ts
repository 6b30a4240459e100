/**
 * The command line as an operator meets it: help and version, refused arguments, one-shot commands that print
 * their report on stdout and log on stderr, and a server that exits when it cannot listen.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { parseGroupingKey } from '../../lib/core/grouping-key';
import { Placement } from '../../lib/placement';
import { tombstoneKey } from '../../lib/tombstones/consul';
import { type Backend, startBackend } from '../support/backend';
import { type ConsulDouble, startConsulDouble } from '../support/consul-double';

const BIN = join(__dirname, '..', '..', 'bin', 'pgw-director.js');

function cli(args: string[], timeoutMs = 30_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: timeoutMs }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : Number((error as { code?: number }).code ?? 1), stdout, stderr });
    });
  });
}

const USAGE_TAIL = /\nRun "pgw-director --help" for the flags\.\n$/;

describe('pgw-director help, version and refused arguments', () => {
  it('prints the help for -h and --help on stdout, exit 0', async () => {
    for (const flag of ['-h', '--help']) {
      const result = await cli([flag]);
      assert.equal(result.code, 0);
      assert.match(result.stdout, /^usage: pgw-director \[flags\] +serve pushes\n/);
      assert.match(result.stdout, /\n {2}-h, --help\n/);
      assert.match(result.stdout, /--node\.basic-auth\.username=VALUE/);
      assert.equal(result.stderr, '');
    }
  });

  it('prints the version on stdout, exit 0', async () => {
    const result = await cli(['--version']);
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^pgw-director \d+\.\d+\.\d+ \(node v\d+\.\d+\.\d+\)\n$/);
  });

  const refused: [string, string[], RegExp][] = [
    ['extra arguments to ring', ['ring', 'extra', '--node=http://127.0.0.1:9'], /^pgw-director: ring takes no arguments; got "extra"/],
    ['an argument to the server', ['serve', '--node=http://127.0.0.1:9'], /^pgw-director: unknown command "serve"/],
    ['a mistyped flag, with the nearest one', ['--web.listen-adress=:1'], /^pgw-director: unknown flag --web.listen-adress \(did you mean --web.listen-address\?\)/],
    ['Consul flags without --consul.address', ['--consul.service=pgw'], /^pgw-director: --consul.service needs --consul.address/],
    ['reconcile under --hash.key=path', ['reconcile', '--hash.key=path', '--node=http://127.0.0.1:9'], /reconcile needs --hash.key=grouping-key/],
    ['a drain of a node still in the node list', ['reconcile', '--node=http://127.0.0.1:9', '--reconcile.drain=http://127.0.0.1:9'], /is also a --node/],
  ];
  for (const [name, args, message] of refused) {
    it(`refuses ${name} with exit 2`, async () => {
      const result = await cli(args);
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, message);
      assert.match(result.stderr, USAGE_TAIL);
      assert.equal(result.stdout, '');
    });
  }

  it('looks up a whole push URL as its path', async () => {
    const nodes = ['--node', 'http://127.0.0.1:9091', '--node', 'http://127.0.0.2:9091'];
    const byPath = await cli(['lookup', ...nodes, '/metrics/job/a/x/1']);
    const byUrl = await cli(['lookup', ...nodes, 'http://director:9292/metrics/job/a/x/1']);
    assert.equal(byUrl.code, 0, byUrl.stderr);
    assert.equal(byUrl.stdout.split('\t')[1], byPath.stdout.split('\t')[1]);
    assert.match(byUrl.stdout, /^http:\/\/director:9292\/metrics\/job\/a\/x\/1\thttp:\/\/127\.0\.0\.[12]:9091\n$/);
  });
});

describe('pgw-director reconcile', () => {
  let owner: Backend;
  let holder: Backend;
  let job = '';

  before(async () => {
    // `holder` holds one group that `owner` owns on the ring of the two: a misplaced copy.
    owner = await startBackend((req, res) => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ status: 'success', data: [] })));
    holder = await startBackend((req, res) => {
      if (req.method !== 'GET') return res.writeHead(202).end();
      const group = { labels: { job }, push_time_seconds: { metrics: [{ value: '1700000000' }] }, last_push_successful: true };
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ status: 'success', data: [group] }));
    });
    const placement = new Placement({ vnodes: 500, hashKey: 'grouping-key' });
    placement.update([
      { id: `127.0.0.1:${owner.port}`, url: owner.url },
      { id: `127.0.0.1:${holder.port}`, url: holder.url },
    ]);
    for (let i = 0; job === ''; i++) {
      const parsed = parseGroupingKey(`/metrics/job/j${i}`);
      assert.ok(parsed.ok);
      if (placement.owner(parsed.key, parsed.path)?.url === owner.url) job = `j${i}`;
    }
  });
  after(async () => {
    await owner.close();
    await holder.close();
  });

  it('prints one JSON report on stdout, marked as a dry run, logs "would migrate" on stderr, and changes nothing', async () => {
    const result = await cli(['reconcile', '--node', owner.url, '--node', holder.url, '--reconcile.migrate', '--reconcile.dry-run']);
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stdout.split('\n');
    assert.equal(lines.length, 2, `stdout holds more than the report: ${result.stdout}`);
    const report = JSON.parse(lines[0] as string) as { dryRun: boolean; misplaced: number; migrated: number };
    assert.deepEqual([report.dryRun, report.misplaced, report.migrated], [true, 1, 1]);
    assert.match(result.stderr, /"msg":"would migrate the group to its owner"/);
    assert.match(result.stderr, /"msg":"reconciliation pass done \(dry run: nothing changed\)"/);
    assert.doesNotMatch(result.stderr, /"msg":"migrating/);
    assert.deepEqual([...owner.received, ...holder.received].map((r) => r.method).filter((m) => m !== 'GET'), []);
  });

  it('says which node is unreachable and why, exit 1', async () => {
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const result = await cli(['reconcile', '--node', owner.url, '--node', `http://127.0.0.1:${port}`]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, new RegExp(`"err":"pushgateway \\\\"127.0.0.1:${port}\\\\" unreachable: ECONNREFUSED"`));
    assert.deepEqual((JSON.parse(result.stdout) as { skipped: string[] }).skipped, [`127.0.0.1:${port}`]);
  });

  it('marks a real run as not dry', async () => {
    const result = await cli(['reconcile', '--node', owner.url, '--node', holder.url, '--log.level=error']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal((JSON.parse(result.stdout) as { dryRun: boolean }).dryRun, false);
    assert.equal(result.stderr, '');
  });
});

describe('pgw-director with Consul', () => {
  let consul: ConsulDouble;
  before(async () => {
    consul = await startConsulDouble();
  });
  after(async () => {
    await consul.stop();
  });

  it('says the ring is empty when Consul lists no healthy Pushgateway, exit 1', async () => {
    const result = await cli(['ring', `--consul.address=${consul.address}`, '--consul.service=nothing-here']);
    assert.equal(result.code, 1);
    assert.equal(result.stdout, '');
    assert.equal(result.stderr, 'pgw-director: no pushgateway nodes available\n');
  });

  it('refuses to drain a node Consul still lists, exit 2', async () => {
    consul.add({ id: 'a', port: 9101 });
    const result = await cli(['reconcile', `--consul.address=${consul.address}`, '--reconcile.drain=http://127.0.0.1:9101']);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /--reconcile.drain=http:\/\/127.0.0.1:9101 is still on the ring: take it out of discovery first/);
  });

  it('exits 1 when it cannot listen, before asking Consul anything', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as net.AddressInfo).port;
    const asked = consul.requests.length;
    try {
      const result = await cli([`--consul.address=${consul.address}`, `--web.listen-address=127.0.0.1:${port}`], 15_000);
      assert.equal(result.code, 1, 'the director did not exit 1 by itself');
      assert.match(result.stdout, /"msg":"cannot listen"/);
      assert.match(result.stdout, /"err":"listen EADDRINUSE: address already in use 127\.0\.0\.1:\d+"/);
      assert.doesNotMatch(result.stdout, /"stack"|\n +at /, 'a port in use is reported without a stack trace');
      assert.doesNotMatch(result.stdout, /ring changed/);
      assert.equal(consul.requests.length, asked, 'the director asked Consul before it could listen');
    } finally {
      taken.close();
    }
  });

  it('reconcile reads the tombstones the replicas share: a copy older than its group\'s deletion is deleted, never migrated', async () => {
    // One node holds an old copy of a group a replica deleted while that node was away; the tombstone is in KV.
    const labels = { job: 'deleted-while-away' };
    const holder = await startBackend((req, res) => {
      if (req.method !== 'GET') return res.writeHead(202).end();
      const group = { labels, push_time_seconds: { metrics: [{ value: '1700000000' }] }, last_push_successful: true };
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ status: 'success', data: [group] }));
    });
    const other = await startBackend((req, res) => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ status: 'success', data: [] })));
    try {
      consul.add({ id: 'holder', name: 'tombstoned', port: holder.port });
      consul.add({ id: 'other', name: 'tombstoned', port: other.port });
      const key = tombstoneKey('pgw-director/', labels);
      const put = await fetch(`http://${consul.address}/v1/kv/${key}`, { method: 'PUT', body: JSON.stringify({ labels, deleted_at: Date.now() / 1000 }) });
      assert.equal(await put.text(), 'true');
      const result = await cli(['reconcile', `--consul.address=${consul.address}`, '--consul.service=tombstoned', '--reconcile.migrate']);
      assert.equal(result.code, 0, result.stderr);
      assert.equal((JSON.parse(result.stdout) as { tombstoned: number }).tombstoned, 1);
      assert.deepEqual(holder.received.filter((r) => r.method === 'DELETE').map((r) => r.url), ['/metrics/job@base64/ZGVsZXRlZC13aGlsZS1hd2F5']);
      assert.deepEqual(other.received.filter((r) => r.method !== 'GET'), [], 'the deleted group was pushed somewhere');
    } finally {
      consul.remove('holder');
      consul.remove('other');
      await holder.close();
      await other.close();
    }
  });

  it('says there is no ring yet when Consul never answers, on stderr, exit 1', async () => {
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const result = await cli(['ring', `--consul.address=127.0.0.1:${port}`]);
    assert.equal(result.code, 1);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /consul unreachable: ECONNREFUSED; no ring yet, retrying/);
    assert.doesNotMatch(result.stderr, /last good ring/);
    assert.match(result.stderr, /pgw-director: no pushgateway nodes available \(waiting for consul\)\n$/);
  });
});
