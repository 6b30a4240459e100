/**
 * The fast lane holds its answers until the end of the event loop's turn (fast-lane.ts holdForTurn): what it wrote
 * in a turn is still in the socket, not in the kernel, until the turn's check phase. These specs close connections
 * in the very turn an answer was written and check the answer still goes out first.
 */
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';

import { type Backend, startBackend } from '../support/backend';
import { Conversation } from '../support/conversation';
import { type TestDirector, directorFromFlags } from '../support/director';
import { until } from '../support/wait';

const push = (path: string, body = 'm 1\n'): string =>
  `PUT ${path} HTTP/1.1\r\nHost: director\r\nContent-Length: ${Buffer.byteLength(body, 'latin1')}\r\n\r\n${body}`;

describe('the fast lane closing connections in the turn it answered', () => {
  let backend: Backend;
  let director: TestDirector;
  let port: number;

  /** What the client sends right after the node answered, so the director reads both in one turn. */
  const then = new Map<string, () => void>();

  before(async () => {
    backend = await startBackend((_req, res, received) => {
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': received.body.length });
      res.end(received.body);
      then.get(received.url)?.();
    });
    director = directorFromFlags(['--mode=proxy', '--node', backend.url]);
    port = (await director.listen()).port;
  });
  after(async () => {
    await director.close();
    await backend.close();
  });

  it('lets an answer written in this turn out before closing the idle connections (shutdown)', async () => {
    // The listener closes idle connections right after the lane wrote to one, in the same turn: what a shutdown
    // does when its close lands in the poll phase where a node's answer was relayed.
    let armed = true;
    director.server.on('connection', (socket: Socket) => {
      const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
      socket.write = ((...args: unknown[]): boolean => {
        const ok = write(...args);
        if (armed) {
          armed = false;
          queueMicrotask(() => director.server.closeIdleConnections());
        }
        return ok;
      });
    });
    const client = new Conversation(port);
    client.write(push('/metrics/job/turn', 'm 7\n'));
    await until(() => backend.received.some((r) => r.url === '/metrics/job/turn'), 'the push to reach the node');
    await until(() => client.closed, 'the connection to be closed');
    assert.equal(armed, false, 'the lane never wrote an answer');
    assert.equal(client.responses.length, 1, `the node stored the push but its answer never left: ${JSON.stringify(client.received)}`);
    assert.equal(client.responses[0]?.status, 200);
    assert.equal(client.responses[0]?.body, 'm 7\n');
  });

  // Node's server answers a request it cannot parse with a write and a destroy at once (socketOnError): a request
  // the lane gives it in the turn the lane answered the push before must not take that answer down with it.
  for (const [name, next, status] of [
    ['a malformed request', 'HELLO\r\n\r\n', 400],
    ['a head over 16 KiB', `PUT /metrics/job/x HTTP/1.1\r\nHost: director\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431],
  ] as const) {
    it(`answers a push, then ${name} sent as the answer arrives, in order`, async () => {
      const path = `/metrics/job/then/instance/${status}`;
      const client = new Conversation(port);
      then.set(path, () => client.write(next));
      client.write(push(path, 'm 8\n'));
      await until(() => client.closed, 'the connection to be closed');
      assert.ok(backend.received.some((r) => r.url === path), 'the push never reached the node');
      assert.deepEqual(
        client.responses.map((r) => r.status),
        [200, status],
        `the node stored the push, the client got: ${JSON.stringify(client.received.slice(0, 200))}`,
      );
      assert.equal(client.responses[0]?.body, 'm 8\n');
    });
  }
});
