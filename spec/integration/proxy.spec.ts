import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';

import request from 'supertest';

import { type Backend, startBackend } from '../support/backend';
import { type TestDirector, directorFromFlags } from '../support/director';
import { until } from '../support/wait';

describe('proxy mode', () => {
  let backend: Backend;
  let director: TestDirector;
  before(async () => {
    backend = await startBackend((req, res, received) => {
      if (received.url.includes('/status/')) {
        const status = Number(/\/status\/(\d+)/.exec(received.url)?.[1]);
        res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'X-From-Node': 'yes' });
        res.end(`answer ${status}\n`);
        return;
      }
      if (received.url.includes('/hop-answer')) {
        res.writeHead(200, {
          Connection: 'X-Node-Hop',
          'X-Node-Hop': '1',
          'Keep-Alive': 'timeout=9',
          'Proxy-Authenticate': 'Basic',
          'X-End-To-End': 'kept',
          'Content-Length': 0,
        });
        res.end();
        return;
      }
      res.writeHead(200, { 'Content-Length': 0, 'X-From-Node': 'yes' });
      res.end();
    });
    director = directorFromFlags(['--mode=proxy', '--node', `${backend.url}/prefix`]);
    director.discovery.start();
  });
  after(async () => {
    await director.close();
    await backend.close();
  });

  it('forwards method, path as received, query and body, and relays the answer', async () => {
    const res = await request(director.server)
      .put('/metrics/job/j/v/a%20b?x=1')
      .set('Content-Type', 'text/plain; version=0.0.4')
      .set('Authorization', 'Basic dXNlcjpwYXNz')
      .send('m 1\n');
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-from-node'], 'yes');
    const seen = backend.received.at(-1);
    assert.ok(seen);
    assert.equal(seen.method, 'PUT');
    assert.equal(seen.url, '/prefix/metrics/job/j/v/a%20b?x=1');
    assert.equal(seen.body, 'm 1\n');
    assert.equal(seen.headers['content-type'], 'text/plain; version=0.0.4');
    assert.equal(seen.headers['authorization'], 'Basic dXNlcjpwYXNz');
    assert.equal(seen.headers['host'], `127.0.0.1:${backend.port}`);
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    assert.match(seen.headers['x-forwarded-host'] as string, /^127\.0\.0\.1:\d+$/);
    assert.match(seen.headers['x-forwarded-for'] as string, /127\.0\.0\.1$/);
  });

  for (const status of [202, 400, 401, 405, 500]) {
    it(`relays a ${status} with its body`, async () => {
      const res = await request(director.server).post(`/metrics/job/j/status/${status}`).send('m 1\n');
      assert.equal(res.status, status);
      assert.equal(res.text, `answer ${status}\n`);
      assert.equal(res.headers['x-from-node'], 'yes');
    });
  }

  it('drops hop-by-hop headers and those named in Connection', async () => {
    await request(director.server)
      .post('/metrics/job/hop')
      .set('Connection', 'keep-alive, X-Secret-Hop')
      .set('X-Secret-Hop', '1')
      .set('Keep-Alive', 'timeout=5')
      .set('TE', 'trailers')
      .set('Upgrade', 'h2c')
      .set('Proxy-Authorization', 'Basic eDp5')
      .set('X-End-To-End', 'kept')
      .send('m 1\n');
    const seen = backend.received.at(-1);
    assert.ok(seen);
    for (const name of ['x-secret-hop', 'keep-alive', 'te', 'upgrade', 'proxy-authorization']) {
      assert.equal(seen.headers[name], undefined, name);
    }
    assert.equal(seen.headers['x-end-to-end'], 'kept');
  });

  it('drops the hop-by-hop headers of the node\'s answer, and those its Connection names', async () => {
    const res = await request(director.server).post('/metrics/job/hop-answer').send('m 1\n');
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-node-hop'], undefined);
    assert.equal(res.headers['proxy-authenticate'], undefined);
    // The director's own keep-alive terms, not the node's.
    assert.notEqual(res.headers['keep-alive'], 'timeout=9');
    assert.equal(res.headers['x-end-to-end'], 'kept');
  });

  it('appends to an X-Forwarded-For it was given', async () => {
    await request(director.server).post('/metrics/job/xff').set('X-Forwarded-For', '203.0.113.7').send('m 1\n');
    assert.match(backend.received.at(-1)?.headers['x-forwarded-for'] as string, /^203\.0\.113\.7, 127\.0\.0\.1$/);
  });

  it('streams a 64 MiB body intact', async () => {
    const chunk = randomBytes(1024 * 1024);
    const expected = createHash('sha256');
    for (let i = 0; i < 64; i++) expected.update(chunk);
    const address = await director.listen();
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const req = http.request({ port: address.port, method: 'PUT', path: '/metrics/job/big' }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        let sent = 0;
        Readable.from(
          (function* () {
            while (sent++ < 64) yield chunk;
          })(),
        ).pipe(req);
      });
      assert.equal(status, 200);
      const seen = backend.received.at(-1);
      assert.equal(seen?.bytes, 64 * 1024 * 1024);
      assert.equal(seen?.sha256, expected.digest('hex'));
    } finally {
      director.server.close();
    }
  });
});

