import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import type { AddressInfo } from 'node:net';
import { delimiter, join } from 'node:path';
import { afterEach, describe, it } from 'node:test';

import { Registry } from 'prom-client';
import request from 'supertest';

import { parseNodeUrl } from '../../lib/core/node';
import { createLogger } from '../../lib/logger';
import { Placement } from '../../lib/placement';
import { type ReconcileOptions, type Reconciler, createReconcileMetrics } from '../../lib/reconcile';
import { type ProcessReconcilerOptions, childEnvironment, createProcessReconciler } from '../../lib/reconcile/process';
import { type TestDirector, LogSink, directorFromFlags } from '../support/director';
import { type FakePushgateway, startFakePushgateway } from '../support/fake-pushgateway';
import { SCHED_IDLE, childPids, freePort, isRunning, niceOfThreads, policyOfThreads } from '../support/processes';
import { until } from '../support/wait';

const MISBEHAVING = join(__dirname, '..', 'support', 'children', 'misbehaving-pass.js');
const BIN = join(__dirname, '..', '..', 'bin', 'pgw-director.js');
const LINUX = process.platform === 'linux';

const counter = async (registry: Registry, name: string): Promise<number> => (await registry.getSingleMetric(name)?.get())?.values[0]?.value ?? 0;

const withoutDuration = (report: object): object => ({ ...report, durationMs: 0 });

describe('reconciliation passes in a child process', () => {
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
    for (const reconcileIn of ['process', 'inline'] as const) {
      const { flags, drained, members } = await fleet(40);
      const director = directorFromFlags(flags, {}, { reconcileIn });
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
      assert.equal(gauge?.values.find((value) => value.labels['node'] === drained.id)?.value, 1, `${reconcileIn}: drained gauge`);
      const lines = director.log.lines.filter((line) => line['component'] === 'reconcile');
      assert.ok(lines.every((line) => line['name'] === 'pgw-director'), 'the child logs with the director\'s logger options');
      messages.push(lines.map((line) => String(line['msg'])).sort());
    }
    // The two fleets differ only in their ports, which the report does not hold except as node ids.
    const [child, inline] = reports as [Record<string, unknown>, Record<string, unknown>];
    assert.deepEqual({ ...child, drainedEmpty: [] }, { ...inline, drainedEmpty: [] });
    assert.deepEqual(counts[0], [40, 40, 1, 0]);
    assert.deepEqual(counts[0], counts[1]);
    assert.deepEqual(messages[0], messages[1]);
    assert.ok(messages[0]?.includes('reconciliation pass done'));
  });

  it('reads the tombstones in the director: a group deleted through the director is deleted from the drained node, not moved', async () => {
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

  describe('a child that fails is a failed pass, never a failed director', () => {
    afterEach(() => {
      delete process.env['PGW_SPEC_MISBEHAVE'];
    });
    const reconcilerFor = (how: string, extra: Partial<ProcessReconcilerOptions> = {}) => {
      const registry = new Registry();
      const metrics = createReconcileMetrics(registry);
      const log = new LogSink();
      const placement = new Placement({ vnodes: 10, hashKey: 'grouping-key' });
      const parsed = parseNodeUrl('http://127.0.0.1:9');
      assert.ok(parsed.ok);
      placement.update([parsed.node]);
      const reconciler = createProcessReconciler({
        placement,
        vnodes: 10,
        options: { migrate: false, drain: [], dryRun: false, ttlMs: undefined },
        client: { timeoutMs: 1000, authorization: undefined },
        logLevel: 'info',
        metrics,
        logger: createLogger('info', log),
        tombstones: undefined,
        childFile: MISBEHAVING,
        ...(how === 'hog' ? { maxHeapMb: 32 } : {}),
        ...extra,
      });
      process.env['PGW_SPEC_MISBEHAVE'] = how;
      return { reconciler, registry, log };
    };

    const prefix = '^the reconciliation pass failed in its process: ';
    const cases: { name: string; how: string; extra?: Partial<ProcessReconcilerOptions>; message: RegExp }[] = [
      { name: 'throws', how: 'throw', message: new RegExp(`${prefix}the pass process exited \\(code 1\\) before the pass ended: Error: the pass broke$`) },
      { name: 'reports a failure', how: 'fail', message: new RegExp(`${prefix}the pass broke$`) },
      { name: 'exits midway', how: 'exit', message: new RegExp(`${prefix}the pass process exited \\(code 3\\) before the pass ended$`) },
      { name: 'sends garbage', how: 'garbage', message: new RegExp(`${prefix}unexpected message \\{"type":"surprise"\\}$`) },
      { name: 'ends without a word', how: 'silent', message: new RegExp(`${prefix}the pass process exited \\(code 0\\) before the pass ended$`) },
      {
        name: 'outgrows --reconcile.max-heap',
        how: 'hog',
        message: new RegExp(`${prefix}it needed more memory than --reconcile\\.max-heap allows \\(JavaScript heap out of memory\\)$`),
      },
      {
        name: 'cannot be started (no such node binary, through nice)',
        how: 'sleep',
        extra: { execPath: '/nonexistent/node' },
        message: new RegExp(`${prefix}the pass process exited \\(code 127\\) before the pass ended: \\S*nice: .*/nonexistent/node.*No such file or directory`),
      },
      {
        name: 'cannot be started (no such node binary, no nice, chrt or setpriv)',
        how: 'sleep',
        extra: { execPath: '/nonexistent/node', niceCommand: 'pgw-spec-no-such-nice', chrtCommand: 'pgw-spec-no-such-chrt', setprivCommand: 'pgw-spec-no-such-setpriv' },
        message: new RegExp(`${prefix}it could not be started: spawn /nonexistent/node ENOENT$`),
      },
    ];
    for (const { name, how, extra, message } of cases) {
      it(`${name}: the pass rejects with one line and counts an error`, async () => {
        const { reconciler, registry, log } = reconcilerFor(how, extra);
        await assert.rejects(reconciler.pass(), (error: Error) => {
          assert.match(error.message, message);
          assert.ok(!error.message.includes('\n'), 'one line');
          return true;
        });
        assert.equal(await counter(registry, 'pgw_director_reconcile_errors_total'), 1);
        assert.equal(await counter(registry, 'pgw_director_reconcile_passes_total'), 1);
        if (how === 'exit') {
          // What the child reported before it died still counts and is logged.
          assert.equal(await counter(registry, 'pgw_director_reconcile_misplaced_groups_total'), 2);
          assert.deepEqual(log.lines.map((line) => line['msg']), ['half a pass']);
        }
      });
    }

    it('a pass asked to stop whose process does not (it gets no CPU) is ended after its bound, and no fresh process is started for it', { skip: !LINUX }, async () => {
      // Every process started runs through this wrapper, which counts it.
      const bin = mkdtempSync(join(tmpdir(), 'pgw-spec-node-'));
      const wrapper = join(bin, 'node');
      writeFileSync(wrapper, `#!/bin/sh\necho started >> '${join(bin, 'started')}'\nexec '${process.execPath}' "$@"\n`);
      chmodSync(wrapper, 0o755);
      try {
        const { reconciler, registry } = reconcilerFor('sleep', { execPath: wrapper, stopWaitMs: 200 });
        reconciler.prepare?.();
        await until(() => childPids(process.pid).length === 1, 'the prepared process runs', 20_000);
        const pid = childPids(process.pid)[0] as number;
        const stop = new AbortController();
        const passing = reconciler.pass(stop.signal);
        stop.abort();
        await assert.rejects(passing, /^Error: the reconciliation pass failed in its process: it did not stop within 0\.2s of being asked to$/);
        await until(() => !isRunning(pid), 'the pass process is ended', 5_000);
        assert.deepEqual(readFileSync(join(bin, 'started'), 'utf8').split('\n').filter(Boolean), ['started'], 'one process, the prepared one');
        assert.equal(await counter(registry, 'pgw_director_reconcile_errors_total'), 1);
      } finally {
        rmSync(bin, { recursive: true, force: true });
      }
    });
  });
});

