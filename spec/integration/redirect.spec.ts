import assert from 'node:assert/strict';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';

import request from 'supertest';

import { type TestDirector, directorFromFlags } from '../support/director';

const NODES = ['http://127.0.0.11:9091', 'http://127.0.0.12:9091', 'https://pgw3.example:8443/pgw'];

describe('redirect mode', () => {
  let director: TestDirector;
  before(() => {
    director = directorFromFlags(NODES.flatMap((n) => ['--node', n]));
    director.discovery.start();
  });

  const ownerOf = async (path: string): Promise<string> => {
    const res = await request(director.server).get('/api/v1/lookup').query({ path });
    assert.equal(res.status, 200, res.text);
    return (res.body as { data: { node: { url: string } } }).data.node.url;
  };

  for (const method of ['put', 'post', 'delete'] as const) {
    it(`answers ${method.toUpperCase()} with 307 to the owner, keeping the path as received`, async () => {
      const path = '/metrics/job/backup/instance/db%201';
      const res = await request(director.server)[method](path).send('m 1\n');
      assert.equal(res.status, 307);
      assert.equal(res.headers['location'], `${await ownerOf(path)}${path}`);
      assert.equal(res.text, '');
    });
  }

  it('keeps the query string', async () => {
    const res = await request(director.server).put('/metrics/job/j?x=1&y=2');
    assert.equal(res.status, 307);
    assert.match(res.headers['location'] as string, /\/metrics\/job\/j\?x=1&y=2$/);
  });

  it('sends every spelling of one group to one node', async () => {
    const spellings = [
      '/metrics/job/a/x/1/y/2',
      '/metrics/job/a/y/2/x/1',
      '/metrics/job@base64/YQ/y@base64/Mg==/x/1',
      '/metrics/job@base64/YQ==/x@base64/MQ/y/2',
    ];
    const owners = new Set<string>();
    for (const path of spellings) {
      const res = await request(director.server).put(path);
      assert.equal(res.status, 307);
      owners.add((res.headers['location'] as string).slice(0, -path.length));
    }
    assert.equal(owners.size, 1);
  });

  it('spreads groups over every node, prefix and scheme included', async () => {
    const bases = new Set<string>();
    for (let i = 0; i < 60; i++) {
      const path = `/metrics/job/j${i}`;
      const res = await request(director.server).post(path);
      bases.add((res.headers['location'] as string).slice(0, -path.length));
    }
    assert.deepEqual([...bases].sort(), ['http://127.0.0.11:9091', 'http://127.0.0.12:9091', 'https://pgw3.example:8443/pgw']);
  });

  const rejections: [string, string, number, string][] = [
    ['rejects an odd number of components', '/metrics/job/a/x', 400, 'odd number of components in label string "/x"'],
    ['rejects a reserved label name', '/metrics/job/a/__x/1', 400, 'improper label name "__x"'],
    ['rejects an empty base64 job', '/metrics/job@base64/=', 400, 'job name is required'],
    [
      'rejects an empty segment with advice',
      '/metrics/job/a/x//y/1',
      400,
      'empty path segment in "/metrics/job/a/x//y/1": encode an empty job or label value as "@base64/="',
    ],
    ['rejects bad base64', '/metrics/job/a/x@base64/a+b', 400, 'invalid base64 encoding for label x="a+b": illegal base64 data at input byte 1'],
    ['answers 404 for an unknown /metrics path', '/metrics/jobs/a', 404, '404 page not found'],
  ];
  for (const [name, path, status, message] of rejections) {
    it(name, async () => {
      const res = await request(director.server).put(path).send('m 1\n');
      assert.equal(res.status, status);
      assert.equal(res.text, `${message}\n`);
      assert.equal(res.headers['location'], undefined);
      assert.match(res.headers['content-type'] as string, /^text\/plain/);
    });
  }

  it('answers other methods on a push path with 405 and Allow', async () => {
    for (const method of ['get', 'patch', 'head'] as const) {
      const res = await request(director.server)[method]('/metrics/job/a');
      assert.equal(res.status, 405);
      assert.equal(res.headers['allow'], 'PUT, POST, DELETE');
    }
  });

  it('answers unknown paths with 404', async () => {
    const res = await request(director.server).get('/nope');
    assert.equal(res.status, 404);
    assert.equal(res.text, '404 page not found\n');
  });

  it('is healthy and ready with nodes', async () => {
    assert.equal((await request(director.server).get('/-/healthy')).text, 'OK\n');
    assert.equal((await request(director.server).get('/-/ready')).status, 200);
  });

  it('logs successful redirects at debug and rejections at warn', () => {
    const levels = new Map<string, number>();
    for (const line of director.log.lines) levels.set(String(line['msg']), Number(line['level']));
    assert.equal(levels.get('push redirected'), 20);
    assert.equal(levels.get('push rejected'), 40);
  });
});

describe('an empty ring', () => {
  it('answers pushes with 503 and is not ready', async () => {
    const director = directorFromFlags(['--node', 'http://127.0.0.11:9091']);
    director.placement.update([]);
    const push = await request(director.server).put('/metrics/job/a').send('m 1\n');
    assert.equal(push.status, 503);
    assert.equal(push.text, 'no pushgateway nodes available\n');
    const ready = await request(director.server).get('/-/ready');
    assert.equal(ready.status, 503);
    assert.equal((await request(director.server).get('/-/healthy')).status, 200);
  });
});

describe('a listening director', () => {
  let director: TestDirector;
  let port: number;
  before(async () => {
    director = directorFromFlags(['--node', 'http://127.0.0.11:9091']);
    port = (await director.listen()).port;
  });
  after(() => director.close());

  // Expect: 100-continue
  it('answers the 307 before the body is sent, and closes the connection', async () => {
    const answer = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.request({
        port,
        method: 'PUT',
        path: '/metrics/job/streamed',
        headers: { Expect: '100-continue', 'Transfer-Encoding': 'chunked' },
      });
      req.on('continue', () => reject(new Error('the director asked for the body')));
      req.on('response', resolve);
      req.on('error', reject);
      req.flushHeaders();
    });
    assert.equal(answer.statusCode, 307);
    assert.equal(answer.headers['location'], 'http://127.0.0.11:9091/metrics/job/streamed');
    assert.equal(answer.headers['connection'], 'close');
    answer.resume();
  });

  it('still serves the API after', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/-/healthy`);
    assert.equal(res.status, 200);
  });

  // Location safety
  const raw = (target: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      let data = '';
      socket.on('data', (chunk: Buffer) => (data += chunk.toString('latin1')));
      socket.on('end', () => resolve(data));
      socket.on('error', reject);
      socket.end(Buffer.from(`PUT ${target} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`, 'latin1'));
    });

  it('never takes an absolute-form target at its word', async () => {
    const answer = await raw('http://evil.example/metrics/job/x');
    assert.match(answer, /^HTTP\/1.1 404/);
    assert.doesNotMatch(answer, /evil/);
  });

  it('refuses raw non-ASCII bytes and control characters in the target (Node\'s parser)', async () => {
    for (const target of ['/metrics/job/\xce\xa0', '/metrics/job/a\x00b', '/metrics/job/a\x7fb']) {
      const answer = await raw(target);
      assert.match(answer, /^HTTP\/1.1 400/);
      assert.doesNotMatch(answer, /Location/);
    }
  });

  it('keeps serving after bad requests', async () => {
    const answer = await raw('/metrics/job/a');
    assert.match(answer, /^HTTP\/1.1 307/);
    const address = director.server.address() as AddressInfo;
    assert.equal(address.port, port);
  });
});
