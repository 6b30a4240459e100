import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';

import { Registry } from 'prom-client';
import request from 'supertest';

import { parseNodeUrl } from '../../lib/core/node';
import { createLogger } from '../../lib/logger';
import { Placement } from '../../lib/placement';
import { createReconcileMetrics } from '../../lib/reconcile';
import { createThreadedReconciler } from '../../lib/reconcile/thread';
import { type TestDirector, LogSink, directorFromFlags } from '../support/director';
import { type FakePushgateway, startFakePushgateway } from '../support/fake-pushgateway';
import { until } from '../support/wait';

const MISBEHAVING = join(__dirname, '..', 'support', 'workers', 'misbehaving.js');

const counter = async (registry: Registry, name: string): Promise<number> => (await registry.getSingleMetric(name)?.get())?.values[0]?.value ?? 0;

const withoutDuration = (report: object): object => ({ ...report, durationMs: 0 });

describe('reconciliation passes in a worker thread', () => {
  const pgws: FakePushgateway[] = [];
  const directors: TestDirector[] = [];
  afterEach(async () => {
    for (const director of directors.splice(0)) await director.close();
    await Promise.all(pgws.splice(0).map((pgw) => pgw.stop()));
  });

  /** fleet starts two ring members and one node to drain holding `groups` groups, pushed a minute ago. */
  const fleet = async (groups: number): Promise<{ flags: string[]; drained: FakePushgateway; members: FakePushgateway[] }> => {
    const started = await Promise.all([1, 2, 3].map(() => startFakePushgateway()));
    pgws.push(...started);
    const [a, b, drained] = started as [FakePushgateway, FakePushgateway, FakePushgateway];
    for (let i = 0; i < groups; i++) drained.push({ job: `j${i}`, instance: `i${i}` }, { m: i }, Date.now() / 1000 - 60);
    return { flags: ['--node', a.url, '--node', b.url, `--reconcile.drain=${drained.url}`], drained, members: [a, b] };
  };

  it('reports, counts and logs a pass exactly as a pass on the main thread does', async () => {
    const reports: object[] = [];
    const counts: number[][] = [];
    const messages: string[][] = [];
    for (const reconcileThread of ['worker', 'inline'] as const) {
      const { flags, drained, members } = await fleet(40);
      const director = directorFromFlags(flags, {}, { reconcileThread });
      directors.push(director);
      director.discovery.start();
      const report = await director.reconciler.pass();
      assert.equal(report.migrated, 40);
      assert.deepEqual(report.drainedEmpty, [drained.id]);
      assert.equal(drained.groups.size, 0);
      assert.equal(members.reduce((sum, pgw) => sum + pgw.groups.size, 0), 40);
      reports.push(withoutDuration(report));
      const registry = director.metrics.registry;
      counts.push(
        await Promise.all(
          ['migrated_groups_total', 'misplaced_groups_total', 'passes_total', 'errors_total'].map((name) => counter(registry, `pgw_director_reconcile_${name}`)),
        ),
      );
      const gauge = await registry.getSingleMetric('pgw_director_reconcile_drained_node_empty')?.get();
      assert.equal(gauge?.values.find((value) => value.labels['node'] === drained.id)?.value, 1, `${reconcileThread}: drained gauge`);
      const lines = director.log.lines.filter((line) => line['component'] === 'reconcile');
      assert.ok(lines.every((line) => line['name'] === 'pgw-director'), 'the worker logs with the director\'s logger options');
      messages.push(lines.map((line) => String(line['msg'])).sort());
    }
    // The two fleets differ only in their ports, which the report does not hold except as node ids.
    const [worker, inline] = reports as [Record<string, unknown>, Record<string, unknown>];
    assert.deepEqual({ ...worker, drainedEmpty: [] }, { ...inline, drainedEmpty: [] });
    assert.deepEqual(counts[0], [40, 40, 1, 0]);
    assert.deepEqual(counts[0], counts[1]);
    assert.deepEqual(messages[0], messages[1]);
    assert.ok(messages[0]?.includes('reconciliation pass done'));
  });

  it('reads the tombstones on the main thread: a group deleted through the director is deleted from the drained node, not moved', async () => {
    const { flags, drained, members } = await fleet(3);
    const director = directorFromFlags([...flags, '--reconcile.migrate'], {});
    directors.push(director);
    director.discovery.start();
    // Recorded as deleted now: the drained copies, pushed a minute ago, are older.
    await director.tombstones?.record({ job: 'j1', instance: 'i1' }, Date.now() / 1000);
    const report = await director.reconciler.pass();
    assert.equal(report.tombstoned, 1);
    assert.equal(report.migrated, 2);
    assert.equal(drained.groups.size, 0);
    assert.ok(!members.some((pgw) => pgw.has({ job: 'j1', instance: 'i1' })));
  });

  describe('a worker that fails is a failed pass, never a failed process', () => {
    afterEach(() => {
      delete process.env['PGW_SPEC_MISBEHAVE'];
    });
    const threaded = (how: string, extra: { tombstones?: { read(now: number): Promise<ReadonlyMap<string, number>> } } = {}) => {
      const registry = new Registry();
      const metrics = createReconcileMetrics(registry);
      const log = new LogSink();
      const placement = new Placement({ vnodes: 10, hashKey: 'grouping-key' });
      const parsed = parseNodeUrl('http://127.0.0.1:9');
      assert.ok(parsed.ok);
      placement.update([parsed.node]);
      const reconciler = createThreadedReconciler({
        placement,
        vnodes: 10,
        options: { migrate: false, drain: [], dryRun: false, ttlMs: undefined },
        client: { timeoutMs: 1000, authorization: undefined },
        logLevel: 'info',
        metrics,
        logger: createLogger('info', log),
        tombstones: extra.tombstones,
        workerFile: MISBEHAVING,
        ...(how === 'hog' ? { resourceLimits: { maxOldGenerationSizeMb: 32 } } : {}),
      });
      process.env['PGW_SPEC_MISBEHAVE'] = how;
      return { reconciler, registry, log };
    };

    const cases: { how: string; message: RegExp }[] = [
      { how: 'throw', message: /^the reconciliation pass failed in its worker thread: the worker broke$/ },
      { how: 'exit', message: /^the reconciliation pass failed in its worker thread: the worker exited \(code 3\) before the pass ended$/ },
      { how: 'garbage', message: /^the reconciliation pass failed in its worker thread: unexpected message \{"type":"surprise"\}$/ },
      { how: 'silent', message: /^the reconciliation pass failed in its worker thread: the worker exited \(code 0\) before the pass ended$/ },
      { how: 'hog', message: /^the reconciliation pass failed in its worker thread: it needed more memory than --reconcile\.max-heap allows/ },
    ];
    for (const { how, message } of cases) {
      it(`${how}: the pass rejects with one line and counts an error`, async () => {
        const { reconciler, registry, log } = threaded(how);
        await assert.rejects(reconciler.pass(), (error: Error) => {
          assert.match(error.message, message);
          assert.ok(!error.message.includes('\n'), 'one line');
          return true;
        });
        assert.equal(await counter(registry, 'pgw_director_reconcile_errors_total'), 1);
        assert.equal(await counter(registry, 'pgw_director_reconcile_passes_total'), 1);
        if (how === 'exit') {
          // What the worker reported before it died still counts and is logged.
          assert.equal(await counter(registry, 'pgw_director_reconcile_misplaced_groups_total'), 2);
          assert.deepEqual(log.lines.map((line) => line['msg']), ['half a pass']);
        }
      });
    }
  });
});

