/**
 * `npm run bench fleet`: the fleet views over 3 real Pushgateways holding 10,000 groups each (5 metric families per
 * group). Prints how long /api/v1/metrics and a page of the fleet view take, cold (the nodes listed) and warm (the
 * 5 s cache), how long the director's event loop was held at most meanwhile, and the longest push proxied through
 * the director while it served the reads. A benchmark: it prints numbers, it asserts nothing.
 */
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Readable } from 'node:stream';

import express from 'express';

import { type Group, groupFromApi } from '../lib/core/group';
import { type Node, parseNodeUrl } from '../lib/core/node';
import { createFleet } from '../lib/fleet';
import { createFleetRouter } from '../lib/http/fleet-api';
import type { ListedGroup } from '../lib/nodes/client';
import { readListing } from '../lib/nodes/listing';
import { Placement } from '../lib/placement';
import { freePort, stopChild, waitForPort } from '../spec/support/processes';

const GROUPS_PER_NODE = Number(process.env['BENCH_FLEET_GROUPS'] ?? 10_000);
const FAMILIES = 5;
const BURSTS = Number(process.env['BENCH_FLEET_BURSTS'] ?? 3);
const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });

type Answer = { path: string; status: number; bytes: number; ms: number; body?: string };

function request(port: number, path: string, method = 'GET', body?: string, keep = false): Promise<Answer> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, agent }, (res) => {
      let bytes = 0;
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        if (keep) chunks.push(chunk);
      });
      res.on('end', () =>
        resolve({ path, status: res.statusCode ?? 0, bytes, ms: performance.now() - started, ...(keep ? { body: Buffer.concat(chunks).toString('utf8') } : {}) }),
      );
    });
    req.on('error', reject);
    req.end(body);
  });
}

function groupBody(node: number, i: number): string {
  let text = '';
  for (let f = 0; f < FAMILIES; f++) text += `# TYPE bench_family_${f} gauge\nbench_family_${f}{slot="${f}"} ${node * 1e6 + i + f / 10}\n`;
  return text;
}

async function populate(port: number, node: number): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < GROUPS_PER_NODE) {
      const i = next++;
      const res = await request(port, `/metrics/job/bench_${i % 50}/instance/node${node}-host-${i}`, 'PUT', groupBody(node, i));
      if (res.status !== 200 && res.status !== 202) throw new Error(`populating: HTTP ${res.status}`);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
}

type Director = { child: ChildProcess; port: number; ask(message: string): Promise<Record<string, number>> };

async function startDirector(nodeUrls: readonly string[]): Promise<Director> {
  // BENCH_FLEET_EXEC_ARGV passes Node flags to the director alone (`--cpu-prof`, `--trace-gc`) to see where time goes.
  const execArgv = (process.env['BENCH_FLEET_EXEC_ARGV'] ?? '').split(' ').filter((flag) => flag !== '');
  const child = fork(join(__dirname, 'fleet-director.js'), [
    '--web.listen-address=127.0.0.1:0',
    '--mode=proxy',
    '--reconcile.interval=0',
    '--log.level=warn',
    // A starved shared machine can take longer than the default 10 s to serve 10,000 groups: time the director, not that.
    `--proxy.timeout=${process.env['BENCH_FLEET_TIMEOUT'] ?? '60s'}`,
    ...nodeUrls.flatMap((url) => ['--node', url]),
  ], { execArgv });
  const port = await new Promise<number>((resolve) => child.once('message', (m: { port: number }) => resolve(m.port)));
  const ask = (message: string): Promise<Record<string, number>> =>
    new Promise((resolve) => {
      child.once('message', (m: Record<string, number>) => resolve(m));
      child.send(message);
    });
  return { child, port, ask };
}

/** pushProbe proxies pushes through the director one after the other until stopped; resolves with the slowest. */
function pushProbe(port: number): { stop(): Promise<{ count: number; failed: number; maxMs: number }> } {
  let running = true;
  let count = 0;
  let failed = 0;
  let maxMs = 0;
  const loop = (async () => {
    while (running) {
      try {
        const res = await request(port, `/metrics/job/bench_probe/instance/probe-${count % 100}`, 'PUT', 'bench_probe_value 1\n');
        if (res.status !== 200 && res.status !== 202) failed++;
        maxMs = Math.max(maxMs, res.ms);
      } catch {
        failed++;
      }
      count++;
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { count, failed, maxMs };
    },
  };
}

const fmt = (ms: number): string => `${ms.toFixed(0)} ms`;

/** cpuMsOf is the CPU time the processes used so far (user + system, from /proc; Linux only, 0 elsewhere). */
function cpuMsOf(pids: readonly (number | undefined)[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      // Fields after the command name: state is field 3, utime 14, stime 15.
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // gone, or not Linux
    }
  }
  return ticks * 10; // USER_HZ is 100 on Linux
}

