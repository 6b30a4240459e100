import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';

import { type Backend, startBackend } from '../support/backend';
import { type TestDirector, directorFromFlags } from '../support/director';

type Answer = { status: number | undefined; text: string; closed: boolean; ms: number };

/**
 * send writes raw bytes (or runs a writer) on a fresh connection and reads until the server closes it or `waitMs`
 * passes. Every request here asks for Connection: close, so an answered request ends with a close too.
 */
function send(port: number, request: string | Buffer | ((socket: net.Socket) => void), waitMs = 4000): Promise<Answer> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (closed: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      // The final answer, past any interim 100 Continue.
      const status = /^(?:HTTP\/1\.1 1\d\d [^\r]*\r\n(?:[^\r]+\r\n)*\r\n)*HTTP\/1\.[01] (\d{3})/.exec(text)?.[1];
      resolve({ status: status === undefined ? undefined : Number(status), text, closed, ms: Date.now() - started });
    };
    const timer = setTimeout(() => finish(false), waitMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
    socket.on('connect', () => {
      if (typeof request === 'function') request(socket);
      else socket.write(typeof request === 'string' ? Buffer.from(request, 'latin1') : request);
    });
  });
}

const put = (target: string, headers = 'Content-Length: 0\r\n'): string => `PUT ${target} HTTP/1.1\r\nHost: d\r\n${headers}Connection: close\r\n\r\n`;

type Case = Readonly<{
  name: string;
  request: string | Buffer | ((socket: net.Socket) => void);
  /** A status, or `closed` for a connection the server closes without a complete answer (or with Node's own). */
  expect: number | 'closed' | readonly (number | 'closed')[];
  mode?: 'proxy';
  /** What a proxying director answers, when not the same (a 307 becomes the node's 200). */
  proxyExpect?: number | 'closed' | readonly (number | 'closed')[];
}>;

const trickle =
  (text: string, everyMs: number) =>
  (socket: net.Socket): void => {
    let at = 0;
    const timer = setInterval(() => {
      if (socket.destroyed || at >= text.length) return clearInterval(timer);
      socket.write(text[at++] as string);
    }, everyMs);
    socket.on('close', () => clearInterval(timer));
  };

