/**
 * The proxy's fast lane, over raw connections: what it takes, what it hands to Node's HTTP server (and that Node's
 * server then answers exactly as it would have), pipelining, timeouts and shutdown. Which lane forwarded a push is
 * read from pgw_director_fast_lane_pushes_total: the specs of one describe run one at a time, so a delta is theirs.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { type Backend, startBackend } from '../support/backend';
import { type TestDirector, directorFromFlags } from '../support/director';
import { Conversation } from '../support/conversation';
import { until } from '../support/wait';

const push = (path: string, body = 'm 1\n', extra = ''): string =>
  `PUT ${path} HTTP/1.1\r\nHost: director\r\nContent-Length: ${Buffer.byteLength(body, 'latin1')}\r\n${extra}\r\n${body}`;

describe('the fast lane', () => {
  let backend: Backend;
  let director: TestDirector;
  let port: number;
  /** upstreamAborted lists the pushes whose connection to the node closed before the node answered. */
  const upstreamAborted: string[] = [];
  /** upstreamAnswered lists the slow pushes the node answered whole. */
  const upstreamAnswered: string[] = [];
  const fastLanePushes = async (): Promise<number> => {
    const text = await director.metrics.registry.getSingleMetricAsString('pgw_director_fast_lane_pushes_total');
    return Number(/^pgw_director_fast_lane_pushes_total (\d+)$/m.exec(text)?.[1]);
  };

  before(async () => {
    backend = await startBackend((req, res, received) => {
      if (received.url.includes('/chunked/')) {
        // No Content-Length: Node's server sends the body chunked.
        res.writeHead(202, { 'Content-Type': 'text/plain', 'X-From-Node': 'yes' });
        res.write('first part\n');
        res.end('second part\n');
        return;
      }
      if (received.url.includes('/slow/')) {
        res.on('close', () => {
          if (!res.writableFinished) upstreamAborted.push(received.url);
        });
        res.on('finish', () => upstreamAnswered.push(received.url));
        setTimeout(() => {
          res.writeHead(200, { 'Content-Length': 0 });
          res.end();
        }, 300);
        return;
      }
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': received.body.length, 'X-From-Node': 'yes' });
      res.end(received.body);
    });
    director = directorFromFlags(['--mode=proxy', '--node', backend.url]);
    port = (await director.listen()).port;
  });
  after(async () => {
    await director.close();
    await backend.close();
  });

  it('forwards a plain push, then gives the connection to Node\'s server at the first request it does not take', async () => {
    const before = await fastLanePushes();
    const client = new Conversation(port);
    client.write(push('/metrics/job/fast/instance/a', 'm 1\n'));
    await client.waitFor(1);
    assert.equal(await fastLanePushes(), before + 1, 'the fast lane did not take the first push');
    client.write('GET /-/healthy HTTP/1.1\r\nHost: director\r\n\r\n');
    client.write(push('/metrics/job/fast/instance/b', 'm 2\n'));
    const [first, health, second] = await client.waitFor(3);
    client.close();
    assert.equal(first?.status, 200);
    assert.equal(first?.headers.get('x-from-node'), 'yes');
    assert.equal(first?.body, 'm 1\n');
    assert.equal(health?.status, 200);
    assert.equal(health?.body, 'OK\n');
    assert.equal(second?.body, 'm 2\n');
    assert.equal(await fastLanePushes(), before + 1, 'the fast lane took a push after handing the connection over');
  });

  it('answers exactly as Node\'s server does, Date aside', async () => {
    const before = await fastLanePushes();
    const fast = new Conversation(port);
    fast.write(push('/metrics/job/same', 'm 3\n'));
    const viaNode = new Conversation(port);
    // A request the lane does not take hands the connection over, whatever the timing of the reads: the push after
    // it is Node's server's.
    viaNode.write('GET /-/healthy HTTP/1.1\r\nHost: director\r\n\r\n');
    await viaNode.waitFor(1);
    viaNode.write(push('/metrics/job/same', 'm 3\n'));
    const [a] = await fast.waitFor(1);
    const [, b] = await viaNode.waitFor(2);
    fast.close();
    viaNode.close();
    const withoutDate = (head: string | undefined): string => (head ?? '').replace(/\r\nDate: [^\r]*/i, '');
    assert.equal(withoutDate(a?.head), withoutDate(b?.head));
    assert.equal(a?.body, b?.body);
    assert.equal(await fastLanePushes(), before + 1, 'one push each way');
  });

  it('relays a chunked answer', async () => {
    const client = new Conversation(port);
    client.write(push('/metrics/job/chunked/i/1'));
    const [answer] = await client.waitFor(1);
    client.close();
    assert.equal(answer?.status, 202);
    assert.equal(answer?.headers.get('transfer-encoding'), 'chunked');
    assert.equal(answer?.body, 'first part\nsecond part\n');
  });

  it('answers pipelined pushes in order', async () => {
    const before = await fastLanePushes();
    const client = new Conversation(port);
    client.write(Array.from({ length: 30 }, (_, i) => push(`/metrics/job/pipe/i/${i}`, `m ${i}\n`)).join(''));
    const answers = await client.waitFor(30);
    client.close();
    assert.deepEqual(
      answers.map((answer) => answer.body),
      Array.from({ length: 30 }, (_, i) => `m ${i}\n`),
    );
    assert.equal(await fastLanePushes(), before + 30);
  });

  it('gives every client its own answer when many answers go out in one turn, each with its own body', async () => {
    // Answers are held until the end of the event loop's turn and written together: 40 clients at once must still
    // each get exactly their own, whole.
    const before = await fastLanePushes();
    const clients = Array.from({ length: 40 }, () => new Conversation(port));
    clients.forEach((client, i) => client.write(push(`/metrics/job/turn/i/${i}`, `m ${i}\n`) + push(`/metrics/job/turn/i/${i}b`, `m ${i}b\n`)));
    const answers = await Promise.all(clients.map((client) => client.waitFor(2)));
    for (const client of clients) client.close();
    answers.forEach((pair, i) => {
      assert.deepEqual(
        pair.map((answer) => [answer.status, answer.body]),
        [
          [200, `m ${i}\n`],
          [200, `m ${i}b\n`],
        ],
      );
    });
    assert.equal(await fastLanePushes(), before + 80);
  });

  it('hands over a pipelined request it does not take, after answering those before it', async () => {
    const client = new Conversation(port);
    client.write(
      push('/metrics/job/mix/i/1', 'a\n') +
        'POST /metrics/job/mix/i/2 HTTP/1.1\r\nHost: director\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nb\n\r\n0\r\n\r\n' +
        push('/metrics/job/mix/i/3', 'c\n'),
    );
    const answers = await client.waitFor(3);
    client.close();
    assert.deepEqual(
      answers.map((answer) => [answer.status, answer.body]),
      [
        [200, 'a\n'],
        [200, 'b\n'],
        [200, 'c\n'],
      ],
    );
  });

  it('closes after answering a client that asks for Connection: close', async () => {
    const client = new Conversation(port);
    client.write(push('/metrics/job/bye', 'm 1\n', 'Connection: close\r\n'));
    const [answer] = await client.waitFor(1);
    await until(() => client.closed, 'the director to close the connection');
    assert.equal(answer?.headers.get('connection'), 'close');
  });

  for (const [name, request] of [
    ['a push with a body over 64 KiB', push('/metrics/job/big', 'x'.repeat(70_000))],
    ['a push with an Expect header', push('/metrics/job/expect', 'm 1\n', 'Expect: 100-continue\r\n')],
    ['an HTTP/1.0 push', 'PUT /metrics/job/old HTTP/1.0\r\nHost: director\r\nContent-Length: 4\r\n\r\nm 1\n'],
    ['a push with two User-Agents', push('/metrics/job/agents', 'm 1\n', 'User-Agent: a\r\nUser-Agent: b\r\n')],
  ] as const) {
    it(`leaves ${name} to Node's server, which proxies it`, async () => {
      const before = await fastLanePushes();
      const client = new Conversation(port);
      client.write(request);
      const [answer] = await client.waitFor(1);
      client.close();
      assert.equal(answer?.status, 200);
      assert.equal(await fastLanePushes(), before, 'the fast lane took it');
    });
  }

  it('takes a push spelled with @base64 too: it parses the path fully, as Node\'s lane does', async () => {
    const before = await fastLanePushes();
    const client = new Conversation(port);
    client.write(push('/metrics/job@base64/Zm9v'));
    const [answer] = await client.waitFor(1);
    client.close();
    assert.equal(answer?.status, 200);
    assert.equal(await fastLanePushes(), before + 1);
  });

  it('reads and drops the answer of a push whose client went away, keeping the node connection', async () => {
    // Other pushes may be pipelined behind it on that connection: closing it would make the node see them again.
    const before = backend.received.length;
    const client = new Conversation(port);
    client.write(push('/metrics/job/slow/i/gone'));
    await until(() => backend.received.length > before, 'the push to reach the node');
    client.close();
    await until(() => upstreamAnswered.includes('/metrics/job/slow/i/gone'), 'the node to answer the push');
    assert.deepEqual(upstreamAborted, []);
    // The director is still fine.
    const next = new Conversation(port);
    next.write(push('/metrics/job/after-gone'));
    const [answer] = await next.waitFor(1);
    next.close();
    assert.equal(answer?.status, 200);
  });
});