describe('proxy errors', () => {
  it('answers 502 naming the node when it refuses the connection', async () => {
    const closed = await startBackend();
    await closed.close();
    const director = directorFromFlags(['--mode=proxy', '--node', closed.url]);
    director.discovery.start();
    const res = await request(director.server).put('/metrics/job/j').send('m 1\n');
    assert.equal(res.status, 502);
    assert.equal(res.text, `pushgateway "127.0.0.1:${closed.port}" unreachable: ECONNREFUSED\n`);
    await director.close();
  });

  it('answers 502 when the node resets the connection', async () => {
    const backend = await startBackend((req) => req.socket.destroy());
    const director = directorFromFlags(['--mode=proxy', '--node', backend.url]);
    director.discovery.start();
    const res = await request(director.server).put('/metrics/job/j').send('m 1\n');
    assert.equal(res.status, 502);
    assert.match(res.text, /^pushgateway "127\.0\.0\.1:\d+" closed the connection before its answer was complete\n$/);
    await director.close();
    await backend.close();
  });

  for (const [name, answer, reason] of [
    ['a bare LF inside a header', 'HTTP/1.1 200 OK\r\nX-Bad: a\nSet-Cookie: x\r\nContent-Length: 0\r\n\r\n', 'missing expected cr after header value'],
    ['a space before the colon', 'HTTP/1.1 200 OK\r\nX-Bad : a\r\nContent-Length: 0\r\n\r\n', 'invalid header token'],
    ['a NUL in the reason phrase', 'HTTP/1.1 200 O\0K\r\nContent-Length: 0\r\n\r\n', 'invalid reason phrase'],
    ['two different Content-Lengths', 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab', 'body length does not match content-length'],
  ] as const) {
    it(`answers 502 when the node's answer has ${name}, relaying none of it`, async () => {
      const node = net.createServer((socket) => {
        socket.once('data', () => socket.end(answer));
        socket.on('error', () => undefined);
      });
      await new Promise<void>((resolve) => node.listen(0, '127.0.0.1', resolve));
      const port = (node.address() as net.AddressInfo).port;
      const director = directorFromFlags(['--mode=proxy', '--node', `http://127.0.0.1:${port}`]);
      director.discovery.start();
      const res = await request(director.server).put('/metrics/job/j').send('m 1\n');
      assert.equal(res.status, 502);
      assert.equal(res.text, `pushgateway "127.0.0.1:${port}" sent a malformed answer: ${reason}\n`);
      assert.equal(res.headers['set-cookie'], undefined);
      await director.close();
      node.close();
    });
  }

  it('answers 504 naming the node when it sends no headers in time, and never retries elsewhere', async () => {
    const silent = await startBackend(() => undefined);
    const other = await startBackend();
    const director = directorFromFlags(['--mode=proxy', '--proxy.timeout=300ms', '--node', silent.url]);
    director.discovery.start();
    const res = await request(director.server).put('/metrics/job/j').send('m 1\n');
    assert.equal(res.status, 504);
    assert.equal(res.text, `pushgateway "127.0.0.1:${silent.port}" did not answer within 300ms\n`);
    assert.equal(silent.received.length, 1);
    assert.equal(other.received.length, 0);
    await director.close();
    await silent.close();
    await other.close();
  });

  it('answers 413 before forwarding when Content-Length is over --proxy.max-body', async () => {
    const backend = await startBackend();
    const director = directorFromFlags(['--mode=proxy', '--proxy.max-body=1KiB', '--node', backend.url]);
    director.discovery.start();
    const res = await request(director.server).put('/metrics/job/j').send('x'.repeat(2000));
    assert.equal(res.status, 413);
    assert.equal(res.text, 'push body of 2000 bytes exceeds --proxy.max-body of 1024 bytes\n');
    assert.equal(backend.received.length, 0);
    const small = await request(director.server).put('/metrics/job/j').send('m 1\n');
    assert.equal(small.status, 200);
    await director.close();
    await backend.close();
  });

  it('aborts the upstream request when a chunked body crosses --proxy.max-body', async () => {
    let aborted = false;
    const backend = await startBackend();
    backend.server.on('request', (req: http.IncomingMessage) => req.on('aborted', () => (aborted = true)));
    const director = directorFromFlags(['--mode=proxy', '--proxy.max-body=64KiB', '--node', backend.url]);
    const address = await director.listen();
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({ port: address.port, method: 'PUT', path: '/metrics/job/j' }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      for (let i = 0; i < 8; i++) req.write(Buffer.alloc(16 * 1024, 0x61));
      req.end();
    });
    assert.equal(status, 413);
    // A push after it, counted at the node, marks the point by which the refused one would have arrived.
    const after = await request(director.server).put('/metrics/job/after').send('m 1\n');
    assert.equal(after.status, 200);
    await until(() => backend.received.some((r) => r.url === '/metrics/job/after'), 'the next push to reach the node');
    assert.ok(aborted || backend.received.every((r) => r.url !== '/metrics/job/j'), 'the node received the refused body');
    await director.close();
    await backend.close();
  });

  it('reads and drops the answer of a push whose client went away, and keeps its node connection', async () => {
    // Other pushes may be pipelined behind it on that connection: closing it would make the node see them again.
    const held: http.ServerResponse[] = [];
    const connections = new Set<net.Socket>();
    let closed = 0;
    const backend = await startBackend((req, res) => {
      if (req.url === '/metrics/job/gone') held.push(res);
      else res.end();
    });
    backend.server.on('connection', (socket: net.Socket) => {
      connections.add(socket);
      socket.on('close', () => closed++);
    });
    const director = directorFromFlags(['--mode=proxy', '--node.health-interval=0', '--node', backend.url]);
    const address = await director.listen();
    const socket = net.connect(address.port, '127.0.0.1');
    socket.write('PUT /metrics/job/gone HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nm 1\n');
    await until(() => held.length === 1, 'the push to reach the node');
    socket.destroy();
    const open = (): Promise<number> => new Promise((resolve, reject) => director.server.getConnections((error, count) => (error ? reject(error) : resolve(count))));
    await until(async () => (await open()) === 0, 'the director to see its client go');
    (held[0] as http.ServerResponse).end('an answer nobody reads\n');
    // The next push takes the same connection: the dropped answer was read to its end.
    const res = await request(director.server).put('/metrics/job/next').send('m 2\n');
    assert.equal(res.status, 200);
    assert.equal(connections.size, 1);
    assert.equal(closed, 0);
    await director.close();
    await backend.close();
  });

  it('closes the request to a node that does not answer a push whose client went away, after --proxy.timeout', async () => {
    let upstreamClosed = false;
    let arrived = false;
    const backend = await startBackend(() => undefined);
    backend.server.on('request', (req: http.IncomingMessage) => {
      arrived = true;
      req.socket.on('close', () => (upstreamClosed = true));
    });
    const director = directorFromFlags(['--mode=proxy', '--proxy.timeout=300ms', '--node.health-interval=0', '--node', backend.url]);
    const address = await director.listen();
    const socket = net.connect(address.port, '127.0.0.1');
    socket.write('PUT /metrics/job/gone HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nm 1\n');
    await until(() => arrived, 'the push to reach the node');
    socket.destroy();
    await until(() => upstreamClosed, 'the director to close the request to the node', 5000);
    await director.close();
    await backend.close();
  });
});

