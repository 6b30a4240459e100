/**
 * Hand-off: a push whose owner provably did not receive it (the connection was refused before any byte was
 * written) goes to the node that owns the group once the owner has left the ring, in both lanes; a push that may
 * have reached the owner never does. Real node:http nodes; the dead owner is a port nobody listens on.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';

import request from 'supertest';
import { createLogger } from '../../lib/logger';
import { createMetrics } from '../../lib/metrics';
import type { Node } from '../../lib/core/node';
import { type Downstream, createProxy } from '../../lib/http/proxy';
import { placePush } from '../../lib/http/push';
import { Placement } from '../../lib/placement';
import { type Backend, startBackend } from '../support/backend';
import { Conversation } from '../support/conversation';
import { LogSink, type TestDirector, directorFromFlags } from '../support/director';

/** pathOwnedBy returns a push path the ring gives to `owner`, with its key hash. */
function pathOwnedBy(placement: Placement, owner: string, prefix: string): { path: string; hash: number } {
  for (let i = 0; ; i++) {
    const path = `/metrics/job/${prefix}/i/${i}`;
    const placed = placePush(placement, 'PUT', path);
    if (placed.ok && placed.node.id === owner) return { path, hash: placed.hash };
  }
}

/** deadPort returns a loopback port that refuses connections. */
async function deadPort(): Promise<number> {
  const backend = await startBackend();
  await backend.close();
  return backend.port;
}

describe('hand-off of pushes a refused owner never received', () => {
  const alive: Backend[] = [];
  let director: TestDirector;
  let dead: string;
  let port: number;
  before(async () => {
    alive.push(await startBackend(), await startBackend());
    dead = `127.0.0.1:${await deadPort()}`;
    director = directorFromFlags(['--mode=proxy', '--node', `http://${dead}`, ...alive.flatMap((b) => ['--node', b.url])]);
    port = (await director.listen()).port;
  });
  after(async () => {
    await director.close();
    for (const backend of alive) await backend.close();
  });

  const received = (path: string): string[] =>
    alive.filter((backend) => backend.received.some((r) => r.url === path)).map((backend) => `127.0.0.1:${backend.port}`);

  for (const lane of ['fast', 'node'] as const) {
    it(`delivers it to the owner's successor, counts it and logs it, in the ${lane} lane`, async () => {
      const { path, hash } = pathOwnedBy(director.placement, dead, `handoff-${lane}`);
      const successor = director.placement.ring.lookupExcluding(hash, new Set([dead]));
      assert.ok(successor !== undefined && successor.id !== dead);
      if (lane === 'node') {
        const res = await request(director.server).put(path).send('m 1\n');
        assert.equal(res.status, 200);
      } else {
        const client = new Conversation(port);
        client.write(`PUT ${path} HTTP/1.1\r\nHost: director\r\nContent-Length: 4\r\n\r\nm 1\n`);
        const [answer] = await client.waitFor(1);
        client.close();
        assert.equal(answer?.status, 200);
      }
      assert.deepEqual(received(path), [successor.id]);
      const line = director.log.lines.find((l) => l['msg'] === 'push handed off: its owner did not receive it' && l['url'] === path);
      assert.ok(line, 'no hand-off log line');
      assert.equal(line['level'], 30);
      assert.equal(line['node'], dead);
      assert.equal(line['to'], successor.id);
      const metrics = await request(director.server).get('/metrics');
      assert.match(metrics.text, new RegExp(`pgw_director_pushes_total\\{method="PUT",outcome="handed_off",node="${successor.id}"\\} [1-9]`));
    });
  }

  it('does not hand off a streamed body (over 64 KiB): the client gets the 502', async () => {
    const { path } = pathOwnedBy(director.placement, dead, 'handoff-streamed');
    const res = await request(director.server).put(path).send('x'.repeat(100 * 1024));
    assert.equal(res.status, 502);
    assert.equal(res.text, `pushgateway "${dead}" unreachable: ECONNREFUSED\n`);
    assert.deepEqual(received(path), []);
  });
});

