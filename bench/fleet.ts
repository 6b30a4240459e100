/**
 * `npm run bench fleet`: the fleet views over 3 real Pushgateways holding 10,000 groups each (5 metric families per
 * group). Prints how long /api/v1/metrics and a page of the fleet view take, cold (the nodes listed) and warm (the
 * 5 s cache), how long the director's event loop was held at most meanwhile, and the longest push proxied through
 * the director while it served the reads. A benchmark: it prints numbers, it asserts nothing.
 */
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Readable } from 'node:stream';

import express from 'express';

import { type Group, groupFromApi } from '../lib/core/group';
import { type Node, parseNodeUrl } from '../lib/core/node';
import { createFleet } from '../lib/fleet';
import { createFleetAnswers } from '../lib/http/fleet-answers';
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

/**
 * lightGet asks once on a new connection and counts the answer's bytes into one reused buffer (net's `onread`), so
 * receiving costs no allocation. The burst's readers use it: 20 node:http clients in this process, which shares the
 * two cores with the director, took 0.5-1.2 s of CPU to receive 7 x 43 MiB (the director's own CPU in the burst was
 * 0.2-0.7 s), and 20 curl processes cost as much to start. The answer is read to its last byte all the same.
 */
function lightGet(port: number, path: string): Promise<Answer> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    let head = '';
    let status = 0;
    let expected = -1;
    let bytes = -1; // body bytes once the head is read
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      socket.destroy();
      resolve({ path, status, bytes: Math.max(bytes, 0), ms: performance.now() - started });
    };
    const socket = net.connect({
      host: '127.0.0.1',
      port,
      onread: {
        buffer: Buffer.allocUnsafe(256 * 1024),
        callback: (n: number, buf: Uint8Array): boolean => {
          if (bytes < 0) {
            head += Buffer.from(buf.buffer, buf.byteOffset, n).toString('latin1');
            const end = head.indexOf('\r\n\r\n');
            if (end < 0) return true;
            status = Number(head.slice(9, 12));
            expected = Number(/\r\ncontent-length: *(\d+)/i.exec(head.slice(0, end))?.[1] ?? -1);
            bytes = head.length - end - 4;
          } else bytes += n;
          if (expected >= 0 && bytes >= expected) finish();
          return true;
        },
      },
    });
    socket.on('error', reject);
    socket.on('close', finish);
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`);
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
  app.use(createFleetRouter({ answers: createFleetAnswers({ fleet, staleAfterMs: 3_600_000 }), ui: true }));
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

type Phase = (name: string, target: string, run: () => Promise<Answer[]>) => Promise<string>;

/** phases returns a function that runs one phase against a director and prints its line; it resolves with the slowest answer by path. */
function phases(d: Director, nodesCpuMs: () => number): Phase {
  console.log('| read | slowest answer | target | size | director event loop held at most | GC pause longest / total | CPU used: director (bench, Pushgateways) | pushes proxied meanwhile | wall |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  return async (name, target, run) => {
    await d.ask('reset');
    const probe = pushProbe(d.port);
    const benchCpu = process.cpuUsage();
    const nodesCpu = nodesCpuMs();
    const started = performance.now();
    const answers = await run();
    const wallMs = performance.now() - started;
    const pushes = await probe.stop();
    const stats = await d.ask('stats');
    const benchUsed = process.cpuUsage(benchCpu);
    const benchMs = (benchUsed.user + benchUsed.system) / 1000;
    const nodesUsed = nodesCpuMs() - nodesCpu;
    const statuses = [...new Set(answers.map((a) => a.status))].join(',');
    const bytes = answers.reduce((sum, a) => sum + a.bytes, 0) / answers.length;
    console.log(
      `| ${name} | ${fmt(Math.max(...answers.map((a) => a.ms)))} | ${target} | ${(bytes / 2 ** 20).toFixed(2)} MiB, HTTP ${statuses} | ${fmt(stats['maxMs'] ?? 0)} (longest gap ${fmt(stats['stallMs'] ?? 0)}, ${fmt(stats['stallCpuMs'] ?? 0)} of CPU in it, ${fmt(stats['stallMainCpuMs'] ?? 0)} of it the push thread's) | ${fmt(stats['gcMaxMs'] ?? 0)} / ${fmt(stats['gcTotalMs'] ?? 0)} | ${fmt(stats['cpuMs'] ?? 0)} (bench ${fmt(benchMs)}, Pushgateways ${fmt(nodesUsed)}), RSS ${(stats['rssMiB'] ?? 0).toFixed(0)} MiB | ${pushes.count} pushes (${pushes.failed} failed), slowest ${fmt(pushes.maxMs)} | ${fmt(wallMs)} |`,
    );
    return [...new Set(answers.map((a) => a.path))].map((path) => `${path} ${fmt(Math.max(...answers.filter((a) => a.path === path).map((a) => a.ms)))}`).join(', ');
  };
}

const expire = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 5500));

/**
 * bursts sends 20 readers at once (7 of /api/v1/metrics, 7 pages, 6 of /api/v1/fleet/groups) once the listings are
 * due again, so each burst also starts a refresh, then idles a second; BENCH_FLEET_BURSTS times (3 by default): one
 * run on this shared machine says little.
 */
