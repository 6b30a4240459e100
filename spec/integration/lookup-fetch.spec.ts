import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo, LookupFunction } from 'node:net';
import { after, before, describe, it } from 'node:test';

import { createNodeClient } from '../../lib/nodes/client';
import { createLookupFetch } from '../../lib/nodes/lookup-fetch';

describe('createLookupFetch: NodeClient requests resolved by a given lookup', () => {
  let server: http.Server;
  let port: number;
  const seen: string[] = [];
  const looked: string[] = [];
  // Only node.test exists, at 127.0.0.1: the system resolver knows no such name.
  const lookup: LookupFunction = (hostname, options, callback) => {
    looked.push(hostname);
    if (hostname !== 'node.test') callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }), '', undefined);
    else if (options.all === true) callback(null, [{ address: '127.0.0.1', family: 4 }]);
    else callback(null, '127.0.0.1', 4);
  };
  const fetchFn = createLookupFetch(lookup);

  before(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (body += chunk));
      req.on('end', () => {
        seen.push(`${req.method} ${req.url} host=${req.headers.host} type=${req.headers['content-type'] ?? '-'} auth=${req.headers.authorization ?? '-'} body=${JSON.stringify(body)}`);
        if (req.url === '/hang') return;
        if (req.url === '/no-content') {
          res.writeHead(204);
          res.end();
        } else if (req.url === '/api/v1/metrics') {
          res.writeHead(200, { 'Content-Type': 'application/json', 'X-Twice': 'a' }).end('{"status":"success","data":[{"labels":{"job":"j"}}]}');
        } else {
          res.writeHead(202, { 'Content-Length': 0 });
          res.end();
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(() => {
    fetchFn.close();
    server.closeAllConnections();
    server.close();
  });

  it('sends method, headers and body to the address the lookup gives, keeping the name in Host', async () => {
    const response = await fetchFn(`http://node.test:${port}/metrics/job/j`, {
      method: 'PUT',
      body: 'm 1\n',
      headers: { 'Content-Type': 'text/plain', Authorization: 'Basic eDp5' },
    });
    assert.equal(response.status, 202);
    assert.equal(await response.text(), '');
    assert.deepEqual(seen.splice(0), [`PUT /metrics/job/j host=node.test:${port} type=text/plain auth=Basic eDp5 body="m 1\\n"`]);
    assert.ok(looked.includes('node.test'));
  });

  it('answers with a standard Response: status, headers, a readable body, and a null body for 204', async () => {
    const response = await fetchFn(`http://node.test:${port}/api/v1/metrics`);
    assert.equal(response.headers.get('x-twice'), 'a');
    assert.deepEqual(await response.json(), { status: 'success', data: [{ labels: { job: 'j' } }] });
    const empty = await fetchFn(`http://node.test:${port}/no-content`, { method: 'DELETE' });
    assert.equal(empty.status, 204);
    assert.equal(empty.body, null);
    seen.splice(0);
  });

  it('fails on a name the lookup does not know, and on a timeout', async () => {
    await assert.rejects(fetchFn(`http://other.test:${port}/`), /ENOTFOUND other\.test/);
    await assert.rejects(fetchFn(`http://node.test:${port}/hang`, { signal: AbortSignal.timeout(200) }), (error: Error) => error.name === 'AbortError' || error.name === 'TimeoutError');
    seen.splice(0);
  });

  it('carries every NodeClient request when NodeClient is given the lookup', async () => {
    const client = createNodeClient({ timeoutMs: 2000, lookup, authorization: 'Bearer t' });
    const node = { id: `node.test:${port}`, url: `http://node.test:${port}` };
    assert.deepEqual((await client.listGroups(node)).map((group) => group.labels), [{ job: 'j' }]);
    await client.deleteGroup(node, { job: 'j' });
    assert.deepEqual(seen.splice(0), [
      `GET /api/v1/metrics host=node.test:${port} type=- auth=Bearer t body=""`,
      `DELETE /metrics/job@base64/ag host=node.test:${port} type=- auth=Bearer t body=""`,
    ]);
  });
});