describe('the fast lane\'s timeouts and shutdown', () => {
  let backend: Backend;
  let director: TestDirector;
  let port: number;
  before(async () => {
    backend = await startBackend((_req, res, received) => {
      setTimeout(
        () => {
          res.writeHead(200, { 'Content-Length': 0 });
          res.end();
        },
        received.url.includes('/slow') ? 400 : 0,
      );
    });
    director = directorFromFlags(['--mode=proxy', '--node', backend.url], {}, {
      serverTimeouts: { headersTimeoutMs: 400, requestTimeoutMs: 1000, keepAliveTimeoutMs: 400 },
    });
    port = (await director.listen()).port;
  });
  after(async () => {
    await director.close();
    await backend.close();
  });

  it('closes an idle keep-alive connection after the keep-alive timeout', async () => {
    const client = new Conversation(port);
    client.write(push('/metrics/job/idle'));
    const [answer] = await client.waitFor(1);
    assert.equal(answer?.headers.get('keep-alive'), 'timeout=0');
    const answeredAt = Date.now();
    await until(() => client.closed, 'the idle connection to be closed', 3000);
    assert.ok(Date.now() - answeredAt >= 300, `closed after ${Date.now() - answeredAt}ms`);
  });

  it('answers 408 to a connection that sends nothing within the headers timeout', async () => {
    const client = new Conversation(port);
    let text = '';
    client.socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    await until(() => client.closed, 'the silent connection to be closed', 3000);
    assert.match(text, /^HTTP\/1\.1 408 /);
  });

  it('on close, ends idle connections at once and lets a push in flight finish', async () => {
    const idle = new Conversation(port);
    idle.write(push('/metrics/job/before-close'));
    await idle.waitFor(1);
    const busy = new Conversation(port);
    busy.write(push('/metrics/job/slow'));
    await until(() => backend.received.some((r) => r.url === '/metrics/job/slow'), 'the slow push to reach the node');
    const closing = director.close();
    await until(() => idle.closed, 'the idle connection to be closed', 1000);
    const [answer] = await busy.waitFor(1);
    assert.equal(answer?.status, 200);
    assert.equal(answer?.headers.get('connection'), 'close');
    await closing;
    await until(() => busy.closed, 'the busy connection to close');
  });
});
