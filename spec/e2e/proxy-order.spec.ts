/**
 * Pipelined pushes through the proxy, against a real Pushgateway: applied in the order sent, in both lanes, so the
 * last value pushed is the one the Pushgateway keeps.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { Conversation } from '../support/conversation';
import { type TestDirector, directorFromFlags } from '../support/director';
import { type Pushgateway, startPushgateway } from '../support/pushgateway';

const put = (path: string, value: number): string => {
  const body = `# TYPE e2e_order gauge\ne2e_order ${value}\n`;
  return `PUT ${path} HTTP/1.1\r\nHost: director\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
};

describe('end to end: 200 pipelined PUTs of one group leave the last value', () => {
  let node: Pushgateway;
  let director: TestDirector;
  let port: number;
  before(async () => {
    node = await startPushgateway();
    director = directorFromFlags(['--mode=proxy', '--log.level=warn', '--node', node.url]);
    port = (await director.listen()).port;
  });
  after(async () => {
    await director.close();
    await node.stop();
  });

  for (const [lane, prefix] of [
    ['the fast lane', ''],
    // A GET first: the fast lane hands the connection to Node's server at once, as in the review that found 79.
    ["Node's lane", 'GET /-/healthy HTTP/1.1\r\nHost: director\r\n\r\n'],
  ] as const) {
    it(`in ${lane}`, async () => {
      const job = lane === 'the fast lane' ? 'order_fast' : 'order_node';
      const client = new Conversation(port);
      let bytes = prefix;
      for (let i = 1; i <= 200; i++) bytes += put(`/metrics/job/${job}`, i);
      client.write(bytes);
      const answers = await client.waitFor(prefix === '' ? 200 : 201, 60_000);
      client.close();
      assert.ok(answers.every((a) => a.status === 200), answers.map((a) => a.status).join(','));
      const group = (await node.groups()).find((g) => g.labels['job'] === job);
      assert.equal(Number(group?.values['e2e_order']), 200);
    });
  }
});
