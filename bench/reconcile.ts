/**
 * `npm run bench reconcile`: one reconciliation pass at scale, while the director serves pushes.
 *   - 3 real Pushgateways (in memory), filled through concurrent keep-alive PUTs with 10,000 groups each (5 metric
 *     families per group), each group on its owner under a 3-node ring;
 *   - a director (child process, redirect mode) whose ring holds only the first two nodes, the third named by
 *     --reconcile.drain: a third of the groups are misplaced and the pass migrates them (copy, check, delete);
 *   - pushes through the director at a steady rate meanwhile, from another child process;
 *   - the pass's process started ahead of the pass as the director's scheduler starts it (Director.preparePass, the
 *     scheduler's lead for the default interval: 2 s), after a quiet window of 3 s.
 * Prints the fill time, the pass duration, the director's RSS growth, the push latency during the pass and the
 * largest event-loop delay in the director during the pass, against the targets of the issue; then what the kernel's
 * scheduler did with every thread meanwhile (bench/sched.ts), over the pass and 500 ms by 500 ms.
 */
import { type ChildProcess, execFileSync, fork, spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import http from 'node:http';
import { cpus, loadavg, setPriority } from 'node:os';
import { join } from 'node:path';

import { groupKeyOf } from '../lib/core/group';
import { type Node, parseNodeUrl } from '../lib/core/node';
import { Placement } from '../lib/placement';
import { type Pushgateway, startPushgateway } from '../spec/support/pushgateway';
import { childPids, freePort, rssBytes } from '../spec/support/processes';
import { type ThreadStat, type Usage, machineBusyNs, readThreads, usageBetween } from './sched';

const GROUPS_PER_NODE = Number(process.env['BENCH_GROUPS'] ?? 10_000);
const PUSH_RATE = Number(process.env['BENCH_PUSH_RATE'] ?? 1000);
const PASS_TIMEOUT_S = Number(process.env['BENCH_PASS_TIMEOUT_S'] ?? 240);
const FILL_CONCURRENCY = 64;
/**
 * BENCH_PIN=1 pins the director to the last CPU and the Pushgateways and the load generator to the others (Linux,
 * taskset, 2 CPUs or more): in production they run on other machines, here they would compete with the director for
 * the same cores. The director then has one core for everything it does, pushes and pass alike.
 */
const PIN = process.env['BENCH_PIN'] === '1' && cpus().length >= 2;

/** pin sets the CPU affinity of every thread of a process (threads started later inherit it). */
function pin(pid: number | undefined, cpuList: string): void {
  if (pid === undefined) return;
  execFileSync('taskset', ['-a', '-c', '-p', cpuList, String(pid)], { stdio: 'ignore' });
}
const LAST_CPU = String(cpus().length - 1);
/**
 * BENCH_RECONCILE_NODE_NICE (a nice value, 0 by default) lowers the Pushgateways' CPU priority. They stand for other
 * machines; here, listing 17 MiB and taking 10,000 moved groups each, they compete with the director for its cores.
 * Figures with it are not the default run's, and are reported as such.
 */
const NODE_NICE = Number(process.env['BENCH_RECONCILE_NODE_NICE'] ?? 0);
/** BENCH_LOADGEN=http has bench/reconcile-loadgen.ts push through node:http's client (the first load generator's). */
const HTTP_CLIENT = process.env['BENCH_LOADGEN'] === 'http';

/** renice sets the nice value of every thread of a process (Linux keeps one per thread; new threads inherit it). */
function renice(pid: number | undefined, nice: number): void {
  for (const thread of readThreads(pid)) {
    try {
      setPriority(thread.tid, nice);
    } catch {
      // the thread ended
    }
  }
}
const OTHER_CPUS = `0-${cpus().length - 2}`;

/** groupBody is the text-format body of one group: 5 metric families, as a small batch job would push. */
function groupBody(i: number): string {
  return (
    `# HELP batch_last_success_timestamp_seconds When the job last succeeded.\n# TYPE batch_last_success_timestamp_seconds gauge\n` +
    `batch_last_success_timestamp_seconds ${1764000000 + i}\n` +
    `# HELP batch_duration_seconds How long the last run took.\n# TYPE batch_duration_seconds gauge\nbatch_duration_seconds{stage="run"} ${(i % 977) / 10}\n` +
    `# HELP batch_records_processed_total Records the last run processed.\n# TYPE batch_records_processed_total counter\nbatch_records_processed_total ${i * 13}\n` +
    `# HELP batch_bytes_written_total Bytes the last run wrote.\n# TYPE batch_bytes_written_total counter\nbatch_bytes_written_total{volume="data"} ${i * 4096}\n` +
    `# HELP batch_errors_total Errors in the last run.\n# TYPE batch_errors_total counter\nbatch_errors_total ${i % 3}\n`
  );
}

type Labels = Record<string, string>;

/** placeGroups returns GROUPS_PER_NODE groups for each node, each group owned by its node under the 3-node ring. */
function placeGroups(members: readonly Node[]): Map<string, Labels[]> {
  const placement = new Placement({ vnodes: 500, hashKey: 'grouping-key' });
  placement.update(members);
  const byNode = new Map<string, Labels[]>(members.map((node) => [node.id, []]));
  let full = 0;
  for (let i = 0; full < members.length; i++) {
    const labels = { job: `batch_${i % 97}`, instance: `host-${i}.dc1.example` };
    const owner = placement.ring.lookup(placement.hash(groupKeyOf(labels), ''));
    const list = byNode.get(owner?.id ?? '');
    if (list === undefined || list.length >= GROUPS_PER_NODE) continue;
    list.push(labels);
    if (list.length === GROUPS_PER_NODE) full++;
  }
  return byNode;
}

/** fill PUTs every group to its node, FILL_CONCURRENCY at a time over keep-alive connections. */
async function fill(nodes: readonly Pushgateway[], byNode: Map<string, Labels[]>): Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: FILL_CONCURRENCY });
  const work: { port: number; labels: Labels; i: number }[] = [];
  for (const pg of nodes) (byNode.get(pg.id) ?? []).forEach((labels, i) => work.push({ port: pg.port, labels, i }));
  let next = 0;
  let failed = 0;
  const put = (item: { port: number; labels: Labels; i: number }): Promise<void> =>
    new Promise((resolve) => {
      const body = groupBody(item.i);
      const req = http.request(
        { host: '127.0.0.1', port: item.port, agent, method: 'PUT', path: `/metrics/job/${item.labels['job']}/instance/${item.labels['instance']}`, headers: { 'Content-Length': Buffer.byteLength(body) } },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode !== 200 && res.statusCode !== 202) failed++;
            resolve();
          });
        },
      );
      req.on('error', () => {
        failed++;
        resolve();
      });
      req.end(body);
    });
  const started = performance.now();
  await Promise.all(
    Array.from({ length: FILL_CONCURRENCY }, async () => {
      while (next < work.length) await put(work[next++] as { port: number; labels: Labels; i: number });
    }),
  );
  agent.destroy();
  if (failed > 0) throw new Error(`${failed} pushes failed while filling the Pushgateways`);
  return (performance.now() - started) / 1000;
}

