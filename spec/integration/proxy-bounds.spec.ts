/**
 * What one client connection may cost the proxy, in both lanes: pipelined pushes go out one at a time, in order,
 * on one node connection; a client that reads none of its answers stops being read, does not delay anyone else, and
 * is disconnected after --proxy.timeout; the node connections stay bounded by --proxy.max-connections.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';

import { type TestDirector, directorFromFlags } from '../support/director';
import { Conversation } from '../support/conversation';
import { until } from '../support/wait';

/** A push; in Node's lane a GET before the pushes makes the fast lane hand the connection over at once. */
const push = (method: string, path: string, body = ''): string =>
  `${method} ${path} HTTP/1.1\r\nHost: director\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
const LANES = [
  ['the fast lane', ''],
  ["Node's lane", 'GET /-/healthy HTTP/1.1\r\nHost: director\r\n\r\n'],
] as const;

/** CountingNode is a node:http node that counts its connections and the requests in flight at once. */
type CountingNode = { server: http.Server; url: string; connections: number; inFlight: number; maxInFlight: number; order: string[] };

async function startCountingNode(answerBytes: number): Promise<CountingNode> {
  const answer = 'x'.repeat(answerBytes);
  const node: CountingNode = { server: http.createServer(), url: '', connections: 0, inFlight: 0, maxInFlight: 0, order: [] };
  node.server.on('connection', () => node.connections++);
  node.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    node.inFlight++;
    node.maxInFlight = Math.max(node.maxInFlight, node.inFlight);
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      node.order.push(`${req.method ?? ''} ${body}`);
      // Answer on the next turn, so that pushes forwarded at once would overlap.
      setImmediate(() => {
        node.inFlight--;
        res.writeHead(200, { 'Content-Length': answer.length });
        res.end(answer);
      });
    });
  });
  await new Promise<void>((resolve) => node.server.listen(0, '127.0.0.1', resolve));
  node.url = `http://127.0.0.1:${(node.server.address() as net.AddressInfo).port}`;
  return node;
}

describe('pipelined pushes, one at a time', () => {
  for (const [lane, prefix] of LANES) {
    it(`forwards 1,000 pipelined DELETEs over one node connection, one at a time, in ${lane}`, async () => {
      const node = await startCountingNode(0);
      const director = directorFromFlags(['--mode=proxy', '--log.level=warn', '--node', node.url]);
      const { port } = await director.listen();
      try {
        const client = new Conversation(port);
        let bytes = prefix;
        for (let i = 0; i < 1000; i++) bytes += push('DELETE', `/metrics/job/many/i/${i % 7}`);
        client.write(bytes);
        await client.waitFor(prefix === '' ? 1000 : 1001, 60_000);
        client.close();
        assert.equal(node.connections, 1);
        assert.equal(node.maxInFlight, 1);
      } finally {
        await director.close();
        node.server.close();
      }
    });

    it(`forwards 200 pipelined PUTs of one group in the order sent, in ${lane}`, async () => {
      const node = await startCountingNode(0);
      const director = directorFromFlags(['--mode=proxy', '--log.level=warn', '--node', node.url]);
      const { port } = await director.listen();
      try {
        const client = new Conversation(port);
        let bytes = prefix;
        for (let i = 1; i <= 200; i++) bytes += push('PUT', '/metrics/job/order', `v ${i}\n`);
        client.write(bytes);
        await client.waitFor(prefix === '' ? 200 : 201, 60_000);
        client.close();
        assert.deepEqual(
          node.order,
          Array.from({ length: 200 }, (_, i) => `PUT v ${i + 1}\n`),
        );
      } finally {
        await director.close();
        node.server.close();
      }
    });
  }
});

describe('a client that reads none of its answers', () => {
  let node: CountingNode;
  let director: TestDirector;
  let port: number;
  before(async () => {
    node = await startCountingNode(12 * 1024);
    director = directorFromFlags(['--mode=proxy', '--log.level=warn', '--proxy.timeout=2s', '--proxy.max-connections=4', '--node', node.url]);
    port = (await director.listen()).port;
  });
  after(async () => {
    await director.close();
    node.server.close();
  });

  for (const [lane, prefix] of LANES) {



    it(`is not read further, delays nobody, costs under 50 MiB and is disconnected, in ${lane}`, async () => {
      global.gc?.();
      const rssBefore = process.memoryUsage().rss;
      const requestsBefore = node.order.length;
      const greedy = net.connect(port, '127.0.0.1');
      greedy.on('error', () => undefined);
      let greedyClosed = false;
      greedy.on('close', () => (greedyClosed = true));
      // Never read: pause before anything arrives, and keep the receive buffer small.
      greedy.pause();
      let bytes = prefix;
      for (let i = 0; i < 1000; i++) bytes += push('PUT', `/metrics/job/greedy/i/${i}`, 'm 1\n');
      greedy.write(bytes);
      // Enough answers to fill the client's and the director's socket buffers.
      await until(() => node.order.length - requestsBefore >= 100, 'the node to get the greedy pushes', 20_000);

      // Another client is answered at once, meanwhile.
      const other = new Conversation(port);
      const started = Date.now();
      other.write(push('PUT', '/metrics/job/other', 'm 1\n'));
      const [answer] = await other.waitFor(1, 10_000);
      other.close();
      assert.equal(answer?.status, 200);
      assert.ok(Date.now() - started < 1500, `the other client waited ${Date.now() - started}ms`);

      // The greedy client stops being forwarded, far short of its 1,000 pushes, and is cut off.
      // A paused client cannot see the close: the director's count of open connections can.
      const open = (): Promise<number> => new Promise((resolve) => director.server.getConnections((_error, count) => resolve(count)));
      await until(async () => (await open()) === 0, 'the director to disconnect the client that does not read', 20_000);
      greedy.resume();
      await until(() => greedyClosed, 'the client to see its connection closed');
      const forwarded = node.order.length - requestsBefore;
      assert.ok(forwarded < 1000, `all ${forwarded} pushes of a client that reads nothing were forwarded`);
      const grown = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
      assert.ok(grown < 50, `RSS grew ${grown.toFixed(1)} MiB`);
    });
  }
});