/**
 * fleetCodeAlone times the fleet code by itself, in this process: the listings are already read (what
 * NodeClient.eachGroup hands over), so what is measured is the view (owners, misplaced copies, order), the
 * /api/v1/metrics serialisation and a page, and how long they held this process's event loop.
 */
async function fleetCodeAlone(urls: readonly string[], parsed: readonly (readonly ListedGroup[])[]): Promise<void> {
  const nodes: Node[] = urls.map((url) => {
    const result = parseNodeUrl(url);
    if (!result.ok) throw new Error(result.message);
    return result.node;
  });
  const placement = new Placement({ vnodes: 500, hashKey: 'grouping-key' });
  placement.update(nodes);
  // The listings as NodeClient.eachGroup hands them over, already read, yielding every 5 ms as its reader does.
  const eachGroup = async (node: Node, visit: (group: Group, text: string) => void): Promise<void> => {
    let since = performance.now();
    for (const { group, text } of parsed[nodes.indexOf(node)] ?? []) {
      visit(group, text);
      if (performance.now() - since < 5) continue;
      await new Promise(setImmediate);
      since = performance.now();
    }
  };
  const fleet = createFleet({ placement, client: { eachGroup }, drain: [], cacheMs: 0, maxStaleMs: 0 });
  const app = express();
  app.use(createFleetRouter({ fleet, staleAfterMs: 3_600_000, ui: true }));
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  console.log('Fleet code alone (listings already parsed, in this process):\n');
  console.log('| read | answer | target | event loop held at most |');
  console.log('|---|---|---|---|');
  for (const [name, path, target] of [
    ['/api/v1/metrics (builds the view, serialises 30,000 groups)', '/api/v1/metrics', '2 s'],
    ['/api/v1/metrics again (same view)', '/api/v1/metrics', '2 s'],
    ['fleet page /?page=150', '/?page=150', '1 s'],
    ['/api/v1/fleet/groups?limit=100&offset=20000', '/api/v1/fleet/groups?limit=100&offset=20000', '1 s'],
  ] as const) {
    delay.reset();
    const answer = await request(port, path);
    console.log(`| ${name} | ${fmt(answer.ms)}, ${(answer.bytes / 2 ** 20).toFixed(2)} MiB, HTTP ${answer.status} | ${target} | ${fmt(delay.max / 1e6)} |`);
  }
  delay.reset();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  console.log(`| nothing (1 s idle: this machine's noise floor) | | | ${fmt(delay.max / 1e6)} |`);
  delay.disable();
  await new Promise((resolve) => server.close(resolve));
  console.log('');
}