type Delays = { eventLoopMaxMs: number; eventLoopP99Ms: number };
type PassAnswer = Delays & { report: Record<string, unknown>; quiet: Delays; cpuSeconds: number };

function once<T>(child: ChildProcess, cmd: string): Promise<T> {
  return new Promise((resolve) => {
    const listener = (message: { cmd: string }): void => {
      if (message.cmd !== cmd) return;
      child.off('message', listener);
      resolve(message as T);
    };
    child.on('message', listener);
  });
}

type Snapshot = { at: number; machineNs: number; director: ThreadStat[]; pass: ThreadStat[]; loadgen: ThreadStat[]; pgs: ThreadStat[] };
const TIMELINE_MS = 500;
/** The share of a core the machine's other work may use in a window for the window to count as calm. */
const CALM_REST = 0.2;

/**
 * printScheduling prints, over a window and then (given more than two readings) 500 ms by 500 ms, the CPU each
 * party used and how long its threads waited for a CPU while runnable (the kernel's schedstat), next to the pushes'
 * latency in the same window. The director's main thread (the pushes) is the process's own thread; the rest of the
 * director's threads are V8's garbage-collection and compiler helpers, libuv's pool and the fleet's worker; the pass
 * process is every thread of the director's child processes. `rest` is the machine's busy time that none of these
 * used: other work on the machine.
 */