/** startListing serves a drained node's listing of `groups` generated groups, calling `onList` as it starts. */
async function startListing(
  groups: number,
  onList: (req: http.IncomingMessage) => void,
  options: { hold?: boolean } = {},
): Promise<{ url: string; close(): void }> {
  const server = http.createServer((req, res) => {
    req.resume();
    if (req.url !== '/api/v1/metrics') {
      res.writeHead(202).end();
      return;
    }
    onList(req);
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.write('{"status":"success","data":[');
    // A held listing never ends: the pass waits on it until its reader goes away.
    if (options.hold === true) return;
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
  // A held listing stays open as long as its reader keeps it (Node's servers end a request after 300 s by default).
  server.requestTimeout = 0;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => {
      server.close();
      server.closeAllConnections();
    },
  };
}

/**
 * spawnDraining starts a director process with one member and one drained node serving an empty listing (`onList`
 * hears of each), and leaves `closers` to end them all.
 */
async function spawnDraining(
  closers: (() => Promise<void> | void)[],
  onList: (req: http.IncomingMessage) => void,
  listing: { hold?: boolean },
  flags: readonly string[],
): Promise<ChildProcess> {
  const drained = await startListing(0, onList, listing);
  closers.push(() => drained.close());
  const member = await startFakePushgateway();
  closers.push(() => member.stop());
  const port = await freePort();
  const director = spawn(process.execPath, [BIN, `--web.listen-address=127.0.0.1:${port}`, `--node=${member.url}`, `--reconcile.drain=${drained.url}`, ...flags], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  closers.push(() => void director.kill('SIGKILL'));
  return director;
}

/** drainingInto returns a placement of the member alone, and the pass options that drain `drainedUrl` into it. */
function drainingInto(memberUrl: string, drainedUrl: string): { placement: Placement; options: ReconcileOptions } {
  const placement = new Placement({ vnodes: 10, hashKey: 'grouping-key' });
  const member = parseNodeUrl(memberUrl);
  const drained = parseNodeUrl(drainedUrl);
  assert.ok(member.ok && drained.ok);
  placement.update([member.node]);
  return { placement, options: { migrate: false, drain: [drained.node], dryRun: false, ttlMs: undefined } };
}

/** Whether util-linux's chrt can put a process under the idle policy on this machine. */
const IDLE_POLICY_HERE = LINUX && spawnSync('chrt', ['--idle', '0', 'true']).status === 0;

/**
 * drainingReconciler is a process reconciler draining `drainedUrl` into `memberUrl` (see drainingInto), logging at
 * info into the LogSink it returns, its metrics into the Registry it returns.
 */
function drainingReconciler(
  memberUrl: string,
  drainedUrl: string,
  extra: Partial<ProcessReconcilerOptions> = {},
): { reconciler: Reconciler; log: LogSink; registry: Registry } {
  const log = new LogSink();
  const registry = new Registry();
  const { placement, options } = drainingInto(memberUrl, drainedUrl);
  const reconciler = createProcessReconciler({
    placement,
    vnodes: 10,
    options,
    client: { timeoutMs: 5000, authorization: undefined },
    logLevel: 'info',
    metrics: createReconcileMetrics(registry),
    logger: createLogger('info', log),
    tombstones: undefined,
    ...extra,
  });
  return { reconciler, log, registry };
}

/**
 * cmdlineOf reads a process's command line, or '' once it has ended. A pass process goes through an exec chain
 * (setpriv, chrt, nice, node), during which its command line reads empty for an instant: that is read again.
 */
function cmdlineOf(pid: number): string {
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmdline !== '') return cmdline;
    } catch {
      return ''; // it ended between the listing and the read
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
  }
  return '';
}