const CASES: Case[] = [
  { name: 'a path over 8 KiB', request: put(`/metrics/job/j/v/${'a'.repeat(9000)}`), expect: 414 },
  { name: 'a query that makes the target over 8 KiB', request: put(`/metrics/job/j?${'q'.repeat(9000)}`), expect: 414 },
  { name: 'a target over Node\'s 16 KiB header limit', request: put(`/metrics/job/j/v/${'a'.repeat(20000)}`), expect: 431 },
  { name: 'thousands of labels', request: put(`/metrics/job/j${Array.from({ length: 3000 }, (_, i) => `/l${i}/v`).join('')}`), expect: 431 },
  { name: 'a flood of 3000 headers', request: put('/metrics/job/j', `${Array.from({ length: 3000 }, (_, i) => `X-H${i}: v`).join('\r\n')}\r\n`), expect: 431 },
  { name: 'one 20 KiB header', request: put('/metrics/job/j', `X-Big: ${'b'.repeat(20000)}\r\n`), expect: 431 },
  { name: 'an invalid escape %ZZ', request: put('/metrics/job/j/v/%ZZ'), expect: 400 },
  { name: 'a truncated escape', request: put('/metrics/job/j/v/%4'), expect: 400 },
  { name: 'overlong UTF-8 %C0%AF', request: put('/metrics/job/j/v/%C0%AF'), expect: 400 },
  { name: 'a lone surrogate %ED%A0%80', request: put('/metrics/job/j/v/%ED%A0%80'), expect: 400 },
  { name: 'a byte that is never UTF-8 %FF', request: put('/metrics/job/%FF'), expect: 400 },
  { name: 'a code point past U+10FFFF', request: put('/metrics/job/j/v/%F4%90%80%80'), expect: 400 },
  { name: 'a raw CR in the path', request: put('/metrics/job/a\rb'), expect: 400 },
  { name: 'a raw LF in the path', request: put('/metrics/job/a\nb'), expect: 400 },
  { name: 'a raw NUL in the path', request: put('/metrics/job/a\u0000b'), expect: 400 },
  { name: 'a raw space in the path', request: 'PUT /metrics/job/a b HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n', expect: 400 },
  { name: 'raw non-ASCII bytes in the path', request: put('/metrics/job/\xce\xa0'), expect: 400 },
  { name: 'a .. segment', request: put('/metrics/job/j/../x/1'), expect: 400 },
  { name: 'an encoded .. segment', request: put('/metrics/job/%2E%2E/x/1'), expect: 400 },
  { name: 'a . segment', request: put('/metrics/job/j/x/./y/1'), expect: 400 },
  { name: 'an encoded // segment', request: put('/metrics/job/j/%2F%2F'), expect: 400 },
  { name: 'a //host path', request: put('//evil.example/metrics/job/x'), expect: 404 },
  { name: 'an empty segment after the job', request: put('/metrics/job//evil.example'), expect: 400 },
  { name: 'an absolute-form target', request: put('http://evil.example/metrics/job/x'), expect: 404 },
  { name: 'an absolute-form https target', request: put('https://evil.example:443/metrics/job/x'), expect: 404 },
  { name: 'a CONNECT tunnel request', request: 'CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n', expect: 'closed' },
  { name: 'a huge Content-Length and no body', request: put('/metrics/job/j', 'Content-Length: 1099511627776\r\n'), expect: 307, proxyExpect: [408, 'closed'] },
  { name: 'a negative Content-Length', request: put('/metrics/job/j', 'Content-Length: -1\r\n'), expect: 400 },
  { name: 'a Content-Length that is not a number', request: put('/metrics/job/j', 'Content-Length: ten\r\n'), expect: 400 },
  { name: 'two different Content-Lengths', request: 'PUT /metrics/job/j HTTP/1.1\r\nHost: d\r\nContent-Length: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab', expect: 400 },
  { name: 'Content-Length with chunked (smuggling)', request: 'PUT /metrics/job/j HTTP/1.1\r\nHost: d\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n', expect: 400 },
  { name: 'a Transfer-Encoding that does not end in chunked', request: 'PUT /metrics/job/j HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked, gzip\r\nConnection: close\r\n\r\n', expect: 400 },
  { name: 'a malformed chunk, proxied', request: 'PUT /metrics/job/j HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nZZ\r\nabc\r\n', expect: 'closed', mode: 'proxy' },
  { name: 'HTTP/1.1 without Host', request: 'PUT /metrics/job/j HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n', expect: 400 },
  { name: 'an unknown HTTP version', request: 'PUT /metrics/job/j HTTP/3.0\r\nHost: d\r\nConnection: close\r\n\r\n', expect: [400, 505] },
  { name: 'a lower-case method', request: 'put /metrics/job/j HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n', expect: 400 },
  { name: 'an unknown method', request: 'BREW /metrics/job/j HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n', expect: 400 },
  { name: 'PATCH on a push path', request: 'PATCH /metrics/job/j HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\nConnection: close\r\n\r\n', expect: 405 },
  { name: 'OPTIONS on a push path', request: 'OPTIONS /metrics/job/j HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n', expect: 405 },
  { name: 'GET on a push path', request: 'GET /metrics/job/j HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n', expect: 405 },
  { name: 'a space in a header name', request: put('/metrics/job/j', 'Bad Header: x\r\n'), expect: 400 },
  { name: 'a NUL in a header value', request: put('/metrics/job/j', 'X-A: a\u0000b\r\n'), expect: 400 },
  { name: 'a non-ASCII header name', request: put('/metrics/job/j', 'X-\xe9: v\r\n'), expect: 400 },
  { name: 'an obsolete folded header', request: put('/metrics/job/j', 'X-A: a\r\n folded\r\n'), expect: 400 },
  // Node's parser tolerates this one; the push is still read correctly.
  { name: 'two spaces in the request line', request: 'PUT  /metrics/job/j HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n', expect: 307 },
  { name: 'binary garbage', request: Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 0x0d, 0x0a, 0x0d, 0x0a]), expect: 400 },
  { name: 'a TLS handshake on the plain port', request: Buffer.from('16030100a5010000a10303', 'hex'), expect: 'closed' },
  { name: 'headers trickled one byte at a time (slowloris)', request: trickle(put('/metrics/job/j'), 150), expect: [408, 'closed'] },
  { name: 'a body that never arrives, proxied', request: put('/metrics/job/j', 'Content-Length: 10\r\n'), expect: [408, 'closed'], mode: 'proxy' },
  { name: 'bad base64 in the job (it wedges Pushgateway 1.5.1)', request: put('/metrics/job@base64/a*b'), expect: 400 },
  { name: 'bad base64 in a label', request: put('/metrics/job/j/x@base64/a+b'), expect: 400 },
  { name: 'a reserved label name', request: put('/metrics/job/j/__name__/x'), expect: 400 },
  { name: 'an empty base64 job', request: put('/metrics/job@base64/='), expect: 400 },
  { name: 'an odd number of components', request: put('/metrics/job/j/x'), expect: 400 },
  { name: 'padding inside base64', request: put('/metrics/job/j/x@base64/YQ=Q'), expect: 400 },
  // Redirected before the body is sent; proxied, the body never comes and the request times out.
  { name: 'Expect: 100-continue with a huge body', request: put('/metrics/job/j', 'Expect: 100-continue\r\nContent-Length: 1099511627776\r\n'), expect: 307, proxyExpect: [408, 'closed'] },
  { name: 'an unknown expectation', request: put('/metrics/job/j', 'Expect: teapot\r\n'), expect: 417 },
];

