import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo, LookupFunction } from 'node:net';
import { after, before, describe, it } from 'node:test';

import { createNodeClient } from '../../lib/nodes/client';
import { freePort } from '../support/processes';

// Reconciliation and the fan-out log a failed request's message: fetch's own ("fetch failed") said nothing of why.
describe('NodeClient: a node that cannot be reached fails with one line saying why', () => {
  let hung: http.Server;
  let hungPort: number;
  let closedPort: number;

  before(async () => {
    // Answers the headers of a listing, then never sends its body; never answers a DELETE.
    hung = http.createServer((req, res) => {
      if (req.url === '/api/v1/metrics') res.writeHead(200, { 'Content-Type': 'application/json' }).write('{"data":[');
    });
    await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve));
    hungPort = (hung.address() as AddressInfo).port;
    closedPort = await freePort();
  });
  after(() => {
    hung.closeAllConnections();
    hung.close();
  });

  const lookup: LookupFunction = (_hostname, options, callback) => {
    if (options.all === true) callback(null, [{ address: '127.0.0.1', family: 4 }]);
    else callback(null, '127.0.0.1', 4);
  };
  const clients = [
    ['fetch', createNodeClient({ timeoutMs: 300 })],
    ['a DNS lookup', createNodeClient({ timeoutMs: 300, lookup })],
  ] as const;
  for (const [name, client] of clients) {
    it(`names the refused connection (${name})`, async () => {
      const node = { id: `127.0.0.1:${closedPort}`, url: `http://127.0.0.1:${closedPort}` };
      await assert.rejects(client.listGroups(node), { message: 'unreachable: ECONNREFUSED' });
      await assert.rejects(client.deleteGroup(node, { job: 'j' }), { message: 'unreachable: ECONNREFUSED' });
      await assert.rejects(client.putGroup(node, { job: 'j' }, 'm 1\n'), { message: 'unreachable: ECONNREFUSED' });
    });

    it(`names the timeout of a node that never answers (${name})`, async () => {
      const node = { id: `127.0.0.1:${hungPort}`, url: `http://127.0.0.1:${hungPort}` };
      await assert.rejects(client.deleteGroup(node, { job: 'j' }), { message: 'unreachable: no answer within 300ms' });
    });
  }

  it('names the timeout of a listing whose body never ends', async () => {
    const node = { id: `127.0.0.1:${hungPort}`, url: `http://127.0.0.1:${hungPort}` };
    await assert.rejects(createNodeClient({ timeoutMs: 300 }).listGroups(node), { message: 'unreachable: no answer within 300ms' });
  });
});