/** passChildren lists every pass process this process runs (the spec's director is in this process). */
const passChildren = (): number[] => childPids(process.pid).filter((pid) => cmdlineOf(pid).includes('child.js'));

/** passChild returns the one pass process this process runs. */
const passChild = (): number | undefined => passChildren()[0];

describe('the pass process as the director runs it', () => {
  const closers: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
    // The next case counts pass processes: none of this one's may still be ending.
    if (LINUX) await until(() => passChildren().length === 0, 'every pass process of the case has ended', 15_000);
  });

  it('runs every thread of the pass under the idle policy and 10 nice steps below the director, whose threads keep their priority; the process ends with the pass', { skip: !LINUX }, async () => {
    const before = niceOfThreads(process.pid);
    type Threads = { nice: number[]; policy: number[] };
    const threads = (pid: number | undefined): Threads => (pid === undefined ? { nice: [], policy: [] } : { nice: niceOfThreads(pid), policy: policyOfThreads(pid) });
    let during: { director: Threads; child: Threads; pid: number | undefined } = { director: threads(undefined), child: threads(undefined), pid: undefined };
    const drained = await startListing(10, () => {
      const pid = passChild();
      during = { director: threads(process.pid), child: threads(pid), pid };
    });
    closers.push(() => drained.close());
    const member = await startFakePushgateway();
    closers.push(() => member.stop());
    const director = directorFromFlags(['--node', member.url, `--reconcile.drain=${drained.url}`]);
    closers.push(() => director.close());
    director.discovery.start();
    const report = await director.reconciler.pass();
    assert.equal(report.migrated, 9 + 1);
    const base = Math.min(...before);
    assert.ok(before.every((nice) => nice === base), `director threads before the pass: ${before.join(' ')}`);
    assert.ok(during.director.nice.every((nice) => nice === base), `director threads during the pass: ${during.director.nice.join(' ')}`);
    assert.ok(during.director.policy.every((policy) => policy === 0), `director threads' policies: ${during.director.policy.join(' ')}`);
    // Node's main thread, V8's platform threads, libuv's: at least 5, every one idle and niced.
    assert.ok(during.child.nice.length >= 5, `pass threads: ${during.child.nice.join(' ')}`);
    assert.ok(during.child.nice.every((nice) => nice === Math.min(19, base + 10)), `pass threads during the pass: ${during.child.nice.join(' ')}`);
    // Where this machine refuses the idle policy (a sandbox), the pass runs niced only: the case below covers it.
    const expected = IDLE_POLICY_HERE ? SCHED_IDLE : 0;
    assert.ok(during.child.policy.length >= 5 && during.child.policy.every((policy) => policy === expected), `pass threads' policies: ${during.child.policy.join(' ')}`);
    const pid = during.pid as number;
    assert.match(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /--single-threaded-gc\0--max-old-space-size=256\0/);
    await until(() => !isRunning(pid), 'the pass process ends with its pass', 10_000);
  });

  it('without `nice` or `chrt` the pass still runs, at the director\'s priority, after one warning line', { skip: !LINUX }, async () => {
    let childNices: number[] = [];
    let childPolicies: number[] = [];
    // Read at the first pass's listing only: at a later one, the process of the pass before may still be ending,
    // with some of its threads gone.
    const drained = await startListing(3, () => {
      const pid = passChild();
      if (pid === undefined || childNices.length > 0) return;
      childNices = niceOfThreads(pid);
      childPolicies = policyOfThreads(pid);
    });
    closers.push(() => drained.close());
    const member = await startFakePushgateway();
    closers.push(() => member.stop());
    const { reconciler, log } = drainingReconciler(member.url, drained.url, { niceCommand: 'pgw-spec-no-such-nice', chrtCommand: 'pgw-spec-no-such-chrt' });
    assert.equal((await reconciler.pass()).migrated, 3);
    // The generated listing still offers the 3 groups: the owner's copies are newer now, and these are deleted.
    assert.deepEqual([(await reconciler.pass()).deleted, (await reconciler.pass()).errors], [3, 0]);
    const warnings = log.lines.filter((line) => String(line['msg']).startsWith('nice not found'));
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0]?.['level'], 40);
    const base = Math.min(...niceOfThreads(process.pid));
    assert.ok(childNices.length >= 5 && childNices.every((nice) => nice === base), `pass threads: ${childNices.join(' ')}`);
    assert.ok(childPolicies.length >= 5 && childPolicies.every((policy) => policy === 0), `pass threads' policies: ${childPolicies.join(' ')}`);
  });

  /**
   * watchedDraining returns a process reconciler draining 3 groups into a member, and `child`: the nice values and
   * scheduling policies of the pass process's threads, read as the pass asks for its listing.
   */
  const watchedDraining = async (
    extra: Partial<ProcessReconcilerOptions> = {},
  ): Promise<{ reconciler: Reconciler; log: LogSink; child: { nice: number[]; policy: number[] } }> => {
    const child = { nice: [] as number[], policy: [] as number[] };
    const drained = await startListing(3, () => {
      const pid = passChild();
      if (pid === undefined) return;
      child.nice = niceOfThreads(pid);
      child.policy = policyOfThreads(pid);
    });
    closers.push(() => drained.close());
    const member = await startFakePushgateway();
    closers.push(() => member.stop());
    return { ...drainingReconciler(member.url, drained.url, extra), child };
  };

  const unusableChrts = [
    {
      name: 'cannot set the idle policy (a sandbox refusing it)',
      // A chrt that fails as util-linux's does when sched_setscheduler is refused.
      script: "#!/bin/sh\necho \"chrt: failed to set pid 0's policy: Operation not permitted\" >&2\nexit 1\n",
      err: /^chrt: failed to set pid 0.s policy: Operation not permitted$/,
    },
    {
      name: 'succeeds without running its command (it prints garbage)',
      script: '#!/bin/sh\necho "garbage"\nexit 0\n',
      err: /^it did not report SCHED_IDLE: garbage$/,
    },
  ];
  for (const { name, script, err } of unusableChrts) {
    it(`where \`chrt\` ${name}, the pass runs niced under the normal policy, after one line saying so`, { skip: !LINUX }, async () => {
      const bin = mkdtempSync(join(tmpdir(), 'pgw-spec-chrt-'));
      closers.push(() => rmSync(bin, { recursive: true, force: true }));
      const chrt = join(bin, 'chrt');
      writeFileSync(chrt, script);
      chmodSync(chrt, 0o755);
      const { reconciler, log, child } = await watchedDraining({ chrtCommand: chrt });
      assert.equal((await reconciler.pass()).migrated, 3);
      assert.equal((await reconciler.pass()).deleted, 3);
      const lines = log.lines.filter((line) => String(line['msg']).startsWith('the idle scheduling policy is not available'));
      assert.equal(lines.length, 1);
      assert.match(String(lines[0]?.['err']), err);
      const base = Math.min(...niceOfThreads(process.pid));
      assert.ok(child.nice.length >= 1 && child.nice.every((nice) => nice === Math.min(19, base + 10)), `pass threads: ${child.nice.join(' ')}`);
      assert.ok(child.policy.every((policy) => policy === 0), `pass threads' policies: ${child.policy.join(' ')}`);
    });
  }

  it('a `chrt` that hangs and ignores SIGTERM holds the director\'s start 5 s at most: it listens, after one line saying passes run niced only', { skip: !LINUX }, async () => {
    const bin = mkdtempSync(join(tmpdir(), 'pgw-spec-chrt-'));
    closers.push(() => rmSync(bin, { recursive: true, force: true }));
    // Asked for the idle policy, it never answers, and SIGTERM (spawnSync's default end for a command past its timeout) does not end it.
    writeFileSync(join(bin, 'chrt'), "#!/bin/sh\ntrap '' TERM\nexec sleep 60\n");
    chmodSync(join(bin, 'chrt'), 0o755);
    const member = await startFakePushgateway();
    closers.push(() => member.stop());
    const port = await freePort();
    const director = spawn(process.execPath, [BIN, `--web.listen-address=127.0.0.1:${port}`, `--node=${member.url}`, '--reconcile.interval=0'], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, PATH: `${bin}${delimiter}${process.env['PATH'] ?? ''}` },
    });
    // The chrt first (on main it outlives the director by its minute), then the director.
    closers.push(() => {
      for (const pid of childPids(director.pid as number)) process.kill(pid, 'SIGKILL');
      director.kill('SIGKILL');
    });
    let output = '';
    director.stdout?.setEncoding('utf8').on('data', (text: string) => (output += text));
    await until(() => output.includes('"msg":"pgw-director listening"'), 'the director listens', 20_000);
    const lines = output.split('\n').filter((line) => line.includes('the idle scheduling policy is not available'));
    assert.equal(lines.length, 1);
    assert.match(lines[0] as string, /"err":"spawnSync \S+chrt ETIMEDOUT"/);
    assert.deepEqual(childPids(director.pid as number), [], 'the hung chrt is gone');
  });

  it('finds `nice` and `chrt` past directories of those names on PATH, as a shell does: the pass runs idle and niced', { skip: !LINUX }, async () => {
    const weird = mkdtempSync(join(tmpdir(), 'pgw-spec-path-'));
    closers.push(() => rmSync(weird, { recursive: true, force: true }));
    mkdirSync(join(weird, 'nice'));
    mkdirSync(join(weird, 'chrt'));
    const path = process.env['PATH'];
    process.env['PATH'] = `${weird}${delimiter}${path ?? ''}`;
    closers.push(() => void (process.env['PATH'] = path));
    const { reconciler, log, child } = await watchedDraining();
    process.env['PATH'] = path;
    assert.equal((await reconciler.pass()).migrated, 3);
    assert.deepEqual(log.lines.filter((line) => (line['level'] as number) >= 40), [], 'no warning');
    const base = Math.min(...niceOfThreads(process.pid));
    assert.ok(child.nice.length >= 5 && child.nice.every((nice) => nice === Math.min(19, base + 10)), `pass threads: ${child.nice.join(' ')}`);
    assert.ok(child.policy.every((policy) => policy === SCHED_IDLE), `pass threads' policies: ${child.policy.join(' ')}`);
  });

  it('a pass starved under the idle policy (a busy loop on its core) runs again niced only, under the normal policy, and finishes', { skip: !IDLE_POLICY_HERE }, async () => {
    // A loop at the normal policy on core 0, and the first pass process moved onto core 0 as soon as it runs node:
    // under the idle policy it then gets nothing, until it is ended and run again. (Moved only at its listing, it
    // could starve before it asked, wherever the other core was busy too: the suite runs two spec files at once.)
    // The pass processes of the cases before must be gone: the one moved onto core 0 must be this case's.
    await until(() => passChildren().length === 0, 'no pass process from the cases before', 15_000);
    const hog = spawn('taskset', ['-c', '0', 'sh', '-c', 'while :; do :; done'], { stdio: 'ignore' });
    closers.push(() => void hog.kill('SIGKILL'));
    const passes: { pid: number; policy: number[]; moved: number | null | undefined }[] = [];
    // Each pass process as it appears, once its exec chain (setpriv, chrt, nice) has reached node.
    const watch = setInterval(() => {
      for (const pid of passChildren()) {
        if (passes.some((seen) => seen.pid === pid) || !cmdlineOf(pid).startsWith(`${process.execPath}\0`)) continue;
        const moved = passes.length === 0 ? spawnSync('taskset', ['-a', '-p', '-c', '0', String(pid)]).status : undefined;
        passes.push({ pid, policy: policyOfThreads(pid), moved });
      }
    }, 10);
    closers.push(() => clearInterval(watch));
    const drained = await startListing(600, () => undefined);
    closers.push(() => drained.close());
    const member = await startFakePushgateway();
    closers.push(() => member.stop());
    const { reconciler, log } = drainingReconciler(member.url, drained.url, { starvation: { afterMs: 3000, checkMs: 250 } });
    const report = await reconciler.pass();
    assert.deepEqual([report.migrated, report.errors], [600, 0]);
    clearInterval(watch);
    assert.equal(passes.length, 2, 'the starved pass, then its second run');
    assert.equal(passes[0]?.moved, 0, 'the first pass process was moved onto core 0');
    assert.ok(passes[0] !== undefined && passes[0].policy.length >= 1 && passes[0].policy.every((policy) => policy === SCHED_IDLE), `first: ${passes[0]?.policy.join(' ')}`);
    assert.ok(passes[1] !== undefined && passes[1].policy.length >= 1 && passes[1].policy.every((policy) => policy === 0), `second: ${passes[1]?.policy.join(' ')}`);
    // Killed, it still needs a turn on its core to exit, which the loop gives it within seconds.
    await until(() => passChildren().length === 0, 'the starved process and the second one end', 15_000);
    const warnings = log.lines.filter((line) => String(line['msg']).startsWith('the pass got no CPU under the idle scheduling policy'));
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0]?.['level'], 40);
  });

  it('sends the node credentials over the IPC channel: never on the pass\'s command line or in its environment', { skip: !LINUX }, async () => {
    const authorization = 'Basic c3BlYy11c2VyOnNwZWMtc2VjcmV0LTQy';
    let seen: { cmdline: string; environ: string; header: string | undefined } | undefined;
    const drained = await startListing(3, (req) => {
      const pid = passChild();
      if (pid === undefined) return;
      seen = { cmdline: readFileSync(`/proc/${pid}/cmdline`, 'utf8'), environ: readFileSync(`/proc/${pid}/environ`, 'utf8'), header: req.headers.authorization };
    });
    closers.push(() => drained.close());
    const member = await startFakePushgateway();
    closers.push(() => member.stop());
    process.env['CONSUL_HTTP_TOKEN'] = 'spec-consul-token-42';
    closers.push(() => void delete process.env['CONSUL_HTTP_TOKEN']);
    const { placement, options } = drainingInto(member.url, drained.url);
    const log = new LogSink();
    const reconciler = createProcessReconciler({
      placement,
      vnodes: 10,
      options,
      client: { timeoutMs: 5000, authorization },
      logLevel: 'debug',
      metrics: createReconcileMetrics(new Registry()),
      logger: createLogger('debug', log),
      tombstones: undefined,
    });
    await reconciler.pass();
    assert.ok(seen !== undefined, 'the listing was asked for by the pass process');
    assert.equal(seen.header, authorization, 'the credentials reached the node');
    for (const secret of ['c3BlYy11c2VyOnNwZWMtc2VjcmV0LTQy', 'spec-consul-token-42']) {
      assert.ok(!seen.cmdline.includes(secret), 'not on the command line');
      assert.ok(!seen.environ.includes(secret), 'not in the environment');
      assert.ok(!log.raw.some((line) => line.includes(secret)), 'not logged');
    }
    assert.ok(seen.environ.includes('PATH='), 'the rest of the environment is there');
  });

  it('childEnvironment drops what may hold a secret and keeps the rest', () => {
    const env = { PATH: '/bin', CONSUL_HTTP_TOKEN: 't', AWS_SECRET_ACCESS_KEY: 's', PGW_PASSWORD: 'p', HTTP_AUTHORIZATION: 'a', NODE_EXTRA_CA_CERTS: '/ca.pem', TZ: 'UTC' };
    assert.deepEqual(childEnvironment(env), { PATH: '/bin', NODE_EXTRA_CA_CERTS: '/ca.pem', TZ: 'UTC' });
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
    await until(() => director.log.lines.filter((line) => line['msg'] === 'reconciliation pass failed').length >= 2, 'two failed passes', 90_000);
    const failure = director.log.lines.find((line) => line['msg'] === 'reconciliation pass failed') as { err: { message: string } };
    assert.match(failure.err.message, /^the reconciliation pass failed in its process: it needed more memory than --reconcile\.max-heap allows/);
    assert.ok(listings >= 2);
    assert.equal((await request(director.server).put('/metrics/job/after').send('m 1\n')).status, 307);
    assert.ok((await counter(director.metrics.registry, 'pgw_director_reconcile_errors_total')) >= 2);
  });

  it('pgw_director_reconcile_pass_start_time_seconds tells when the running pass started, and is 0 once it ended', async () => {
    const gauge = 'pgw_director_reconcile_pass_start_time_seconds';
    let listing: http.IncomingMessage | undefined;
    const drained = await startListing(0, (req) => (listing = req), { hold: true });
    closers.push(() => drained.close());
    const member = await startFakePushgateway();
    closers.push(() => member.stop());
    const before = Date.now() / 1000;
    const director = directorFromFlags(['--node', member.url, `--reconcile.drain=${drained.url}`, '--reconcile.interval=1h']);
    closers.push(() => director.close());
    assert.equal(await counter(director.metrics.registry, gauge), 0, 'no pass runs yet');
    await director.listen();
    await until(() => listing !== undefined, 'the pass asks the drained node for its listing', 30_000);
    const started = await counter(director.metrics.registry, gauge);
    assert.ok(started >= before && started <= Date.now() / 1000, `the pass started at ${started}, between ${before} and now`);
    // The drained node fails in the middle of its listing: the pass ends, with an error.
    listing?.socket.destroy();
    await until(async () => (await counter(director.metrics.registry, gauge)) === 0, 'the gauge is 0 once the pass ended', 30_000);
    assert.equal(await counter(director.metrics.registry, 'pgw_director_reconcile_passes_total'), 1);
  });

  /**
   * stoppedPass starts a director whose pass process gets no CPU. Under the idle policy on a machine whose cores are
   * busy with other work, a pass may go seconds to minutes without running, and never read a stop or see its channel
   * close; here it is stopped (SIGSTOP) as it asks for its listing.
   */
  const stoppedPass = async (): Promise<{ director: ChildProcess; pass: number }> => {
    let pass: number | undefined;
    const director: ChildProcess = await spawnDraining(
      closers,
      () => {
        pass = childPids(director.pid as number)[0];
        if (pass !== undefined) process.kill(pass, 'SIGSTOP');
      },
      {},
      ['--reconcile.interval=1h'],
    );
    closers.push(() => void (pass !== undefined && isRunning(pass) && process.kill(pass, 'SIGKILL')));
    await until(() => pass !== undefined, 'the pass asks the drained node for its listing', 30_000);
    return { director, pass: pass as number };
  };

  it('a director asked to stop (SIGTERM) while its pass gets no CPU ends the pass process and exits within seconds', { skip: !LINUX }, async () => {
    const { director, pass } = await stoppedPass();
    const exited = new Promise<number | null>((resolve) => director.once('exit', (code) => resolve(code)));
    director.kill('SIGTERM');
    let code: number | null | undefined;
    void exited.then((value) => (code = value));
    // The director's own bound on shutting down is 30 s, after which it exits anyway, leaving the pass behind.
    await until(() => code !== undefined, 'the director exits', 20_000);
    assert.equal(code, 0);
    await until(() => !isRunning(pass), 'the pass process is ended', 5_000);
  });

  it('a director killed with SIGKILL while its pass gets no CPU leaves no pass process behind: the kernel ends it', { skip: !LINUX }, async () => {
    // The pass process would exit when it sees its channel close, but one that gets no core (here: stopped) never does.
    const { director, pass } = await stoppedPass();
    director.kill('SIGKILL');
    await until(() => !isRunning(pass), 'the pass process is ended with its director', 5_000);
  });

  it('a director killed with SIGKILL leaves no pass running against the nodes: the pass process exits with its channel', { skip: !LINUX }, async () => {
    let listing: http.IncomingMessage | undefined;
    // --proxy.timeout=1h: left alone, the pass would wait on the held listing for an hour.
    const director = await spawnDraining(closers, (req) => (listing = req), { hold: true }, ['--reconcile.interval=1h', '--proxy.timeout=1h']);
    await until(() => listing !== undefined, 'the pass asks the drained node for its listing', 30_000);
    const pid = childPids(director.pid as number)[0];
    assert.ok(pid !== undefined && isRunning(pid), 'the pass runs in a child of the director');
    let closed = false;
    listing?.socket.once('close', () => (closed = true));
    director.kill('SIGKILL');
    // An orphaned pass would hold the listing open for the hour of --proxy.timeout.
    await until(() => closed, 'the pass lets go of the listing', 20_000);
    await until(() => !isRunning(pid), 'the pass process exits', 10_000);
  });
});

