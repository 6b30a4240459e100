/**
 * Pushes to one node share its connections: up to --proxy.pipelining of them in flight on each (HTTP/1.1
 * pipelining), each client answered with its own node answer, and the pushes written to a node within one turn of
 * the event loop leave in one write. The count of TCP segments comes from the kernel (`ss -ti`, data_segs_out).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import type net from 'node:net';
import { describe, it } from 'node:test';

import type { Node } from '../../lib/core/node';
import { type Downstream, createProxy } from '../../lib/http/proxy';
import { createLogger } from '../../lib/logger';
import { createMetrics } from '../../lib/metrics';
import { Placement } from '../../lib/placement';
import { LogSink, directorFromFlags } from '../support/director';
import { until } from '../support/wait';

/** HoldingNode answers nothing until `expected` requests are in flight, then each with its own path. */
type HoldingNode = { server: http.Server; url: string; connections: number; port: number; received: number };

async function startHoldingNode(expected: number): Promise<HoldingNode> {
  const held: [http.IncomingMessage, http.ServerResponse][] = [];
  const node: HoldingNode = { server: http.createServer(), url: '', connections: 0, port: 0, received: 0 };
  node.server.on('connection', () => node.connections++);
  node.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    req.resume();
    node.received++;
    held.push([req, res]);
    if (held.length < expected) return;
    for (const [heldReq, heldRes] of held.splice(0)) heldRes.end(heldReq.url);
  });
  await new Promise<void>((resolve) => node.server.listen(0, '127.0.0.1', resolve));
  node.port = (node.server.address() as net.AddressInfo).port;
  node.url = `http://127.0.0.1:${node.port}`;
  return node;
}

/** put pushes to the director on a connection of its own and resolves with the answer's status and body. */
function put(port: number, path: string): Promise<[number, string]> {
  return new Promise((resolve, reject) => {
    const req = http.request({ port, host: '127.0.0.1', method: 'PUT', path, agent: false }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve([res.statusCode ?? 0, body]));
    });
    req.on('error', reject);
    req.end('m 1\n');
  });
}

/** dataSegmentsTo sums the data segments this process's connections to `port` have sent (Linux: ss -ti). */
function dataSegmentsTo(port: number): number {
  const out = execFileSync('ss', ['-tinH', 'state', 'established', 'dst', `127.0.0.1:${port}`]).toString();
  return [...out.matchAll(/data_segs_out:(\d+)/g)].reduce((sum, match) => sum + Number(match[1]), 0);
}

describe('pushes to one node', () => {
  for (const [pipelining, most] of [
    [8, 2],
    [1, 16],
  ] as const) {
    it(`share its connections, ${pipelining} in flight on each at most, with --proxy.pipelining=${pipelining}`, async () => {
      const node = await startHoldingNode(16);
      const director = directorFromFlags(['--mode=proxy', '--node.health-interval=0', `--proxy.pipelining=${pipelining}`, '--node', node.url]);
      const { port } = await director.listen();
      const paths = Array.from({ length: 16 }, (_, i) => `/metrics/job/shared/instance/${i}`);
      const answers = await Promise.all(paths.map((path) => put(port, path)));
      // Every client has its own push's answer, although up to eight were answered on one connection.
      assert.deepEqual(
        answers,
        paths.map((path) => [200, path]),
      );
      assert.ok(node.connections <= most, `${node.connections} connections to the node`);
      await director.close();
      node.server.close();
    });
  }

  it('written in one turn of the event loop leave in one write', async () => {
    const node = await startHoldingNode(5);
    const proxy = testProxy({ timeoutMs: 5000, pipelining: 8 });
    const target: Node = { id: `127.0.0.1:${node.port}`, url: node.url };
    // One connection, with a push in flight on it (as under load: a connection that just went idle is checked for
    // bytes its node sent unasked before undici writes to it again, and meanwhile pushes go to new connections).
    const first = pushTo(proxy, target, '/metrics/job/first').done;
    await until(() => node.received === 1, 'the first push to reach the node');
    const before = dataSegmentsTo(node.port);
    const paths = ['a', 'b', 'c', 'd'].map((name) => `/metrics/job/turn/instance/${name}`);
    assert.deepEqual(await Promise.all(paths.map((path) => pushTo(proxy, target, path).done)), paths.map((path) => `200 ${path}`));
    assert.equal(await first, '200 /metrics/job/first');
    assert.equal(node.connections, 1);
    assert.equal(dataSegmentsTo(node.port) - before, 1, 'the four pushes left in more than one segment');
    await proxy.close();
    node.server.close();
  });
});

