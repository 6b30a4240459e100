import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';

import { createNodeClient } from '../../lib/nodes/client';

/** listenOnOne binds the first of `ports` that is free on 127.0.0.1, or resolves undefined when none is. */
async function listenOnOne(server: http.Server, ports: readonly number[]): Promise<number | undefined> {
  for (const port of ports) {
    const bound = await new Promise<boolean>((resolve) => {
      const failed = (): void => resolve(false);
      server.once('error', failed);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', failed);
        resolve(true);
      });
    });
    if (bound) return port;
  }
  return undefined;
}

// fetch refuses the Fetch standard's "bad ports" without connecting: a Pushgateway on 6666 passed its health checks
// (node:http) and took pushes, but every listing failed with "bad port", so passes skipped it and the fleet page
// called it unreachable.
describe('NodeClient: a Pushgateway on a port fetch refuses (6665-6669, 10080, 6000)', () => {
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/api/v1/metrics') {
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"status":"success","data":[{"labels":{"job":"j"},"push_time_seconds":{"metrics":[{"value":"1"}]}}]}');
    } else {
      res.writeHead(202, { 'Content-Length': 0 }).end();
    }
  });
  let port: number | undefined;
  before(async () => {
    port = await listenOnOne(server, [6665, 6666, 6667, 6668, 6669, 10080, 6000]);
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  it('is listed and deleted from like any other', async (t) => {
    if (port === undefined) return t.skip('every port of the list is taken on this machine');
    const client = createNodeClient({ timeoutMs: 5000 });
    const node = { id: `127.0.0.1:${port}`, url: `http://127.0.0.1:${port}` };
    const groups = await client.listGroups(node);
    assert.deepEqual(groups.map((group) => group.labels), [{ job: 'j' }]);
    await client.deleteGroup(node, { job: 'j' });
  });
});
