/**
 * readPush against Node's own HTTP parser: for every request the fast lane takes, Node's server must take it too and
 * read the same method, target, headers and body. Hand-written edge cases, then thousands of random mutations of a
 * plain push. The lane may decline anything (Node's server then answers it); it must never accept more than Node.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';

import { readPush } from '../../lib/http/fast-lane';

type Reading = { method: string; target: string; rawHeaders: string[]; body: string } | 'refused';

/** nodeReads sends raw bytes to Node's HTTP server and returns how it read the first request. */
function nodeReads(port: number, request: Buffer): Promise<Reading> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = Buffer.alloc(0);
    let settled = false;
    const done = (): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const end = received.indexOf('\r\n\r\n');
      const ok = received.subarray(0, 12).toString('latin1') === 'HTTP/1.1 200';
      resolve(ok ? (JSON.parse(received.subarray(end + 4).toString('utf8')) as Reading) : 'refused');
    };
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const end = received.indexOf('\r\n\r\n');
      const length = /content-length: (\d+)/i.exec(received.toString('latin1'))?.[1];
      if (end >= 0 && (length === undefined || received.length >= end + 4 + Number(length))) done();
    });
    socket.on('error', () => undefined);
    socket.on('close', done);
    // A request Node is still waiting on (an incomplete one) counts as not read.
    const timer = setTimeout(done, 300);
    socket.write(request);
  });
}

const PLAIN = 'PUT /metrics/job/j/instance/a HTTP/1.1\r\nHost: d\r\nUser-Agent: t\r\nContent-Length: 4\r\n\r\nm 1\n';

const EDGE_CASES = [
  PLAIN,
  'POST /metrics/job/j?x=1&y=%20 HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n',
  'DELETE /metrics/job/j HTTP/1.1\r\nhost: d\r\n\r\n',
  'PUT /metrics/job/j HTTP/1.1\r\nHost: d\r\nX-A:\tv\t\r\nX-B:  \r\nContent-Length: 4\r\n\r\nm 1\n',
  'PUT /metrics/job/j HTTP/1.1\r\nHost: d\r\nX-Obs: caf\xe9\r\nContent-Length: 4\r\n\r\nm 1\n',
  "PUT /metrics/job/j HTTP/1.1\r\nHost: d\r\nX-!#$%&'*+-.^_`|~: v\r\nContent-Length: 4\r\n\r\nm 1\n",
  'PUT /metrics/job/j HTTP/1.1\r\nHost: d\r\nContent-Length: 0004\r\n\r\nm 1\n',
  'PUT /metrics/job/j HTTP/1.1\r\nHost: d\r\nContent-Length: +4\r\n\r\nm 1\n',
  'PUT /metrics/job/j HTTP/1.1\r\nHost: d\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nm 1\n',
  'PUT /metrics/job/j HTTP/1.1\r\nHost: d\r\nHost: e\r\nContent-Length: 4\r\n\r\nm 1\n',
  'PUT /metrics/job/j HTTP/1.1\r\nContent-Length: 4\r\n\r\nm 1\n',
  'PUT /metrics/job/j HTTP/1.1\nHost: d\nContent-Length: 4\n\nm 1\n',
  'PUT /metrics/job/j HTTP/1.1\r\nHost: d\r\nX-A: a\rb\r\nContent-Length: 4\r\n\r\nm 1\n',
  'PUT /metrics/job/j HTTP/1.1\r\nHost: d\r\nX-A : v\r\nContent-Length: 4\r\n\r\nm 1\n',
  'PUT /metrics/job/j HTTP/1.1\r\nHost: d\r\n: v\r\nContent-Length: 4\r\n\r\nm 1\n',
  'PUT /metrics/job/j HTTP/1.1\r\nHost: d\r\nX-A: v\r\n folded\r\nContent-Length: 4\r\n\r\nm 1\n',
  'PUT /metrics/job/j HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nm 1\n\r\n0\r\n\r\n',
  'PUT /metrics/job/j HTTP/1.0\r\nHost: d\r\nContent-Length: 4\r\n\r\nm 1\n',
  'PUT http://d/metrics/job/j HTTP/1.1\r\nHost: d\r\nContent-Length: 4\r\n\r\nm 1\n',
  'PUT /metrics/job/j#frag HTTP/1.1\r\nHost: d\r\nContent-Length: 4\r\n\r\nm 1\n',
  'PUT /metrics/job/\xe9 HTTP/1.1\r\nHost: d\r\nContent-Length: 4\r\n\r\nm 1\n',
  'PUT /metrics/job/a"b HTTP/1.1\r\nHost: d\r\nContent-Length: 4\r\n\r\nm 1\n',
  'put /metrics/job/j HTTP/1.1\r\nHost: d\r\nContent-Length: 4\r\n\r\nm 1\n',
  '\r\nPUT /metrics/job/j HTTP/1.1\r\nHost: d\r\nContent-Length: 4\r\n\r\nm 1\n',
  'PUT /metrics/job/j HTTP/1.1\r\nHost: d\r\nContent-Length: 10\r\n\r\nm 1\n',
  'PUT /metrics/job/j HTTP/1.1\r\nHost: d\r\nContent-Length: 4\r\n\r\nm 1\nGET / HTTP/1.1\r\n\r\n',
  'PUT /metrics/job/j HTTP/1.1\r\nHost: d\r\nConnection: close, x-a\r\nX-A: v\r\nContent-Length: 4\r\n\r\nm 1\n',
];

