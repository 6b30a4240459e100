import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { readPush } from '../../../lib/http/fast-lane';

const read = (request: string): ReturnType<typeof readPush> => readPush(Buffer.from(request, 'latin1'), '192.0.2.7');
const put = (head: string, body = 'm 1\n'): string => `PUT /metrics/job/j HTTP/1.1\r\nHost: d\r\n${head}Content-Length: ${body.length}\r\n\r\n${body}`;

describe('readPush', () => {
  it('takes a plain push: method, target, headers as received, body and size', () => {
    const request = 'POST /metrics/job/j/instance/a?x=1 HTTP/1.1\r\nHost: d\r\nuser-agent:  Python-urllib/3.11 \r\nContent-Length: 4\r\n\r\nm 1\n';
    const push = read(`${request}PUT /next`);
    assert.ok(push);
    assert.equal(push.method, 'POST');
    assert.equal(push.target, '/metrics/job/j/instance/a?x=1');
    assert.deepEqual(push.rawHeaders, ['Host', 'd', 'user-agent', 'Python-urllib/3.11', 'Content-Length', '4']);
    assert.equal(push.body.toString(), 'm 1\n');
    assert.equal(push.size, request.length);
    assert.equal(push.userAgent, 'Python-urllib/3.11');
    assert.equal(push.authorization, false);
    assert.equal(push.close, false);
    assert.equal(push.remoteAddress, '192.0.2.7');
  });

  it('takes a DELETE without a body', () => {
    assert.equal(read('DELETE /metrics/job/j HTTP/1.1\r\nHost: d\r\n\r\n')?.body.length, 0);
  });

  it('notes Authorization and Connection: close', () => {
    const push = read(put('Authorization: Basic eDp5\r\nConnection: keep-alive, Close\r\n'));
    assert.equal(push?.authorization, true);
    assert.equal(push?.close, true);
  });

  const declined: [string, string][] = [
    ['an incomplete head', 'PUT /metrics/job/j HTTP/1.1\r\nHost: d\r\n'],
    ['a body not all here yet', put('', 'm 1\n').slice(0, -1)],
    ['a body over 64 KiB', put('', 'x'.repeat(64 * 1024 + 1))],
    ['chunked framing', 'PUT /metrics/job/j HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['Expect: 100-continue', put('Expect: 100-continue\r\n')],
    ['an Upgrade', put('Upgrade: h2c\r\n')],
    ['two Content-Lengths', put('Content-Length: 4\r\n')],
    ['a signed Content-Length', 'PUT /metrics/job/j HTTP/1.1\r\nHost: d\r\nContent-Length: +4\r\n\r\nm 1\n'],
    ['no Host', 'PUT /metrics/job/j HTTP/1.1\r\nContent-Length: 0\r\n\r\n'],
    ['two Hosts', put('Host: e\r\n')],
    ['two User-Agents', put('User-Agent: a\r\nUser-Agent: b\r\n')],
    ['HTTP/1.0', 'PUT /metrics/job/j HTTP/1.0\r\nHost: d\r\nContent-Length: 0\r\n\r\n'],
    ['a GET', 'GET /metrics/job/j HTTP/1.1\r\nHost: d\r\n\r\n'],
    ['a path outside /metrics/', 'PUT /-/healthy HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n'],
    ['an absolute-form target', 'PUT http://d/metrics/job/j HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n'],
    ['a quote in the target', 'PUT /metrics/job/a"b HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n'],
    ['a byte over 0x7f in the target', 'PUT /metrics/job/\xe9 HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n'],
    ['two spaces in the request line', 'PUT  /metrics/job/j HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n'],
    ['bare LF line ends', 'PUT /metrics/job/j HTTP/1.1\nHost: d\nContent-Length: 0\n\n'],
    ['a bare CR in a value', put('X-A: a\rb\r\n')],
    ['a NUL in a value', put('X-A: a\0b\r\n')],
    ['a space before the colon', put('X-A : v\r\n')],
    ['a folded header', put('X-A: v\r\n folded\r\n')],
    ['an empty header name', put(': v\r\n')],
    ['more than 100 header lines', put(Array.from({ length: 100 }, (_, i) => `X-${i}: v\r\n`).join(''))],
  ];
  for (const [name, request] of declined) {
    it(`leaves ${name} to Node's server`, () => assert.equal(read(request), undefined));
  }
});
