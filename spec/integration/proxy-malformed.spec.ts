/**
 * A node's malformed answers, sent byte for byte by a raw node:net node, through both lanes of the proxy. Whatever
 * llhttp refuses is a 502 naming the node (or, once the head went out, a cut connection); nothing of a bad answer
 * reaches the client, in particular never a response smuggled inside it; and the director serves the next push.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';

import { type TestDirector, directorFromFlags } from '../support/director';
import { Conversation } from '../support/conversation';
import { until } from '../support/wait';

/** A whole response, smuggled inside a bad one: it must never reach the client. */
const INJECTED = 'HTTP/1.1 299 Injected\r\nContent-Length: 8\r\n\r\ninjected';
const chunk = (text: string): string => `${text.length.toString(16)}\r\n${text}\r\n`;

/**
 * What the client gets: `502` (the director's own answer, connection closed), `cut` (the node's head, then the
 * connection closes short of the body), or `first` (the well-framed first answer, with its body; the bytes after
 * it are dropped with the node's connection).
 */
type Expected = Readonly<{ kind: '502'; reason: RegExp } | { kind: 'cut' } | { kind: 'first'; body: string }>;

const CASES: readonly (readonly [string, string, Expected])[] = [
  [
    'Content-Length with Transfer-Encoding, a response inside the chunks',
    `HTTP/1.1 200 OK\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n${chunk(INJECTED)}0\r\n\r\n`,
    { kind: '502', reason: /sent a malformed answer: transfer-encoding can't be present with content-length/ },
  ],
  [
    'Transfer-Encoding notchunked on a connection kept open',
    `HTTP/1.1 200 OK\r\nTransfer-Encoding: notchunked\r\n\r\n${chunk(INJECTED)}0\r\n\r\n`,
    { kind: '502', reason: /sent a malformed answer: unsupported transfer-encoding "notchunked"/ },
  ],
  ['a chunk size of 0x4', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x4\r\nabcd\r\n0\r\n\r\n', { kind: '502', reason: /sent a malformed answer: invalid character in chunk size/ }],
  ['a chunk size of "4 junk"', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4 junk\r\nabcd\r\n0\r\n\r\n', { kind: '502', reason: /sent a malformed answer: invalid character in chunk (size|extensions)/ }],
  ['an endless chunk-size line', `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${'1'.repeat(1024 * 1024)}`, { kind: '502', reason: /sent a malformed answer: chunk size overflow/ }],
  ['a close after the first chunk', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n', { kind: 'cut' }],
  [
    'a 101 the push did not ask for, then another answer',
    `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n${INJECTED}`,
    { kind: '502', reason: /sent a malformed answer: unexpected 101 status/ },
  ],
  ['two answers in one write', `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok${INJECTED}`, { kind: 'first', body: 'ok' }],
  ['a body longer than its length', `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokay${INJECTED}`, { kind: 'first', body: 'ok' }],
  [
    'Connection: close followed by more bytes',
    `HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok${INJECTED}`,
    { kind: 'first', body: 'ok' },
  ],
  ['a close in the middle of the body', 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc', { kind: 'cut' }],
  ['a NUL in the reason phrase', 'HTTP/1.1 200 O\0K\r\nContent-Length: 0\r\n\r\n', { kind: '502', reason: /sent a malformed answer: invalid reason phrase/ }],
];

/** Closes the node's side after the bad answer in these cases; the others leave the connection open. */
const CLOSES = new Set(['Connection: close followed by more bytes', 'a close in the middle of the body', 'a close after the first chunk']);

const push = (path: string, extra = ''): string => `PUT ${path} HTTP/1.1\r\nHost: director\r\nContent-Length: 4\r\n${extra}\r\nm 1\n`;

// Two User-Agent fields: Node's server takes them, the fast lane leaves such a push to it.
const LANES = [
  ['the fast lane', ''],
  ["Node's lane", 'User-Agent: a\r\nUser-Agent: b\r\n'],
] as const;

describe('malformed answers from a node', () => {
  let node: net.Server;
  let director: TestDirector;
  let port: number;
  let answer: string | undefined;
  let closes = false;
  before(async () => {
    node = net.createServer((socket) => {
      socket.on('error', () => undefined);
      socket.on('data', () => {
        if (answer === undefined) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood');
        else if (closes) socket.end(answer, 'latin1');
        else socket.write(answer, 'latin1');
      });
    });
    await new Promise<void>((resolve) => node.listen(0, '127.0.0.1', resolve));
    const nodePort = (node.address() as net.AddressInfo).port;
    director = directorFromFlags(['--mode=proxy', '--proxy.timeout=2s', '--node', `http://127.0.0.1:${nodePort}`]);
    port = (await director.listen()).port;
  });
  after(async () => {
    await director.close();
    node.close();
  });

  for (const [lane, extra] of LANES) {
    for (const [name, bytes, expected] of CASES) {
      it(`gives ${expected.kind === 'first' ? 'only the first answer' : expected.kind === '502' ? 'a 502' : 'a cut answer'} for ${name}, in ${lane}`, async () => {
        answer = bytes;
        closes = CLOSES.has(name);
        const client = new Conversation(port);
        // Two pipelined pushes: a response smuggled in the first answer would be read as the second's.
        client.write(push('/metrics/job/malformed/n/1', extra) + push('/metrics/job/malformed/n/2', extra));
        if (expected.kind === 'first') {
          const [first] = await client.waitFor(1);
          assert.equal(first?.status, 200);
          assert.equal(first?.body, expected.body);
        } else {
          await until(() => client.closed, 'the director to close the connection', 10_000);
          if (expected.kind === '502') {
            assert.equal(client.responses.length, 1, client.received);
            assert.equal(client.responses[0]?.status, 502);
            assert.match(client.responses[0]?.body ?? '', /^pushgateway "127\.0\.0\.1:\d+" /);
            assert.match(client.responses[0]?.body ?? '', expected.reason);
            assert.equal(client.responses[0]?.headers.get('connection'), 'close');
          } else {
            assert.match(client.received, /^HTTP\/1\.1 200 OK\r\n/);
            assert.equal(client.responses.length, 0, 'a whole answer reached the client');
          }
        }
        assert.ok(!client.received.includes('Injected') && !client.received.includes('injected'), client.received);
        client.close();

        answer = undefined;
        const next = new Conversation(port);
        next.write(push('/metrics/job/after', extra));
        const [good] = await next.waitFor(1);
        next.close();
        assert.equal(good?.status, 200);
        assert.equal(good?.body, 'good');
      });
    }
  }
});