/** mutate changes a plain push in one random place: a byte replaced, inserted or deleted. */
function mutate(random: () => number): string {
  const at = Math.floor(random() * PLAIN.length);
  const interesting = [' ', '\t', '\r', '\n', ':', '\0', '\x7f', '\xff', 'A', '/', '%', '"', ',', '0', '9'];
  const byte = random() < 0.7 ? (interesting[Math.floor(random() * interesting.length)] as string) : String.fromCharCode(Math.floor(random() * 256));
  const kind = random();
  if (kind < 0.4) return PLAIN.slice(0, at) + byte + PLAIN.slice(at + 1);
  if (kind < 0.8) return PLAIN.slice(0, at) + byte + PLAIN.slice(at);
  return PLAIN.slice(0, at) + PLAIN.slice(at + 1);
}

/** A small seeded generator, so a failure can be replayed. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

describe('readPush and Node\'s HTTP parser', () => {
  let server: http.Server;
  let port: number;
  before(async () => {
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const reading = { method: req.method, target: req.url, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks).toString('latin1') };
        const body = JSON.stringify(reading);
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
        res.end(body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as net.AddressInfo).port;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  const agree = async (request: string): Promise<boolean> => {
    const bytes = Buffer.from(request, 'latin1');
    const lane = readPush(bytes, '127.0.0.1');
    if (lane === undefined) return false;
    // The lane's claim is about the first request: Node gets exactly the bytes the lane took for it.
    const node = await nodeReads(port, bytes.subarray(0, lane.size));
    assert.notEqual(node, 'refused', `the lane took what Node refuses: ${JSON.stringify(request)}`);
    assert.deepEqual(
      { method: lane.method, target: lane.target, rawHeaders: lane.rawHeaders, body: lane.body.toString('latin1') },
      node,
      JSON.stringify(request),
    );
    return true;
  };

  it('reads every hand-written case Node\'s way, or leaves it to Node', async () => {
    let taken = 0;
    for (const request of EDGE_CASES) if (await agree(request)) taken++;
    // The plain cases are taken; the point is what is not.
    assert.ok(taken >= 8 && taken < EDGE_CASES.length, `took ${taken} of ${EDGE_CASES.length}`);
    assert.equal(readPush(Buffer.from(EDGE_CASES[9] as string, 'latin1'), ''), undefined, 'two Hosts');
    assert.equal(readPush(Buffer.from(EDGE_CASES[11] as string, 'latin1'), ''), undefined, 'bare LF line ends');
  });

  it('agrees with Node on 3,000 random mutations of a plain push', async () => {
    const random = seeded(20261126);
    let taken = 0;
    for (let i = 0; i < 3000; i++) if (await agree(mutate(random))) taken++;
    // Many mutations land in the label value or the body and stay valid pushes: both sides of the check ran.
    assert.ok(taken > 200 && taken < 2900, `took ${taken} of 3000`);
  });
});