describe('a push given up on', () => {
  it('while the answer before it on its connection is under way disturbs neither: its answer is dropped as it comes', async () => {
    // The first push's answer begins, then stalls past the second push's --proxy.timeout. Closing the connection
    // for the second would make undici send the first again, its answer half relayed.
    const node = await startRecordingNode((req, res) => {
      if (req.url === '/metrics/job/first') {
        res.writeHead(200, { 'Content-Length': 10 });
        res.write('01234');
      }
      if (req.url === '/metrics/job/third') res.end();
    });
    const { requests, responses, target } = node;
    const proxy = testProxy({ timeoutMs: 300, pipelining: 8 });

    const first = pushTo(proxy, target, '/metrics/job/first');
    await until(() => first.body.length === 5, 'the first answer to begin');
    const second = pushTo(proxy, target, '/metrics/job/second');
    assert.match(await second.done, /^504 /);
    (responses[0] as http.ServerResponse).end('56789');
    assert.equal(await first.done, '200 0123456789');
    assert.equal(first.heads, 1);
    await until(() => responses.length === 2, 'the second push to reach the node');
    (responses[1] as http.ServerResponse).end('dropped');
    assert.equal(await pushTo(proxy, target, '/metrics/job/third').done, '200 ');
    assert.deepEqual(requests, ['/metrics/job/first', '/metrics/job/second', '/metrics/job/third']);
    assert.equal(node.connections, 1);
    await proxy.close();
    node.server.close();
  });

  it('before it was written is never written, and its connection stays', async () => {
    const node = await startRecordingNode((req, res) => {
      if (req.url !== '/metrics/job/first') res.end();
    });
    const { requests, responses, target } = node;
    // One connection, one push on it at a time: the second waits for it.
    const proxy = testProxy({ timeoutMs: 300, maxConnections: 1, pipelining: 1 });

    const first = pushTo(proxy, target, '/metrics/job/first');
    await until(() => requests.length === 1, 'the first push to reach the node');
    const second = pushTo(proxy, target, '/metrics/job/second');
    assert.match(await second.done, /^504 /);
    assert.match(await first.done, /^504 /);
    (responses[0] as http.ServerResponse).end();
    assert.equal(await pushTo(proxy, target, '/metrics/job/third').done, '200 ');
    assert.deepEqual(requests, ['/metrics/job/first', '/metrics/job/third']);
    assert.equal(node.connections, 1);
    await proxy.close();
    node.server.close();
  });
});

/** RecordingNode records the paths it is asked for and keeps every answer for its spec to end. */
type RecordingNode = { server: http.Server; target: Node; requests: string[]; responses: http.ServerResponse[]; connections: number };

async function startRecordingNode(answer: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<RecordingNode> {
  const server = http.createServer();
  const node: RecordingNode = { server, target: { id: '', url: '' }, requests: [], responses: [], connections: 0 };
  server.on('connection', () => node.connections++);
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    req.resume();
    node.requests.push(req.url ?? '');
    node.responses.push(res);
    answer(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  node.target = { id: `127.0.0.1:${port}`, url: `http://127.0.0.1:${port}` };
  return node;
}

/** testProxy is a proxy of its own, outside a director. */
function testProxy(options: { timeoutMs: number; maxConnections?: number; pipelining?: number }): ReturnType<typeof createProxy> {
  return createProxy(
    { maxBodyBytes: 0, ...options },
    createMetrics(new Placement({ vnodes: 1, hashKey: 'grouping-key' })),
    createLogger('error', new LogSink()),
  );
}

/** A push through `proxy`: what its client received so far, and a promise of `<status> <body>` or the refusal. */
type Pushed = { body: string; heads: number; done: Promise<string> };

function pushTo(proxy: ReturnType<typeof createProxy>, target: Node, path: string): Pushed {
  const pushed: Pushed = { body: '', heads: 0, done: Promise.resolve('') };
  let status = 0;
  pushed.done = new Promise((resolve) => {
    const down: Downstream = {
      start: (code) => {
        status = code;
        pushed.heads++;
      },
      write: (chunk) => {
        pushed.body += chunk.toString();
        return true;
      },
      onDrain: () => undefined,
      end: () => resolve(`${status} ${pushed.body}`),
      refuse: (code, message) => resolve(`${code} ${message}`),
      fail: (code, message) => resolve(`${code} ${message}`),
      destroy: () => resolve('destroyed'),
    };
    const push = { method: 'PUT', target: path, rawHeaders: ['Host', 'x'], connection: undefined, remoteAddress: '127.0.0.1', encrypted: false };
    proxy.open(push, target, down, Buffer.from('m 1\n'), 0);
  });
  return pushed;
}