describe('the pass process started ahead of its pass (prepare)', { skip: !LINUX }, () => {
  const closers: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
    // The next case counts pass processes: none of this one's may still be ending.
    if (LINUX) await until(() => passChildren().length === 0, 'every pass process of the case has ended', 15_000);
  });

  /** preparedFleet is a reconciler over one member and a drained node of 3 groups, recording the pass processes seen at each listing. */
  const preparedFleet = async (extra: Partial<ProcessReconcilerOptions> = {}) => {
    const seen: number[][] = [];
    const drained = await startListing(3, () => seen.push(passChildren()));
    closers.push(() => drained.close());
    const member = await startFakePushgateway();
    closers.push(() => member.stop());
    const { reconciler, registry } = drainingReconciler(member.url, drained.url, extra);
    closers.push(() => reconciler.close?.());
    return { reconciler, seen, registry };
  };

  /** preparedPid waits for the one pass process prepare() started. */
  const preparedPid = async (): Promise<number> => {
    // Read once: while the process goes through its exec chain (setpriv, chrt, nice, node) its cmdline may be
    // unreadable for an instant, and a second listing could miss it.
    let pid: number | undefined;
    await until(() => {
      const pids = passChildren();
      pid = pids.length === 1 ? pids[0] : undefined;
      return pid !== undefined;
    }, 'the prepared pass process is running', 20_000);
    return pid as number;
  };

  it('the next pass runs in the prepared process: one process, not two', async () => {
    const { reconciler, seen } = await preparedFleet();
    reconciler.prepare?.();
    const pid = await preparedPid();
    assert.equal((await reconciler.pass()).migrated, 3);
    assert.deepEqual(seen, [[pid]], 'the pass listed from the prepared process, and no other ran');
    await until(() => !isRunning(pid), 'the prepared process ends with its pass', 10_000);
    // prepare() on a live prepared process starts no second one.
    reconciler.prepare?.();
    reconciler.prepare?.();
    const next = await preparedPid();
    assert.notEqual(next, pid);
    assert.deepEqual(passChildren(), [next]);
  });

  for (const when of ['after its end was seen', 'before its end can be seen']) {
    it(`a prepared process that died is replaced by a fresh one (killed, the pass starting ${when})`, async () => {
      const { reconciler, seen, registry } = await preparedFleet();
      reconciler.prepare?.();
      const pid = await preparedPid();
      process.kill(pid, 'SIGKILL');
      if (when === 'after its end was seen') await until(() => !isRunning(pid), 'the prepared process is gone', 10_000);
      const report = await reconciler.pass();
      assert.deepEqual([report.migrated, report.errors], [3, 0]);
      assert.equal(seen.length, 1);
      assert.equal(seen[0]?.length, 1);
      assert.notEqual(seen[0]?.[0], pid, 'the pass ran in a fresh process');
      assert.equal(await counter(registry, 'pgw_director_reconcile_errors_total'), 0);
    });
  }

  it('a prepared process given no pass exits on its own after its bound, and the next pass starts a fresh one', async () => {
    const { reconciler, seen } = await preparedFleet({ setupWaitMs: 300 });
    const started = Date.now();
    reconciler.prepare?.();
    const pid = await preparedPid();
    await until(() => !isRunning(pid), 'the prepared process exits without its setup', 15_000);
    assert.ok(Date.now() - started >= 300, 'not before its bound');
    assert.equal((await reconciler.pass()).migrated, 3);
    assert.notEqual(seen[0]?.[0], pid);
  });

  it('the director prepares the next pass its lead before the pass, the pass uses it, and shutting down ends a prepared one', async () => {
    const listings: number[][] = [];
    const drained = await startListing(0, () => listings.push(passChildren()));
    closers.push(() => drained.close());
    const member = await startFakePushgateway();
    closers.push(() => member.stop());
    // A pass every 2 s: each pass's process starts 1 s before it (half the interval).
    const director = directorFromFlags(['--node', member.url, `--reconcile.drain=${drained.url}`, '--reconcile.interval=2s']);
    closers.push(() => director.close());
    await director.listen();
    await until(() => listings.length === 1, 'the first pass lists the drained node', 20_000);
    const first = listings[0]?.[0];
    await until(() => passChildren().some((pid) => pid !== first), 'the next pass process is started', 20_000);
    assert.equal(listings.length, 1, 'started before its pass lists anything');
    const prepared = passChildren().find((pid) => pid !== first) as number;
    await until(() => listings.length === 2, 'the second pass lists the drained node', 20_000);
    assert.deepEqual(listings[1], [prepared], 'the second pass ran in the prepared process, alone');
    // The third pass's process: shut down while it waits, it ends with the director (not after its minute).
    await until(() => passChildren().some((pid) => pid !== prepared && pid !== first), 'the third pass process is started', 20_000);
    const third = passChildren().find((pid) => pid !== prepared && pid !== first) as number;
    const passes = listings.length;
    await director.close();
    assert.equal(listings.length, passes);
    await until(() => !isRunning(third), 'the prepared process ends with the director', 5_000);
  });

  it('a director killed with SIGKILL leaves no prepared process behind', async () => {
    let listings = 0;
    const director = await spawnDraining(closers, () => listings++, {}, ['--reconcile.interval=4s', '--node.health-interval=0']);
    await until(() => listings === 1, 'the first pass lists the drained node', 30_000);
    // The first pass's process exits with its pass; the next one is started 2 s before the next pass.
    await until(() => listings === 1 && childPids(director.pid as number).length === 0, 'the first pass process ends', 10_000);
    await until(() => childPids(director.pid as number).length === 1, 'the next pass process is prepared', 10_000);
    const pid = childPids(director.pid as number)[0] as number;
    director.kill('SIGKILL');
    assert.equal(listings, 1, 'killed while its process waited for the pass');
    await until(() => !isRunning(pid), 'the prepared process exits with its channel', 10_000);
  });
});