async function bursts(d: Director, phase: Phase): Promise<void> {
  const slowest: string[] = [];
  for (let burst = 1; burst <= BURSTS; burst++) {
    await expire();
    slowest.push(
      await phase(`20 readers at once (metrics, page, groups), burst ${burst} of ${BURSTS}, the nodes' listings due`, '2 s', () =>
        Promise.all(Array.from({ length: 20 }, (_, i) => lightGet(d.port, ['/api/v1/metrics', '/', '/api/v1/fleet/groups?limit=100'][i % 3] as string))),
      ),
    );
    await phase('nothing (1 s idle after the burst: the refresh it started ends, this machine\'s noise floor)', '', async () => {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      return [{ path: '', status: 0, bytes: 0, ms: 0 }];
    });
  }
  console.log(`\nslowest of the 20 readers, by path: ${slowest.map((line, i) => `burst ${i + 1}: ${line}`).join('; ')}`);
}

/** replayNodes serves recorded listings at once (and answers 200 to anything else: pushes, health checks). */
async function replayNodes(bodies: readonly Buffer[]): Promise<{ urls: string[]; close(): Promise<void> }> {
  const servers = bodies.map((body) =>
    http.createServer((req, res) => {
      if (req.method === 'GET' && req.url === '/api/v1/metrics') {
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': body.length });
        res.end(body);
        return;
      }
      req.resume();
      req.on('end', () => res.writeHead(200).end());
    }),
  );
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))));
  return {
    urls: servers.map((server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}`),
    close: () => Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve).closeAllConnections()))).then(() => undefined),
  };
}

async function stopDirector(d: Director): Promise<void> {
  d.child.send('exit');
  await new Promise((resolve) => d.child.once('exit', resolve));
}

/** fleetBench runs the fleet benchmark and prints its table. */
export async function fleetBench(): Promise<void> {
  console.log(`## Fleet views: 3 Pushgateways x ${GROUPS_PER_NODE} groups, ${FAMILIES} families each\n`);
  const ports = await Promise.all([freePort(), freePort(), freePort()]);
  // The Pushgateways stand for other machines. Here they share the director's two cores, and serving a listing of
  // 10,000 groups costs each about a second of CPU on both cores: BENCH_FLEET_NODE_NICE (a nice value, 0 by default)
  // lowers their priority so the kernel runs the director first when the cores are oversubscribed.
  const niceness = Number(process.env['BENCH_FLEET_NODE_NICE'] ?? 0);
  const nodes = ports.map((port) => {
    const args = [`--web.listen-address=127.0.0.1:${port}`, '--persistence.file=', '--log.level=warn', '--push.disable-consistency-check'];
    return niceness === 0
      ? spawn('prometheus-pushgateway', args, { stdio: ['ignore', 'ignore', 'inherit'] })
      : spawn('nice', ['-n', String(niceness), 'prometheus-pushgateway', ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
  });
  if (niceness !== 0) console.log(`the Pushgateways run at nice ${niceness}`);
  let director: Director | undefined;
  try {
    await Promise.all(ports.map(waitForPort));
    const populateStart = performance.now();
    await Promise.all(ports.map((port, n) => populate(port, n)));
    console.log(`populated ${3 * GROUPS_PER_NODE} groups in ${((performance.now() - populateStart) / 1000).toFixed(1)} s`);

    // What the fleet does with each node's answer (NodeClient.eachGroup), timed alone: the listing reader cuts the
    // elements and parses each, and the fleet keeps of each group its labels, push time and JSON text.
    const parsed: ListedGroup[][] = [];
    const recorded: Buffer[] = [];
    for (const port of ports) {
      const raw = await request(port, '/api/v1/metrics', 'GET', undefined, true);
      recorded.push(Buffer.from(raw.body as string));
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
    const phase = phases(d, () => cpuMsOf(nodes.map((node) => node.pid)));
    await phase('first read after start: /api/v1/metrics waits for the 3 listings', '(none)', async () => [await request(d.port, '/api/v1/metrics')]);
    await phase('/api/v1/metrics, view ready', '2 s', async () => [await request(d.port, '/api/v1/metrics')]);
    await phase('fleet page /?page=150', '1 s', async () => [await request(d.port, '/?page=150')]);
    await phase('/api/v1/fleet/groups?limit=100&offset=20000', '1 s', async () => [await request(d.port, '/api/v1/fleet/groups?limit=100&offset=20000')]);
    await phase('fleet page /?job=bench_7&page=2', '1 s', async () => [await request(d.port, '/?job=bench_7&page=2')]);
    await expire();
    await phase('fleet page / after 5 s: last view served, refresh behind it', '1 s', async () => [await request(d.port, '/')]);
    await bursts(d, phase);
    const metrics = await request(d.port, '/metrics', 'GET', undefined, true);
    const listings = [...(metrics.body ?? '').matchAll(/^pgw_director_fleet_listings_total\{[^}]*\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
    console.log(`\nlistings made by the director over the whole run: ${listings} (at most 3 per 5 s)\n`);
    await stopDirector(d);
    director = undefined;

    // The same bursts with nodes that cost no CPU to list: the listings recorded from the real nodes, replayed at
    // once, as Pushgateways on machines of their own would serve them. What the director does is unchanged: it lists
    // the three nodes (43 MiB to read while it serves the burst), builds the view and renders /api/v1/metrics.
    const replay = await replayNodes(recorded);
    try {
      const r = await startDirector(replay.urls);
      director = r;
      console.log('With the listings replayed by nodes that answer at once (recorded from the real nodes above):\n');
      const replayPhase = phases(r, () => 0);
      await replayPhase('first read after start: /api/v1/metrics waits for the 3 listings', '(none)', async () => [await request(r.port, '/api/v1/metrics')]);
      await bursts(r, replayPhase);
      console.log('');
    } finally {
      await replay.close();
    }
  } finally {
    if (director !== undefined) await stopDirector(director);
    await Promise.all(nodes.map((node) => stopChild(node)));
    agent.destroy();
  }
}