function printScheduling(snapshots: readonly Snapshot[], when: string, samples: readonly [number, number, number][], pid: number): void {
  const first = snapshots[0];
  const last = snapshots[snapshots.length - 1];
  if (first === undefined || last === undefined || last.director.length === 0) return;
  const parties: [string, (s: Snapshot) => ThreadStat[], (t: ThreadStat) => boolean][] = [
    ['director main thread (pushes)', (s) => s.director, (t) => t.tid === pid],
    ['pass process (every thread of it)', (s) => s.pass, () => true],
    ['director other threads (V8 GC and compiler helpers, libuv)', (s) => s.director, (t) => t.tid !== pid],
    ['3 Pushgateways', (s) => s.pgs, () => true],
    ['load generator', (s) => s.loadgen, () => true],
  ];
  const ms = (ns: number): string => (ns / 1e6).toFixed(0);
  // Summed window by window: a thread that ended (the pass process's, when the pass is over) still counts up to its last reading.
  const over = (of: (s: Snapshot) => ThreadStat[], pick: (t: ThreadStat) => boolean): Usage => {
    const sum: Usage = { runNs: 0, waitNs: 0, slices: 0 };
    for (let i = 1; i < snapshots.length; i++) {
      const u = usageBetween(of(snapshots[i - 1] as Snapshot), of(snapshots[i] as Snapshot), pick);
      sum.runNs += u.runNs;
      sum.waitNs += u.waitNs;
      sum.slices += u.slices;
    }
    return sum;
  };
  // The nice values each party's threads had during the pass (the middle reading).
  const middle = snapshots[Math.floor(snapshots.length / 2)] as Snapshot;
  const seconds = (last.at - first.at) / 1000;
  console.log(`\nScheduling ${when} (${seconds.toFixed(1)} s; schedstat: CPU used, time runnable but waiting for a CPU):\n`);
  console.log('| threads | nice | CPU ms | CPU share of one core | waited for a CPU, ms | times on a CPU | mean wait per time on a CPU |');
  console.log('|---|---|---|---|---|---|---|');
  for (const [name, of, pick] of parties) {
    const u = over(of, pick);
    const nices = [...new Set(of(middle).filter(pick).map((t) => t.nice))].join(',');
    console.log(`| ${name} | ${nices} | ${ms(u.runNs)} | ${((u.runNs / 1e9 / seconds) * 100).toFixed(0)}% | ${ms(u.waitNs)} | ${u.slices} | ${u.slices === 0 ? '-' : ((u.waitNs / u.slices) / 1e3).toFixed(0) + ' µs'} |`);
  }
  const total = (a: Snapshot, b: Snapshot): number => parties.reduce((sum, [, of, pick]) => sum + usageBetween(of(a), of(b), pick).runNs, 0);
  // /proc/stat counts in 10 ms ticks per CPU: over a short window the difference may come out slightly below 0.
  const rest = Math.max(0, last.machineNs - first.machineNs - parties.reduce((sum, [, of, pick]) => sum + over(of, pick).runNs, 0));
  console.log(`| everything else on the machine (other engineers' work) | | ${ms(rest)} | ${((rest / 1e9 / seconds) * 100).toFixed(0)}% | | | |`);
  if (snapshots.length <= 2) return;
  // The same pushes, kept only in the windows where the machine's other work (other engineers' suites) stayed under
  // CALM_REST of a core: what the pass itself does to the pushes, with the bench's own processes as the only load.
  const calm: number[] = [];
  let calmWindows = 0;
  for (let i = 1; i < snapshots.length; i++) {
    const a = snapshots[i - 1] as Snapshot;
    const b = snapshots[i] as Snapshot;
    if ((b.machineNs - a.machineNs - total(a, b)) / ((b.at - a.at) * 1e6) >= CALM_REST) continue;
    calmWindows++;
    for (const [at, latency] of samples) if (at >= a.at && at < b.at) calm.push(latency);
  }
  calm.sort((x, y) => x - y);
  console.log(
    `\npushes in the ${calmWindows} of ${snapshots.length - 1} windows where the machine's other work used under ${CALM_REST * 100}% of a core: ` +
      `${calm.length}, p50 ${percentile(calm, 50).toFixed(2)} ms, p99 ${percentile(calm, 99).toFixed(2)} ms, max ${percentile(calm, 100).toFixed(1)} ms`,
  );
  console.log(`\nTimeline, ${TIMELINE_MS} ms windows (CPU as % of one core; wait = time runnable without a CPU, in ms; rest = the machine's other work, to about 10% of a core):\n`);
  console.log('| t (s) | pushes | p99 ms | max ms | main CPU | main wait | pass CPU | pass wait | other CPU | PGs CPU | PGs wait | loadgen CPU | loadgen wait | rest CPU |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (let i = 1; i < snapshots.length; i++) {
    const a = snapshots[i - 1] as Snapshot;
    const b = snapshots[i] as Snapshot;
    const span = (b.at - a.at) * 1e6;
    const pct = (u: Usage): string => `${((u.runNs / span) * 100).toFixed(0)}%`;
    const used = parties.map(([, of, pick]) => usageBetween(of(a), of(b), pick));
    const window = samples.filter(([at]) => at >= a.at && at < b.at).map(([, latency]) => latency).sort((x, y) => x - y);
    const [main, pass, other, nodes, client] = used as [Usage, Usage, Usage, Usage, Usage];
    console.log(
      `| ${((a.at - first.at) / 1000).toFixed(1)} | ${window.length} | ${percentile(window, 99).toFixed(1)} | ${percentile(window, 100).toFixed(1)} | ` +
        `${pct(main)} | ${ms(main.waitNs)} | ${pct(pass)} | ${ms(pass.waitNs)} | ${pct(other)} | ${pct(nodes)} | ${ms(nodes.waitNs)} | ${pct(client)} | ${ms(client.waitNs)} | ${((Math.max(0, b.machineNs - a.machineNs - total(a, b)) / span) * 100).toFixed(0)}% |`,
    );
  }
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? NaN;
}