describe('a node that answers before reading the body', () => {
  for (const [name, size] of [
    ['a small body', 1000],
    ['a streamed body', 4 * 1024 * 1024],
  ] as const) {
    it(`relays its early answer to ${name}, and keeps serving`, async () => {
      const early = http.createServer((_req, res) => {
        res.writeHead(401, { 'Content-Type': 'text/plain', 'WWW-Authenticate': 'Basic realm="pgw"' });
        res.end('Unauthorized\n');
      });
      await new Promise<void>((resolve) => early.listen(0, '127.0.0.1', resolve));
      const port = (early.address() as net.AddressInfo).port;
      const director = directorFromFlags(['--mode=proxy', '--node', `http://127.0.0.1:${port}`]);
      director.discovery.start();
      for (let i = 0; i < 3; i++) {
        const res = await request(director.server).put('/metrics/job/early').send('x'.repeat(size));
        assert.equal(res.status, 401);
        assert.equal(res.headers['www-authenticate'], 'Basic realm="pgw"');
        assert.equal(res.text, 'Unauthorized\n');
      }
      await director.close();
      early.closeAllConnections();
      early.close();
    });
  }
});

describe('auto mode', () => {
  let backend: Backend;
  let director: TestDirector;
  before(async () => {
    backend = await startBackend();
    director = directorFromFlags(['--mode=auto', '--node', backend.url]);
    director.discovery.start();
  });
  after(async () => {
    await director.close();
    await backend.close();
  });

  const cases: [string, Record<string, string>, number][] = [
    ['redirects Go client_golang', { 'User-Agent': 'Go-http-client/1.1' }, 307],
    ['redirects curl', { 'User-Agent': 'curl/7.88.1' }, 307],
    ['proxies curl with credentials, which it would drop', { 'User-Agent': 'curl/7.88.1', Authorization: 'Basic eDp5' }, 200],
    ['proxies Go with credentials', { 'User-Agent': 'Go-http-client/1.1', Authorization: 'Bearer t' }, 200],
    ['proxies Python urllib', { 'User-Agent': 'Python-urllib/3.11' }, 200],
    ['proxies a client with no User-Agent (prom-client)', {}, 200],
  ];
  for (const [name, headers, status] of cases) {
    it(name, async () => {
      const res = await request(director.server).put('/metrics/job/auto').set(headers).send('m 1\n');
      assert.equal(res.status, status);
      if (status === 307) assert.equal(res.headers['location'], `${backend.url}/metrics/job/auto`);
    });
  }
});