describe('no hand-off once request bytes may have reached the owner', () => {
  it('answers 502 when the owner reads the request, then resets, and the successor gets nothing', async () => {
    let reads = 0;
    const resetter = net.createServer((socket) => {
      socket.on('error', () => undefined);
      socket.once('data', () => {
        reads++;
        socket.resetAndDestroy();
      });
    });
    await new Promise<void>((resolve) => resetter.listen(0, '127.0.0.1', resolve));
    const owner = `127.0.0.1:${(resetter.address() as net.AddressInfo).port}`;
    const other = await startBackend();
    const director = directorFromFlags(['--mode=proxy', '--node', `http://${owner}`, '--node', other.url]);
    director.discovery.start();
    try {
      const { path } = pathOwnedBy(director.placement, owner, 'reset');
      const res = await request(director.server).put(path).send('m 1\n');
      assert.equal(res.status, 502);
      assert.equal(res.text, `pushgateway "${owner}" unreachable: ECONNRESET\n`);
      assert.equal(reads, 1);
      assert.equal(other.received.length, 0);
      assert.equal(director.log.lines.filter((l) => l['msg'] === 'push handed off: its owner did not receive it').length, 0);
    } finally {
      await director.close();
      await other.close();
      resetter.close();
    }
  });

  it('answers 504 when the owner reads the request and never answers, and the successor gets nothing', async () => {
    const silent = await startBackend(() => undefined);
    const other = await startBackend();
    const director = directorFromFlags(['--mode=proxy', '--proxy.timeout=300ms', '--node', silent.url, '--node', other.url]);
    director.discovery.start();
    try {
      const { path } = pathOwnedBy(director.placement, `127.0.0.1:${silent.port}`, 'silent');
      const res = await request(director.server).put(path).send('m 1\n');
      assert.equal(res.status, 504);
      assert.equal(silent.received.length, 1);
      assert.equal(other.received.length, 0);
    } finally {
      await director.close();
      await silent.close();
      await other.close();
    }
  });
});

describe('the proxy\'s onConnectFailure hook', () => {
  /** answer collects what a Downstream is told. */
  function downstream(): { down: Downstream; done: Promise<string> } {
    let settle: (text: string) => void = () => undefined;
    const done = new Promise<string>((resolve) => (settle = resolve));
    let status = 0;
    const down: Downstream = {
      start: (s) => (status = s),
      write: () => true,
      onDrain: () => undefined,
      end: () => settle(String(status)),
      refuse: (s, message) => settle(`${s} ${message}`),
      fail: (s, message) => settle(`${s} ${message}`),
      destroy: () => settle('destroyed'),
    };
    return { down, done };
  }
  const push = { method: 'PUT', target: '/metrics/job/hook', rawHeaders: ['Host', 'x'], connection: undefined, remoteAddress: '127.0.0.1', encrypted: false };
  const nodeAt = (port: number): Node => ({ id: `127.0.0.1:${port}`, url: `http://127.0.0.1:${port}` });

  it('hears of a refused connection with the node and the error, once per attempt', async () => {
    const failures: [string, string][] = [];
    const port = await deadPort();
    const proxy = createProxy(
      { timeoutMs: 2000, maxBodyBytes: 0, onConnectFailure: (node, error) => failures.push([node.id, (error as NodeJS.ErrnoException).code ?? ''] ) },
      createMetrics(new Placement({ vnodes: 1, hashKey: 'grouping-key' })),
      createLogger('error', new LogSink()),
    );
    const { down, done } = downstream();
    proxy.open(push, nodeAt(port), down, Buffer.from('m 1\n'), 0);
    assert.equal(await done, `502 pushgateway "127.0.0.1:${port}" unreachable: ECONNREFUSED`);
    assert.deepEqual(failures, [[`127.0.0.1:${port}`, 'ECONNREFUSED']]);
    await proxy.close();
  });

  it('does not hear of a node that reset the connection after the request was written', async () => {
    const failures: string[] = [];
    const resetter = http.createServer((req) => req.socket.resetAndDestroy());
    await new Promise<void>((resolve) => resetter.listen(0, '127.0.0.1', resolve));
    const port = (resetter.address() as net.AddressInfo).port;
    const proxy = createProxy(
      { timeoutMs: 2000, maxBodyBytes: 0, onConnectFailure: (node) => failures.push(node.id), successor: () => nodeAt(1) },
      createMetrics(new Placement({ vnodes: 1, hashKey: 'grouping-key' })),
      createLogger('error', new LogSink()),
    );
    const { down, done } = downstream();
    proxy.open(push, nodeAt(port), down, Buffer.from('m 1\n'), 0);
    assert.equal(await done, `502 pushgateway "127.0.0.1:${port}" unreachable: ECONNRESET`);
    assert.deepEqual(failures, []);
    await proxy.close();
    resetter.close();
  });
});
