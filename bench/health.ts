/**
 * npm run bench:health: the CPU the health checks of 100 nodes cost the director, as a share of one core.
 *
 * 100 node:http servers answering `/-/healthy` run in a child process (their CPU is not counted). This process runs
 * the director's HealthChecker with its real NodeClient against them, at the default interval (5s) and at 500ms, and
 * reads its own CPU time (process.cpuUsage) over the run, after one warm-up round. The same process idle for the
 * same time is the baseline: its CPU is subtracted. A benchmark, not a test: it prints numbers and exits 0.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

import { murmur3 } from '../lib/core/hash';
import { createLogger } from '../lib/logger';
import { createHealthChecker } from '../lib/health';
import type { Node } from '../lib/core/node';
import { createNodeClient } from '../lib/nodes/client';
import { stopChild } from '../spec/support/processes';

const NODES = Number(process.env['BENCH_NODES'] ?? 100);
const seconds = Number(process.env['BENCH_SECONDS'] ?? 30);

// Listens on `count` kernel-chosen loopback ports and prints them, one JSON array on stdout.
const SERVERS = `
const http = require('node:http');
const count = Number(process.argv[1]);
const ports = [];
for (let i = 0; i < count; i++) {
  const server = http.createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': 3 });
    res.end('OK\\n');
  });
  // Keep idle connections like the Pushgateway (Go's server keeps them), not Node's 5s.
  server.keepAliveTimeout = 120000;
  server.listen(0, '127.0.0.1', () => {
    ports.push(server.address().port);
    if (ports.length === count) process.stdout.write(JSON.stringify(ports) + '\\n');
  });
}
`;

/**
 * calibrate times, in CPU time, what the other benches calibrate against (murmur3 of a ~60-character key through
 * Buffer.from, 185 ns when their baselines were measured) and returns how many times slower this machine runs now.
 */
function calibrate(): number {
  const keys = Array.from({ length: 1000 }, (_, i) => `/metrics/job/backup_${i % 97}/instance/host-${i}.dc1.example/shard/${i % 13}`.split('').join(''));
  let sink = 0;
  const rounds: number[] = [];
  for (let r = 0; r < 9; r++) {
    const t0 = process.cpuUsage();
    for (let i = 0; i < 200; i++) for (const key of keys) sink ^= murmur3(Buffer.from(key));
    const used = process.cpuUsage(t0);
    rounds.push(((used.user + used.system) * 1000) / (200 * keys.length));
  }
  const ns = rounds.sort((a, b) => a - b)[4] as number;
  console.log(`calibration: murmur3(Buffer.from(60-char key)) ${ns.toFixed(0)} ns of CPU here, 185 ns on the baselines' machine: ${(ns / 185).toFixed(2)}x${sink < 0 ? ' ' : ''}\n`);
  return ns / 185;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** cpuPercent runs `during` for `ms` and returns this process's CPU time over that span as a % of one core. */
async function cpuPercent(ms: number, during: () => Promise<void> = () => sleep(ms)): Promise<number> {
  const start = process.cpuUsage();
  const wall = process.hrtime.bigint();
  await during();
  const used = process.cpuUsage(start);
  const elapsedUs = Number(process.hrtime.bigint() - wall) / 1000;
  return ((used.user + used.system) / elapsedUs) * 100;
}

async function main(): Promise<void> {
  const servers = spawn(process.execPath, ['-e', SERVERS, String(NODES)], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const first = await createInterface({ input: servers.stdout })[Symbol.asyncIterator]().next();
    const ports = JSON.parse(String(first.value)) as number[];
    const nodes: Node[] = ports.map((port) => ({ id: `127.0.0.1:${port}`, url: `http://127.0.0.1:${port}` }));
    const logger = createLogger('warn');
    const client = createNodeClient({ timeoutMs: 2000 });
    let publishes = 0;
    const target = { update: () => void publishes++ };

    console.log(`## Health checks: ${NODES} nodes, ${seconds}s per run, CPU of the checking process as % of one core\n`);
    const slowdown = calibrate();
    console.log('| interval | checks/s | CPU idle (baseline) | CPU checking | cost of the checks | at baseline speed | per check |');
    console.log('|---|---|---|---|---|---|---|');
    for (const intervalMs of [5000, 500]) {
      const idle = await cpuPercent(seconds * 1000);
      const checker = createHealthChecker({ intervalMs, timeoutMs: Math.min(2000, intervalMs), fall: 3, rise: 2 }, { target, client, logger });
      checker.update(nodes);
      checker.start();
      await sleep(intervalMs + 500); // warm-up: one round of checks, connections opened
      const checking = await cpuPercent(seconds * 1000);
      await checker.stop();
      const down = checker.statuses().filter((status) => !status.health.up).length;
      if (down > 0) console.log(`(${down} nodes were down: the numbers below are not clean)`);
      const checksPerSecond = (NODES * 1000) / intervalMs;
      const cost = checking - idle;
      const perCheckUs = ((cost / 100) * 1e6) / checksPerSecond;
      console.log(
        `| ${intervalMs}ms | ${checksPerSecond.toFixed(0)} | ${idle.toFixed(3)}% | ${checking.toFixed(3)}% | ${cost.toFixed(3)}% | ` +
          `${(cost / slowdown).toFixed(3)}% | ${perCheckUs.toFixed(0)} µs |`,
      );
    }
    console.log(`\ntarget: < 1% of one core for ${NODES} nodes at the default interval (5s)`);
  } finally {
    await stopChild(servers);
  }
}

void main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
