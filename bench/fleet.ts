/**
 * `npm run bench fleet`: the fleet views over 3 real Pushgateways holding 10,000 groups each (5 metric families per
 * group). Prints how long /api/v1/metrics and a page of the fleet view take, cold (the nodes listed) and warm (the
 * 5 s cache), how long the director's event loop was held at most meanwhile, and the longest push proxied through
 * the director while it served the reads. A benchmark: it prints numbers, it asserts nothing.
 */
import { type ChildProcess, fork, spawn } from 'node:child_process';
import http from 'node:http';
import { join } from 'node:path';

import { groupFromApi } from '../lib/core/group';
import { freePort, stopChild, waitForPort } from '../spec/support/processes';

const GROUPS_PER_NODE = Number(process.env['BENCH_FLEET_GROUPS'] ?? 10_000);
const FAMILIES = 5;
const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });

type Answer = { status: number; bytes: number; ms: number; body?: string };

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
        resolve({ status: res.statusCode ?? 0, bytes, ms: performance.now() - started, ...(keep ? { body: Buffer.concat(chunks).toString('utf8') } : {}) }),
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
  const child = fork(join(__dirname, 'fleet-director.js'), [
    '--web.listen-address=127.0.0.1:0',
    '--mode=proxy',
    '--reconcile.interval=0',
    '--log.level=warn',
    ...nodeUrls.flatMap((url) => ['--node', url]),
  ]);
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

    // What NodeClient.listGroups does with one node's answer, timed alone: JSON.parse and groupFromApi, blocking.
    const raw = await request(ports[0], '/api/v1/metrics', 'GET', undefined, true);
    const parseStart = performance.now();
    const doc = JSON.parse(raw.body as string) as { data: unknown[] };
    for (const group of doc.data) groupFromApi(group);
    const parseMs = performance.now() - parseStart;
    console.log(`one node's /api/v1/metrics: ${(raw.bytes / 2 ** 20).toFixed(1)} MiB, served by the Pushgateway in ${fmt(raw.ms)}; JSON.parse + groupFromApi in one piece: ${fmt(parseMs)}\n`);

    director = await startDirector(ports.map((port) => `http://127.0.0.1:${port}`));
    const d = director;
    const phase = async (name: string, target: string, run: () => Promise<Answer[]>): Promise<void> => {
      await d.ask('reset');
      const probe = pushProbe(d.port);
      const started = performance.now();
      const answers = await run();
      const wallMs = performance.now() - started;
      const pushes = await probe.stop();
      const stats = await d.ask('stats');
      const statuses = [...new Set(answers.map((a) => a.status))].join(',');
      const bytes = answers.reduce((sum, a) => sum + a.bytes, 0) / answers.length;
      console.log(
        `| ${name} | ${fmt(Math.max(...answers.map((a) => a.ms)))} | ${target} | ${(bytes / 2 ** 20).toFixed(2)} MiB, HTTP ${statuses} | ${fmt(stats['maxMs'] ?? 0)} | ${pushes.count} pushes (${pushes.failed} failed), slowest ${fmt(pushes.maxMs)} | ${fmt(wallMs)} |`,
      );
    };
    const expire = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 5500));

    console.log('| read | slowest answer | target | size | director event loop held at most | pushes proxied meanwhile | wall |');
    console.log('|---|---|---|---|---|---|---|');
    await phase('/api/v1/metrics, cold (lists 3 nodes)', '2 s', async () => [await request(d.port, '/api/v1/metrics')]);
    await phase('/api/v1/metrics, warm (cached)', '2 s', async () => [await request(d.port, '/api/v1/metrics')]);
    await phase('fleet page /?page=150, warm', '1 s', async () => [await request(d.port, '/?page=150')]);
    await phase('/api/v1/fleet/groups?limit=100&offset=20000, warm', '1 s', async () => [await request(d.port, '/api/v1/fleet/groups?limit=100&offset=20000')]);
    await phase('fleet page /?job=bench_7&page=2, warm', '1 s', async () => [await request(d.port, '/?job=bench_7&page=2')]);
    await expire();
    await phase('fleet page /, cold (lists 3 nodes)', '1 s', async () => [await request(d.port, '/')]);
    await expire();
    await phase('20 readers at once (metrics, page, groups), cold', '2 s', () =>
      Promise.all(Array.from({ length: 20 }, (_, i) => request(d.port, ['/api/v1/metrics', '/', '/api/v1/fleet/groups?limit=100'][i % 3] as string))),
    );
    const metrics = await request(d.port, '/metrics', 'GET', undefined, true);
    const listings = [...(metrics.body ?? '').matchAll(/^pgw_director_fleet_listings_total\{[^}]*\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
    console.log(`\nlistings made by the director over the whole run: ${listings} (3 per cold phase: 9 expected)\n`);
  } finally {
    if (director !== undefined) {
      director.child.send('exit');
      await new Promise((resolve) => director?.child.once('exit', resolve));
    }
    await Promise.all(nodes.map((node) => stopChild(node)));
    agent.destroy();
  }
}
