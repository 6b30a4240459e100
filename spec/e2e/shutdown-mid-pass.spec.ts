import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

import { freePort } from '../support/processes';
import { type Pushgateway, startPushgateway } from '../support/pushgateway';
import { until } from '../support/wait';

const BIN = join(__dirname, '..', '..', 'bin', 'pgw-director.js');
/** Enough groups that half of them take seconds to move, so SIGTERM lands in the middle of the pass. */
const GROUPS = 2000;

/** pushAll puts GROUPS groups on one node, over a few kept-alive connections. */
async function pushAll(pgw: Pushgateway): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const one = (i: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: pgw.port, method: 'PUT', path: `/metrics/job/shutdown/instance/h${i}`, agent }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`push ${i}: ${res.statusCode}`))));
      });
      req.on('error', reject);
      req.end(`# TYPE shutdown_value gauge\nshutdown_value ${i}\n`);
    });
  let next = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < GROUPS) await one(next++);
  }));
  agent.destroy();
}

describe('SIGTERM in the middle of a reconciliation pass (real director and Pushgateways)', () => {
  const pgws: Pushgateway[] = [];
  after(async () => {
    await Promise.all(pgws.map((pgw) => pgw.stop()));
  });

  it('stops the pass after the moves it made: the director exits at once and every group is on exactly one node', async () => {
    const [a, b] = await Promise.all([startPushgateway(), startPushgateway()]);
    assert.ok(a && b);
    pgws.push(a, b);
    await pushAll(a);
    const port = await freePort();
    const child = spawn(
      process.execPath,
      [BIN, `--web.listen-address=127.0.0.1:${port}`, `--node=${a.url}`, `--node=${b.url}`, '--reconcile.migrate', '--reconcile.interval=1h'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let log = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (text: string) => (log += text));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await until(() => log.includes('migrating the group to its owner'), 'the pass starts moving groups', 30_000);
      child.kill('SIGTERM');
      // The pass has about a thousand moves to make; a director that waited for them all would log its report first.
      assert.equal(await exited, 0);
    } finally {
      child.kill('SIGKILL');
    }
    assert.match(log, /reconciliation pass stopped early/);
    const done = log.split('\n').find((line) => line.includes('"msg":"reconciliation pass done"'));
    assert.ok(done !== undefined, 'the stopped pass still reports');
    const report = JSON.parse(done) as { misplaced: number; migrated: number };
    assert.ok(report.migrated < report.misplaced, `the pass was stopped before its end (${report.migrated} of ${report.misplaced} moved)`);

    // One copy per group: every group is somewhere, none is on both nodes.
    const held = new Map<string, number>();
    for (const pgw of [a, b]) for (const group of await pgw.groups()) held.set(group.labels['instance'] ?? '', (held.get(group.labels['instance'] ?? '') ?? 0) + 1);
    assert.equal(held.size, GROUPS);
    assert.deepEqual([...held].filter(([, copies]) => copies !== 1), []);
  });
});