/** reconcileBench runs the scenario and prints its figures. */
export async function reconcileBench(root: string): Promise<void> {
  console.log(`## Reconciliation at scale (3 Pushgateways x ${GROUPS_PER_NODE} groups, 5 families each; a third misplaced; migrate)\n`);
  // The Pushgateway's consistency check gathers every group on each push, so filling 10,000 groups with it on takes
  // minutes; off, a push is answered 202 once queued. The pass's own PUTs are answered the same way.
  const extraArgs = ['--push.disable-consistency-check'];
  console.log(`Pushgateways run with ${extraArgs.join(' ')} (fill speed)\n`);
  const pgs = await Promise.all([1, 2, 3].map(() => startPushgateway({ extraArgs })));
  if (PIN) {
    for (const pg of pgs) pin(pg.process.pid, OTHER_CPUS);
    console.log(`BENCH_PIN=1: the director runs on CPU ${LAST_CPU}, the Pushgateways and the load generator on CPUs ${OTHER_CPUS}\n`);
  }
  if (NODE_NICE !== 0) {
    for (const pg of pgs) renice(pg.process.pid, NODE_NICE);
    console.log(`BENCH_RECONCILE_NODE_NICE=${NODE_NICE}: the Pushgateways run at nice ${NODE_NICE} (not the default run)\n`);
  }
  let director: ChildProcess | undefined;
  let loadgen: ChildProcess | undefined;
  try {
    const members = pgs.map((pg) => {
      const parsed = parseNodeUrl(pg.url);
      if (!parsed.ok) throw new Error(parsed.message);
      return parsed.node;
    });
    const byNode = placeGroups(members);
    const fillSeconds = await fill(pgs, byNode);
    const listStart = performance.now();
    const listing = await fetch(`${pgs[0]?.url}/api/v1/metrics`).then((r) => r.arrayBuffer());
    const listSeconds = (performance.now() - listStart) / 1000;
    console.log(`fill: ${pgs.length * GROUPS_PER_NODE} groups PUT in ${fillSeconds.toFixed(1)} s (${((pgs.length * GROUPS_PER_NODE) / fillSeconds).toFixed(0)} pushes/s, ${FILL_CONCURRENCY} concurrent, keep-alive); one node's /api/v1/metrics: ${(listing.byteLength / 2 ** 20).toFixed(1)} MiB, answered in ${listSeconds.toFixed(1)} s`);
    console.log(`pass on ${process.env['BENCH_RECONCILE_THREAD'] === 'inline' ? "the director's main thread (BENCH_RECONCILE_THREAD=inline, as before)" : 'a child process of the director (idle scheduling policy, nice +10, --single-threaded-gc)'}`);
    console.log('director: redirect mode, --proxy.timeout=60s (the timeout of its own requests to the nodes: a loaded Pushgateway takes seconds to encode 10,000 groups)');

    const [a, b, c] = pgs as [Pushgateway, Pushgateway, Pushgateway];
    const port = await freePort();
    director = fork(join(root, 'dist', 'bench', 'reconcile-director.js'), [
      `--web.listen-address=127.0.0.1:${port}`,
      `--node=${a.url}`,
      `--node=${b.url}`,
      `--reconcile.drain=${c.url}`,
      '--reconcile.migrate',
      '--reconcile.interval=0',
      '--proxy.timeout=60s',
      '--log.level=info',
      // e.g. BENCH_DIRECTOR_ARGS='--reconcile.max-heap=0' to try other settings.
      ...(process.env['BENCH_DIRECTOR_ARGS'] ?? '').split(' ').filter((arg) => arg !== ''),
    ], {
      // The director's log (and --trace-gc's lines) go to BENCH_DIRECTOR_STDOUT when it names a file.
      stdio: ['ignore', process.env['BENCH_DIRECTOR_STDOUT'] === undefined ? 'ignore' : openSync(process.env['BENCH_DIRECTOR_STDOUT'], 'w'), 'inherit', 'ipc'],
      // e.g. BENCH_DIRECTOR_NODE_OPTIONS='--cpu-prof --cpu-prof-dir=/tmp/prof' to profile the director.
      execArgv: (process.env['BENCH_DIRECTOR_NODE_OPTIONS'] ?? '').split(' ').filter((arg) => arg !== ''),
    });
    const pid = director.pid as number;
    // A director that dies (a V8 check, an OOM kill) ends the bench with its exit, not an unhandled error that
    // leaves the Pushgateways and the load generator running: sending to a dead child emits 'error'.
    director.on('error', (error) => console.error(`the director's IPC channel failed: ${error.message}`));
    const died = new Promise<never>((_, reject) => {
      director?.once('exit', (code, signal) => reject(new Error(`the director exited during the bench (${signal ?? `code ${code}`})`)));
    });
    died.catch(() => undefined);
    await Promise.race([once(director, 'ready'), died]);
    if (PIN) pin(pid, LAST_CPU);

    const loadgenArgs = [join(root, 'dist', 'bench', 'reconcile-loadgen.js'), String(port), String(PUSH_RATE), HTTP_CLIENT ? 'http' : 'net'];
    loadgen = spawn(process.execPath, loadgenArgs, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    console.log(`load generator: ${HTTP_CLIENT ? "node:http's client (BENCH_LOADGEN=http)" : 'node:net, one kept-alive connection per push in flight'}, a process of its own`);
    if (PIN) pin(loadgen.pid, OTHER_CPUS);
    await new Promise((resolve) => setTimeout(resolve, 2000)); // warm-up: connections open, JIT warm
    // Every thread of every process, read at the start of the quiet window and every 500 ms during the pass: who ran,
    // who waited for a CPU.
    const watched = { director: pid, loadgen: loadgen.pid, pgs: pgs.map((pg) => pg.process.pid) };
    const readAll = (): Snapshot => ({
      at: Date.now(),
      machineNs: machineBusyNs(),
      director: readThreads(watched.director),
      pass: childPids(watched.director).flatMap((p) => readThreads(p)),
      loadgen: readThreads(watched.loadgen),
      pgs: watched.pgs.flatMap((p) => readThreads(p)),
    });
    const quietSnapshot = readAll();
    const quietStart = Date.now();
    director.send({ cmd: 'quiet' });
    loadgen.send('quiet');
    await new Promise((resolve) => setTimeout(resolve, 3000)); // the same pushes without a pass, for comparison
    // The pass's child process counts: the director's RSS, the child's, and their sum, each at its peak.
    const rssBefore = rssBytes(pid);
    const rss = { director: rssBefore, pass: 0, sum: rssBefore };
    const sampleRss = (): void => {
      const director = rssBytes(pid);
      let pass = 0;
      for (const child of childPids(pid)) {
        try {
          pass += rssBytes(child);
        } catch {
          // the pass process ended between the listing and the read
        }
      }
      rss.director = Math.max(rss.director, director);
      rss.pass = Math.max(rss.pass, pass);
      rss.sum = Math.max(rss.sum, director + pass);
    };
    const sampler = setInterval(sampleRss, 20);
    // The pass's process is started ahead of the pass, as the director's scheduler starts it (the same call, the same
    // lead): its start-up falls in the lead, between the quiet window and the pass. Its RSS counts from here.
    const quietEndSnapshot = readAll();
    const prepareStart = Date.now();
    const prepared = once<{ leadMs: number }>(director, 'prepared');
    director.send({ cmd: 'prepare' });
    const { leadMs } = await Promise.race([prepared, died]);
    const snapshots: Snapshot[] = [readAll()];
    const schedSampler = setInterval(() => snapshots.push(readAll()), TIMELINE_MS);
    const passStart = Date.now();
    const answer = once<PassAnswer>(director, 'pass');
    director.send({ cmd: 'pass' });
    loadgen.send('pass');
    const timeout = new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), PASS_TIMEOUT_S * 1000).unref());
    const result = await Promise.race([answer, timeout, died]);
    const passEnd = Date.now();
    clearInterval(sampler);
    clearInterval(schedSampler);
    snapshots.push(readAll());
    sampleRss();
    let progress = '';
    let sofar: Delays | undefined;
    if (result === undefined) {
      director.send({ cmd: 'progress' });
      const p = await Promise.race([once<Delays & { migrated: number }>(director, 'progress'), new Promise<undefined>((r) => setTimeout(() => r(undefined), 30_000))]);
      progress = p === undefined ? 'the director did not even answer a progress request' : `${p.migrated} groups migrated so far`;
      sofar = p;
    }

    const { samples, quiet: loadgenQuiet, pass: loadgenPass } = await new Promise<{ samples: [number, number, number][]; quiet: Delays; pass: Delays }>((resolve) => {
      loadgen?.once('message', resolve);
      loadgen?.send('stop');
    });
    const during = samples.filter(([at]) => at >= passStart && at <= passEnd);
    const latencies = during.map(([, ms]) => ms).sort((x, y) => x - y);
    const bad = during.filter(([, , status]) => status !== 307).length;
    const quiet = samples.filter(([at]) => at >= quietStart && at < prepareStart).map(([, ms]) => ms).sort((x, y) => x - y);
    const lead = samples.filter(([at]) => at >= prepareStart && at < passStart).map(([, ms]) => ms).sort((x, y) => x - y);

    const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(1);
    console.log('\n| figure | measured | target |');
    console.log('|---|---|---|');
    if (result === undefined) {
      console.log(`| pass duration | did not finish in ${PASS_TIMEOUT_S} s (${progress} of ${GROUPS_PER_NODE} to move) | < 30 s |`);
    } else {
      const report = result.report;
      console.log(`| pass duration | ${(Number(report['durationMs']) / 1000).toFixed(1)} s (${String(report['groups'])} groups seen, ${String(report['migrated'])} migrated, ${String(report['errors'])} errors) | < 30 s |`);
    }
    console.log(`| director RSS growth, the pass process's RSS included (peak of the sum) | +${mib(rss.sum - rssBefore)} MiB (${mib(rssBefore)} -> peak ${mib(rss.sum)}) | < 256 MiB |`);
    console.log(`| of which: the director's own peak; the pass process's peak | +${mib(rss.director - rssBefore)} MiB; ${mib(rss.pass)} MiB | |`);
    console.log(`| pushes during the pass (${PUSH_RATE}/s, redirect mode) | ${during.length} answered, p50 ${percentile(latencies, 50).toFixed(2)} ms, p99 ${percentile(latencies, 99).toFixed(2)} ms, max ${percentile(latencies, 100).toFixed(1)} ms, ${bad} not 307 | p99 < 5 ms |`);
    console.log(`| the same pushes in the 3 s before the pass | ${quiet.length} answered, p50 ${percentile(quiet, 50).toFixed(2)} ms, p99 ${percentile(quiet, 99).toFixed(2)} ms | |`);
    console.log(`| the same pushes while the pass process starts (the ${(leadMs / 1000).toFixed(1)} s lead before the pass) | ${lead.length} answered, p50 ${percentile(lead, 50).toFixed(2)} ms, p99 ${percentile(lead, 99).toFixed(2)} ms, max ${percentile(lead, 100).toFixed(1)} ms | |`);
    const delays = (d: Delays): string => `${d.eventLoopMaxMs.toFixed(1)} ms (p99 ${d.eventLoopP99Ms.toFixed(1)} ms)`;
    console.log(`| the load generator's own event-loop delay during the pass; before it | ${delays(loadgenPass)}; ${delays(loadgenQuiet)} | |`);
    console.log(`| largest event-loop delay in the director during the pass | ${result !== undefined ? delays(result) : sofar !== undefined ? `${delays(sofar)} until it was stopped` : 'n/a'} | < 50 ms |`);
    if (result !== undefined) {
      console.log(`| the same in the 3 s before the pass | ${delays(result.quiet)} | |`);
      const passCpuNs = snapshots.slice(1).reduce((sum, b, i) => sum + usageBetween((snapshots[i] as Snapshot).pass, b.pass).runNs, 0);
      console.log(`| CPU time during the pass: director (pushes included); pass process | ${result.cpuSeconds.toFixed(1)} s; ${(passCpuNs / 1e9).toFixed(1)} s | |`);
    }
    printScheduling([quietSnapshot, quietEndSnapshot], 'in the 3 s before the pass process is started', samples, pid);
    printScheduling([quietEndSnapshot, snapshots[0] as Snapshot], 'while the pass process starts (the lead)', samples, pid);
    printScheduling(snapshots, 'during the pass', samples, pid);
    console.log(`\nload average when the pass ended: ${loadavg().map((l) => l.toFixed(1)).join(' ')} on ${cpus().length} CPUs (other work on the machine slows every figure)\n`);
  } finally {
    loadgen?.kill('SIGTERM');
    director?.kill('SIGTERM');
    if (director !== undefined && director.exitCode === null) await new Promise((resolve) => director?.once('exit', resolve));
    await Promise.all(pgs.map((pg) => pg.stop()));
  }
}