/** fleetBench runs the fleet benchmark and prints its table. */
export async function fleetBench(): Promise<void> {
  console.log(`## Fleet views: 3 Pushgateways x ${GROUPS_PER_NODE} groups, ${FAMILIES} families each\n`);
  const ports = await Promise.all([freePort(), freePort(), freePort()]);
  const nodes = ports.map((port) =>
    spawn('prometheus-pushgateway', [`--web.listen-address=127.0.0.1:${port}`, '--persistence.file=', '--log.level=warn', '--push.disable-consistency-check'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    }),
  );
  let director: Director | undefined;
  try {
    await Promise.all(ports.map(waitForPort));
    const populateStart = performance.now();
    await Promise.all(ports.map((port, n) => populate(port, n)));
    console.log(`populated ${3 * GROUPS_PER_NODE} groups in ${((performance.now() - populateStart) / 1000).toFixed(1)} s`);

    // What the fleet does with each node's answer (NodeClient.eachGroup), timed alone: the listing reader cuts the
    // elements and parses each, and the fleet keeps of each group its labels, push time and JSON text.
    const parsed: ListedGroup[][] = [];
    for (const port of ports) {
      const raw = await request(port, '/api/v1/metrics', 'GET', undefined, true);
      const parseStart = performance.now();
      const groups: ListedGroup[] = [];
      await readListing(Readable.from([Buffer.from(raw.body as string)]), (value, text) => groups.push({ group: groupFromApi(value) as Group, text }));
      parsed.push(groups);
      const parseMs = performance.now() - parseStart;
      console.log(`a node's /api/v1/metrics: ${(raw.bytes / 2 ** 20).toFixed(1)} MiB, served by the Pushgateway alone in ${fmt(raw.ms)}; cut and parsed by the listing reader: ${fmt(parseMs)}`);
    }
    console.log('');
    await fleetCodeAlone(ports.map((port) => `http://127.0.0.1:${port}`), parsed);
    parsed.length = 0;

    director = await startDirector(ports.map((port) => `http://127.0.0.1:${port}`));
    const d = director;
    let slowestByPath = '';
    const phase = async (name: string, target: string, run: () => Promise<Answer[]>): Promise<void> => {
      await d.ask('reset');
      const probe = pushProbe(d.port);
      const benchCpu = process.cpuUsage();
      const nodesCpu = cpuMsOf(nodes.map((node) => node.pid));
      const started = performance.now();
      const answers = await run();
      const wallMs = performance.now() - started;
      const pushes = await probe.stop();
      const stats = await d.ask('stats');
      const benchUsed = process.cpuUsage(benchCpu);
      const nodesUsed = cpuMsOf(nodes.map((node) => node.pid)) - nodesCpu;
      const statuses = [...new Set(answers.map((a) => a.status))].join(',');
      const bytes = answers.reduce((sum, a) => sum + a.bytes, 0) / answers.length;
      console.log(
        `| ${name} | ${fmt(Math.max(...answers.map((a) => a.ms)))} | ${target} | ${(bytes / 2 ** 20).toFixed(2)} MiB, HTTP ${statuses} | ${fmt(stats['maxMs'] ?? 0)} | ${fmt(stats['gcMaxMs'] ?? 0)} / ${fmt(stats['gcTotalMs'] ?? 0)} | ${fmt(stats['cpuMs'] ?? 0)} (bench ${fmt((benchUsed.user + benchUsed.system) / 1000)}, Pushgateways ${fmt(nodesUsed)}), RSS ${(stats['rssMiB'] ?? 0).toFixed(0)} MiB | ${pushes.count} pushes (${pushes.failed} failed), slowest ${fmt(pushes.maxMs)} | ${fmt(wallMs)} |`,
      );
      if (answers.length > 1) slowestByPath = [...new Set(answers.map((a) => a.path))].map((path) => `${path} ${fmt(Math.max(...answers.filter((a) => a.path === path).map((a) => a.ms)))}`).join(', ');
    };
    const expire = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 5500));

    console.log('| read | slowest answer | target | size | director event loop held at most | GC pause longest / total | CPU used: director (bench, Pushgateways) | pushes proxied meanwhile | wall |');
    console.log('|---|---|---|---|---|---|---|---|---|');
    await phase('first read after start: /api/v1/metrics waits for the 3 listings', '(none)', async () => [await request(d.port, '/api/v1/metrics')]);
    await phase('/api/v1/metrics, view ready', '2 s', async () => [await request(d.port, '/api/v1/metrics')]);
    await phase('fleet page /?page=150', '1 s', async () => [await request(d.port, '/?page=150')]);
    await phase('/api/v1/fleet/groups?limit=100&offset=20000', '1 s', async () => [await request(d.port, '/api/v1/fleet/groups?limit=100&offset=20000')]);
    await phase('fleet page /?job=bench_7&page=2', '1 s', async () => [await request(d.port, '/?job=bench_7&page=2')]);
    await expire();
    await phase('fleet page / after 5 s: last view served, refresh behind it', '1 s', async () => [await request(d.port, '/')]);
    // The burst repeats (BENCH_FLEET_BURSTS, 3 by default): one run on this shared machine says little.
    const slowest: string[] = [];
    for (let burst = 1; burst <= BURSTS; burst++) {
      await expire();
      await phase(`20 readers at once (metrics, page, groups), burst ${burst} of ${BURSTS}, the nodes' listings due`, '2 s', () =>
        Promise.all(Array.from({ length: 20 }, (_, i) => request(d.port, ['/api/v1/metrics', '/', '/api/v1/fleet/groups?limit=100'][i % 3] as string))),
      );
      slowest.push(slowestByPath);
      await phase('nothing (1 s idle after the burst: the refresh it started ends, this machine\'s noise floor)', '', async () => {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        return [{ path: '', status: 0, bytes: 0, ms: 0 }];
      });
    }
    console.log(`\nslowest of the 20 readers, by path: ${slowest.map((line, i) => `burst ${i + 1}: ${line}`).join('; ')}`);
    const metrics = await request(d.port, '/metrics', 'GET', undefined, true);
    const listings = [...(metrics.body ?? '').matchAll(/^pgw_director_fleet_listings_total\{[^}]*\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
    console.log(`\nlistings made by the director over the whole run: ${listings} (at most 3 per 5 s)\n`);
  } finally {
    if (director !== undefined) {
      director.child.send('exit');
      await new Promise((resolve) => director?.child.once('exit', resolve));
    }
    await Promise.all(nodes.map((node) => stopChild(node)));
    agent.destroy();
  }
}
