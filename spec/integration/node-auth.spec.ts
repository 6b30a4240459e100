/**
 * The node credentials belong to the director's own requests; a client's push keeps its own Authorization, or none.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import request from 'supertest';

import { type Backend, startBackend } from '../support/backend';
import { type TestDirector, directorFromFlags } from '../support/director';

const TOKEN = 'director-token-5c1e';

describe('node credentials and clients\' own credentials', () => {
  let backend: Backend;
  let director: TestDirector;
  before(async () => {
    backend = await startBackend((req, res) => {
      if (req.method === 'GET') return res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"status":"success","data":[]}');
      return res.writeHead(200, { 'Content-Length': 0 }).end();
    });
    const file = join(mkdtempSync(join(tmpdir(), 'pgw-node-token-')), 'token');
    writeFileSync(file, `${TOKEN}\n`);
    director = directorFromFlags(['--mode=proxy', '--node', backend.url, `--node.authorization.credentials-file=${file}`]);
    director.discovery.start();
  });
  after(async () => {
    await director.close();
    await backend.close();
  });

  it('sends the node credentials on the director\'s own requests', async () => {
    await director.reconciler.pass();
    const listing = backend.received.find((r) => r.method === 'GET' && r.url === '/api/v1/metrics');
    assert.equal(listing?.headers.authorization, `Bearer ${TOKEN}`);
  });

  it('relays a client\'s own Authorization untouched, and adds none to a push without one', async () => {
    await request(director.server).put('/metrics/job/with-auth').set('Authorization', 'Basic Y2xpZW50OnB3').send('m 1\n');
    await request(director.server).put('/metrics/job/without-auth').send('m 1\n');
    const pushed = (url: string) => backend.received.find((r) => r.url === url);
    assert.equal(pushed('/metrics/job/with-auth')?.headers.authorization, 'Basic Y2xpZW50OnB3');
    assert.ok(pushed('/metrics/job/without-auth'), 'the push did not reach the node');
    assert.equal(pushed('/metrics/job/without-auth')?.headers.authorization, undefined);
    assert.ok(!director.log.raw.join('\n').includes(TOKEN), 'the node token reached the log');
  });
});
