import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';

import { parseNodeUrl } from '../../lib/core/node';
import { createNodeClient } from '../../lib/nodes/client';

/** A node double: each path answers with the handler's chunks, written one per event-loop turn. */
type Answer = { status?: number; chunks: readonly (string | Buffer)[]; stallAfter?: number };

describe('NodeClient listing', { timeout: 20_000 }, () => {
  const answers = new Map<string, Answer>();
  let server: http.Server;
  let base: string;
  const node = (path: string) => {
    const parsed = parseNodeUrl(`${base}/${path}`);
    assert.ok(parsed.ok);
    return parsed.node;
  };
  before(async () => {
    server = http.createServer((req, res) => {
      const answer = answers.get((req.url ?? '').replace('/api/v1/metrics', '')) ?? { status: 404, chunks: ['404 page not found\n'] };
      res.writeHead(answer.status ?? 200, { 'Content-Type': 'application/json' });
      let i = 0;
      const next = (): void => {
        if (i === answer.stallAfter) return; // keep the connection open, send nothing more
        if (i === answer.chunks.length) return void res.end();
        res.write(answer.chunks[i++]);
        setImmediate(next);
      };
      next();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  const group = (job: string, pushTime: string): string =>
    JSON.stringify({ labels: { job, instance: 'a"b[' }, last_push_successful: true, push_time_seconds: { type: 'GAUGE', metrics: [{ labels: { job }, value: pushTime }] } });

  it('reads a listing sent in pieces cut anywhere, groups and their texts', async () => {
    const doc = `{"status":"success","data":[${group('a', '1.5e+09')},${group('Zürich 😀', '2')}]}`;
    const bytes = Buffer.from(doc);
    // Cut through the multi-byte characters too: every 7 bytes.
    const chunks: Buffer[] = [];
    for (let i = 0; i < bytes.length; i += 7) chunks.push(bytes.subarray(i, i + 7));
    answers.set('/pieces', { chunks });
    const client = createNodeClient({ timeoutMs: 2000 });
    const groups = await client.listGroups(node('pieces'));
    assert.deepEqual(
      groups.map((g) => [g.labels, g.pushTime]),
      [
        [{ job: 'a', instance: 'a"b[' }, 1.5e9],
        [{ job: 'Zürich 😀', instance: 'a"b[' }, 2],
      ],
    );
    const texts = await client.listGroupsWithText(node('pieces'));
    assert.deepEqual(texts.map((t) => t.text), [group('a', '1.5e+09'), group('Zürich 😀', '2')]);
  });

  const refusals: { name: string; answer: Answer; message: RegExp }[] = [
    { name: 'an error status', answer: { status: 500, chunks: ['boom'] }, message: /^listing 127\.0\.0\.1:\d+: HTTP 500$/ },
    { name: 'a truncated listing', answer: { chunks: [`{"status":"success","data":[${group('a', '1')},{"lab`] }, message: /: the listing ends early \(truncated JSON\)$/ },
    { name: 'a listing that is not JSON', answer: { chunks: ['<html>nope</html>'] }, message: /: the listing is not valid JSON/ },
    { name: 'a group without labels', answer: { chunks: ['{"status":"success","data":[{"job":"a"}]}'] }, message: /: a group without labels$/ },
    { name: 'an answer without data', answer: { chunks: ['{"status":"error","error":"x"}'] }, message: /: no data array$/ },
    { name: 'a node that stops sending halfway', answer: { chunks: ['{"status":"success","data":[', group('a', '1'), ']}'], stallAfter: 2 }, message: /: no answer within 300 ms$/ },
  ];
  for (const refusal of refusals) {
    it(`refuses ${refusal.name} with one line naming the node`, async () => {
      const key = `/${refusal.name.replace(/\W+/g, '-')}`;
      answers.set(key, refusal.answer);
      const client = createNodeClient({ timeoutMs: 300 });
      await assert.rejects(client.listGroups(node(key.slice(1))), (error: Error) => {
        assert.match(error.message, refusal.message);
        assert.doesNotMatch(error.message, /\n/);
        return true;
      });
    });
  }

  it('names the cause when the node cannot be reached', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const parsed = parseNodeUrl(`http://127.0.0.1:${port}`);
    assert.ok(parsed.ok);
    await assert.rejects(createNodeClient({ timeoutMs: 2000 }).listGroups(parsed.node), { message: `listing 127.0.0.1:${port}: unreachable: ECONNREFUSED` });
  });

  it('waits longer than the timeout for a listing that keeps coming', async () => {
    // 12 pieces, one per 60 ms: 720 ms in all, under a 300 ms timeout that bounds each wait.
    const pieces = ['{"status":"success","data":[', ...Array.from({ length: 10 }, (_, i) => `${i === 0 ? '' : ','}${group(`j${i}`, '1')}`), ']}'];
    const slow = http.createServer((req, res) => {
      res.writeHead(200);
      let i = 0;
      const timer = setInterval(() => {
        if (i === pieces.length) {
          clearInterval(timer);
          res.end();
        } else res.write(pieces[i++]);
      }, 60);
    });
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    try {
      const parsed = parseNodeUrl(`http://127.0.0.1:${(slow.address() as AddressInfo).port}`);
      assert.ok(parsed.ok);
      const groups = await createNodeClient({ timeoutMs: 300 }).listGroups(parsed.node);
      assert.equal(groups.length, 10);
    } finally {
      slow.close();
    }
  });
});