describe('hostile input', () => {
  let backend: Backend;
  let redirect: TestDirector;
  let proxy: TestDirector;
  const ports = { redirect: 0, proxy: 0 };
  const timeouts = { headersTimeoutMs: 1000, requestTimeoutMs: 1500, keepAliveTimeoutMs: 1000 };
  before(async () => {
    backend = await startBackend();
    redirect = directorFromFlags(['--node', backend.url], {}, { serverTimeouts: timeouts });
    proxy = directorFromFlags(['--mode=proxy', '--node', backend.url], {}, { serverTimeouts: timeouts });
    ports.redirect = (await redirect.listen()).port;
    ports.proxy = (await proxy.listen()).port;
  });
  after(async () => {
    await Promise.all([redirect.close(), proxy.close()]);
    await backend.close();
  });

  it('holds at least 50 hostile requests', () => assert.ok(CASES.length >= 50, `${CASES.length}`));

  // Every case runs against the redirecting director and, through the proxy's fast lane, the proxying one.
  const runs = CASES.flatMap((c) =>
    c.mode === 'proxy'
      ? [{ c, mode: 'proxy' as const, expect: c.expect }]
      : [
          { c, mode: 'redirect' as const, expect: c.expect },
          { c, mode: 'proxy' as const, expect: c.proxyExpect ?? (c.expect === 307 ? 200 : c.expect) },
        ],
  );
  for (const { c, mode, expect } of runs) {
    it(`answers ${c.name}${mode === 'proxy' && c.mode !== 'proxy' ? ', proxying' : ''}`, async () => {
      const port = ports[mode];
      const answer = await send(port, c.request);
      const expected = Array.isArray(expect) ? expect : [expect];
      const ok = expected.some((e) => (e === 'closed' ? answer.closed && (answer.status === undefined || answer.status >= 400) : answer.status === e));
      assert.ok(ok, `expected ${expected.join(' or ')}, got ${answer.status ?? 'no answer'} (closed: ${answer.closed}) ${JSON.stringify(answer.text.slice(0, 200))}`);
      assert.ok(answer.closed, 'the server kept a connection it should have closed');
      // No Location ever points outside the ring, and no header carries a CR or LF of the request's.
      for (const location of answer.text.matchAll(/\r\nLocation: ([^\r\n]*)/gi)) {
        assert.ok((location[1] as string).startsWith(`${backend.url}/metrics/job`), `Location ${location[1]}`);
      }
      if (typeof expect === 'number' && expect >= 400 && answer.text.includes('\r\n\r\n')) {
        const body = answer.text.slice(answer.text.indexOf('\r\n\r\n') + 4);
        assert.doesNotMatch(body, /at .+\.js:\d+/, 'a stack trace in the body');
      }
      // The director still answers the next request correctly.
      const next = await send(port, put('/metrics/job/after'));
      assert.equal(next.status, mode === 'proxy' ? 200 : 307, next.text.slice(0, 200));
    });
  }

  it('answers a hundred pipelined pushes in order', async () => {
    const burst = Array.from({ length: 100 }, (_, i) => `PUT /metrics/job/p${i} HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n`).join('');
    const answer = await send(ports.redirect, `${burst}${put('/metrics/job/last')}`);
    assert.equal((answer.text.match(/HTTP\/1\.1 307/g) ?? []).length, 101);
    assert.match(answer.text, /Location: [^\r]*\/metrics\/job\/p0\r\n[\s\S]*Location: [^\r]*\/metrics\/job\/p99\r\n/);
  });

  it('answers a hundred pipelined pushes in order, proxying', async () => {
    const burst = Array.from({ length: 100 }, (_, i) => `PUT /metrics/job/p${i} HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n`).join('');
    const answer = await send(ports.proxy, `${burst}${put('/metrics/job/last')}`);
    assert.equal((answer.text.match(/HTTP\/1\.1 200/g) ?? []).length, 101);
    assert.ok(answer.closed);
  });

  it('keeps encoded CR and LF encoded in the Location', async () => {
    const answer = await send(ports.redirect, put('/metrics/job/j/v/a%0D%0ASet-Cookie:%20x?q=%0D%0A'));
    assert.equal(answer.status, 307);
    assert.match(answer.text, /\r\nLocation: [^\r\n]*\/metrics\/job\/j\/v\/a%0D%0ASet-Cookie:%20x\?q=%0D%0A\r\n/);
    assert.doesNotMatch(answer.text, /\r\nSet-Cookie/);
  });
});