/** niceOfThreads reads the nice value of every thread of this process (Linux: field 19 of /proc/self/task/<tid>/stat). */
function niceOfThreads(): number[] {
  return readdirSync('/proc/self/task').map((tid) => {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses: count fields after its closing one.
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
  });
}

/** startListing serves a drained node's listing of `groups` generated groups, calling `onList` as it starts. */
async function startListing(groups: number, onList: () => void): Promise<{ url: string; close(): void }> {
  const server = http.createServer((req, res) => {
    req.resume();
    if (req.url !== '/api/v1/metrics') {
      res.writeHead(202).end();
      return;
    }
    onList();
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.write('{"status":"success","data":[');
    let i = 0;
    const more = (): void => {
      let chunk = '';
      for (let n = 0; n < 500 && i < groups; n++, i++) {
        chunk += `${i === 0 ? '' : ','}{"labels":{"job":"j${i}","instance":"host-${i}.example"},"last_push_successful":true,"m":{"time_stamp":"2026-01-01T00:00:00Z","type":"GAUGE","help":"h","metrics":[{"labels":{"instance":"host-${i}.example","job":"j${i}"},"value":"${i}"}]},"push_time_seconds":{"time_stamp":"2026-01-01T00:00:00Z","type":"GAUGE","help":"h","metrics":[{"labels":{"instance":"host-${i}.example","job":"j${i}"},"value":"1767225600"}]}}`;
      }
      if (i >= groups) res.end(`${chunk}]}`);
      else if (res.write(chunk)) setImmediate(more);
      else res.once('drain', more);
    };
    more();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => {
      server.close();
      server.closeAllConnections();
    },
  };
}

describe('the pass thread as the director runs it', () => {
  const closers: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
  });

  it('runs 10 nice steps below the process (Linux), while the push thread keeps its priority', { skip: process.platform !== 'linux' }, async () => {
    const before = niceOfThreads();
    let during: number[] = [];
    const drained = await startListing(10, () => {
      during = niceOfThreads();
    });
    closers.push(() => drained.close());
    const member = await startFakePushgateway();
    closers.push(() => member.stop());
    const director = directorFromFlags(['--node', member.url, `--reconcile.drain=${drained.url}`]);
    closers.push(() => director.close());
    director.discovery.start();
    await director.reconciler.pass();
    const base = Math.min(...before);
    assert.ok(before.every((nice) => nice === base), `threads before the pass: ${before.join(' ')}`);
    assert.deepEqual(during.filter((nice) => nice !== base), [Math.min(19, base + 10)], `threads during the pass: ${during.join(' ')}`);
  });

  it('a pass that outgrows --reconcile.max-heap fails with one log line, and the director goes on answering pushes and passing', async () => {
    let listings = 0;
    const drained = await startListing(150_000, () => listings++);
    closers.push(() => drained.close());
    const member = await startFakePushgateway();
    closers.push(() => member.stop());
    const director = directorFromFlags(['--node', member.url, `--reconcile.drain=${drained.url}`, '--reconcile.max-heap=32MiB', '--reconcile.interval=100ms']);
    closers.push(() => director.close());
    await director.listen();
    await until(() => director.log.lines.filter((line) => line['msg'] === 'reconciliation pass failed').length >= 2, 'two failed passes', 60_000);
    const failure = director.log.lines.find((line) => line['msg'] === 'reconciliation pass failed') as { err: { message: string } };
    assert.match(failure.err.message, /^the reconciliation pass failed in its worker thread: it needed more memory than --reconcile\.max-heap allows/);
    assert.ok(listings >= 2);
    assert.equal((await request(director.server).put('/metrics/job/after').send('m 1\n')).status, 307);
    assert.ok((await counter(director.metrics.registry, 'pgw_director_reconcile_errors_total')) >= 2);
  });
});
