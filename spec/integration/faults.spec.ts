import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import http from 'node:http';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import request from 'supertest';

import { parseGroupingKey } from '../../lib/core/grouping-key';
import { startBackend } from '../support/backend';
import { directorFromFlags } from '../support/director';
import { freePort, httpRequest } from '../support/pushgateway';

const BIN = join(__dirname, '..', '..', 'bin', 'pgw-director.js');
const NODES = Array.from({ length: 7 }, (_, i) => `http://10.0.${i}.1:9091`);

async function startBin(port: number, nodes: string[]): Promise<ChildProcess> {
  // The nodes are never contacted (the spec reads the 307s only): no health checks, which would contact them.
  const args = [`--web.listen-address=127.0.0.1:${port}`, '--log.level=warn', '--node.health-interval=0', '--reconcile.interval=0'];
  const child = spawn(process.execPath, [BIN, ...args, ...nodes.flatMap((n) => ['--node', n])], {
    stdio: 'ignore',
  });
  for (let i = 0; i < 100; i++) {
    try {
      if ((await httpRequest(`http://127.0.0.1:${port}/-/ready`)).status === 200) return child;
    } catch {
      // not up yet
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  child.kill('SIGKILL');
  throw new Error('the director did not start');
}

describe('faults', () => {
  it('answers 502 when the node dies in the middle of a proxied push, and keeps serving', async () => {
    const backend = await startBackend();
    backend.server.removeAllListeners('request');
    backend.server.on('request', (req: http.IncomingMessage) => req.once('data', () => req.socket.destroy()));
    const director = directorFromFlags(['--mode=proxy', '--node', backend.url]);
    const { port } = await director.listen();
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({ port, method: 'PUT', path: '/metrics/job/dies' }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      let sent = 0;
      const pump = (): void => {
        while (sent < 64) {
          sent++;
          if (!req.write(Buffer.alloc(256 * 1024, 0x61))) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    }).catch(() => 0);
    // The node died before answering: the client hears 502, never a silent success.
    assert.equal(status, 502);
    const metrics = await director.metrics.registry.metrics();
    assert.match(metrics, new RegExp(`pgw_director_pushes_total\\{method="PUT",outcome="upstream_error",node="127\\.0\\.0\\.1:${backend.port}"\\} 1`));
    const healthy = await httpRequest(`http://127.0.0.1:${port}/-/healthy`);
    assert.equal(healthy.status, 200);
    await director.close();
    await backend.close();
  });

  it('makes the same placements after being killed with SIGKILL and restarted: it keeps no state', async () => {
    const port = await freePort();
    const paths = Array.from({ length: 300 }, (_, i) => `/metrics/job/j${i % 17}/instance/i${i}`);
    const locations = async (): Promise<string[]> => {
      const out: string[] = [];
      for (const path of paths) out.push((await httpRequest(`http://127.0.0.1:${port}${path}`, { method: 'PUT' })).headers['location'] as string);
      return out;
    };
    let child = await startBin(port, NODES);
    const before = await locations();
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    child = await startBin(port, [...NODES].reverse());
    const after = await locations();
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
    assert.deepEqual(after, before);
    assert.equal(new Set(before.map((l) => new URL(l).host)).size, NODES.length);
  });

  it('exits 0 on SIGTERM even while a client holds a keep-alive connection open', async () => {
    const port = await freePort();
    const child = await startBin(port, NODES);
    const net = await import('node:net');
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve) => {
      socket.once('data', () => resolve());
      socket.write('PUT /metrics/job/a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n');
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const started = Date.now();
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.ok(Date.now() - started < 3000, `took ${Date.now() - started}ms`);
    socket.destroy();
  });

  it('agrees with a replica given the same nodes in another order on all of 10,000 keys', async () => {
    const shuffled = [...NODES].sort(() => Math.random() - 0.5);
    const a = directorFromFlags(NODES.flatMap((n) => ['--node', n]));
    const b = directorFromFlags(shuffled.flatMap((n) => ['--node', n]));
    a.discovery.start();
    b.discovery.start();
    let agreed = 0;
    for (let i = 0; i < 10000; i++) {
      const parsed = parseGroupingKey(`/metrics/job/batch_${i % 101}/instance/host-${i}/shard/${i % 7}`);
      assert.ok(parsed.ok);
      if (a.placement.owner(parsed.key, parsed.path)?.id === b.placement.owner(parsed.key, parsed.path)?.id) agreed++;
    }
    assert.equal(agreed, 10000);
    // And over HTTP, for a sample.
    for (let i = 0; i < 50; i++) {
      const path = `/metrics/job/batch_${i}`;
      assert.equal((await request(a.server).put(path)).headers['location'], (await request(b.server).put(path)).headers['location']);
    }
  });
});
