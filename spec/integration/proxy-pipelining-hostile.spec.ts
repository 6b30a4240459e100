/**
 * What pipelining pushes of different clients on one node connection would give away, tried with the director's
 * defaults and a raw node:net node, through both lanes: a node's answer is one client's only, and a push whose answer
 * never comes holds up no other client's push. On a pipelined connection neither holds: HTTP/1.1 answers carry
 * nothing that ties them to their request, so a surplus answer is taken as the next push's, and every push behind an
 * unanswered one waits for --proxy.timeout.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { afterEach, beforeEach, describe, it } from 'node:test';

import { type TestDirector, directorFromFlags } from '../support/director';
import { Conversation } from '../support/conversation';
import { until } from '../support/wait';

const INJECTED = 'HTTP/1.1 299 Injected\r\nContent-Length: 8\r\n\r\ninjected';

const push = (path: string, extra: string): string => `PUT ${path} HTTP/1.1\r\nHost: director\r\nContent-Length: 4\r\n${extra}\r\nm 1\n`;

// Two User-Agent fields: Node's server takes them, the fast lane leaves such a push to it.
const LANES = [
  ['the fast lane', ''],
  ["Node's lane", 'User-Agent: a\r\nUser-Agent: b\r\n'],
] as const;

/** A request the node read: its connection and its path. */
type Received = Readonly<{ socket: net.Socket; path: string }>;

/**
 * HostileNode answers each push with its path, as a Pushgateway answers in order on each connection, except: a push
 * to a `held` path is answered once two are held, the one to `/extra` with a second answer after it; a push to a
 * `stuck` path is never answered, nor anything behind it on its connection.
 */
class HostileNode {
  readonly server: net.Server;
  readonly received: string[] = [];
  private held: Received[] = [];

  constructor() {
    this.server = net.createServer((socket) => {
      socket.on('error', () => undefined);
      let buffered = '';
      let stuck = false;
      socket.on('data', (data: Buffer) => {
        buffered += data.toString('latin1');
        for (;;) {
          const head = /^[A-Z]+ (\S+) HTTP\/1\.1\r\n([\s\S]*?)\r\n\r\n/.exec(buffered);
          if (head === null) return;
          const length = Number(/content-length: *(\d+)/i.exec(head[2] ?? '')?.[1] ?? 0);
          if (buffered.length < head[0].length + length) return;
          buffered = buffered.slice(head[0].length + length);
          const path = head[1] ?? '';
          this.received.push(path);
          if (path.includes('stuck')) stuck = true;
          if (stuck) continue;
          if (!path.includes('held')) {
            socket.write(answer(path));
            continue;
          }
          this.held.push({ socket, path });
          if (this.held.length < 2) continue;
          for (const one of this.held.splice(0)) one.socket.write(answer(one.path) + (one.path.endsWith('/extra') ? INJECTED : ''));
        }
      });
    });
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
  }
}

const answer = (path: string): string => `HTTP/1.1 200 OK\r\nContent-Length: ${path.length}\r\n\r\n${path}`;

/** pushOnce sends one push on a connection of its own and resolves with its answer's status and body. */
async function pushOnce(port: number, path: string, extra: string): Promise<string> {
  const client = new Conversation(port);
  client.write(push(path, extra));
  const [response] = await client.waitFor(1, 20_000);
  client.close();
  return `${response?.status} ${response?.body}`;
}

describe('pushes of different clients to one node', () => {
  let node: HostileNode;
  let director: TestDirector;
  let port: number;
  // A node and a director of their own for each case: a node that answered out of turn stays out of turn.
  beforeEach(async () => {
    node = new HostileNode();
    await new Promise<void>((resolve) => node.server.listen(0, '127.0.0.1', resolve));
    director = directorFromFlags(['--mode=proxy', '--proxy.timeout=5s', '--node', node.url]);
    port = (await director.listen()).port;
  });
  afterEach(async () => {
    await director.close();
    node.server.close();
  });

  for (const [lane, extra] of LANES) {
    it(`never get an answer the node sent beyond the one asked for, in ${lane}`, async () => {
      // A connection to the node, idle: the next pushes may go on it together.
      assert.equal(await pushOnce(port, '/metrics/job/warm', extra), '200 /metrics/job/warm');
      const [first, second] = await Promise.all([
        pushOnce(port, '/metrics/job/held/instance/extra', extra),
        pushOnce(port, '/metrics/job/held/instance/other', extra),
      ]);
      assert.equal(first, '200 /metrics/job/held/instance/extra');
      assert.equal(second, '200 /metrics/job/held/instance/other', "one client got the answer the node sent beyond another's");
    });

    it(`are not held up by a push whose answer never comes, in ${lane}`, async () => {
      assert.equal(await pushOnce(port, '/metrics/job/warm', extra), '200 /metrics/job/warm');
      let stuckAnswered = false;
      const stuck = pushOnce(port, `/metrics/job/stuck/instance/${lane.length}`, extra).finally(() => (stuckAnswered = true));
      await until(() => node.received.includes(`/metrics/job/stuck/instance/${lane.length}`), 'the stuck push to reach the node');
      for (const name of ['a', 'b', 'c']) {
        const path = `/metrics/job/behind/instance/${name}`;
        assert.equal(await pushOnce(port, path, extra), `200 ${path}`);
        if (stuckAnswered) assert.fail(`the push to ${path} waited for the stuck push's ${await stuck}`);
      }
      assert.match(await stuck, /^504 pushgateway "127\.0\.0\.1:\d+" did not answer within 5000ms/);
    });
  }
});
