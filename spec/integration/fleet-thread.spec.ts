import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import type { LookupFunction } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';

import express from 'express';
import { Registry } from 'prom-client';
import request from 'supertest';

import { type Node, parseNodeUrl } from '../../lib/core/node';
import { createFleetThread, type FleetThread, type FleetThreadOptions } from '../../lib/fleet/thread';
import { createFleetRouter } from '../../lib/http/fleet-api';
import { createLogger } from '../../lib/logger';
import { Placement } from '../../lib/placement';
import { type Backend, startBackend } from '../support/backend';
import { LogSink, directorFromFlags } from '../support/director';
import { freePort } from '../support/processes';

const MISBEHAVING = join(__dirname, '..', 'support', 'workers', 'fleet-misbehaving.js');

/** element is a group's element of a Pushgateway listing, as the Pushgateway writes it. */
function element(labels: Record<string, string>, pushTime: number): string {
  return JSON.stringify({
    labels,
    last_push_successful: true,
    push_time_seconds: {
      time_stamp: new Date(pushTime * 1000).toISOString(),
      type: 'GAUGE',
      help: 'Last Unix time when changing this group in the Pushgateway succeeded.',
      metrics: [{ labels, value: String(pushTime) }],
    },
  });
}

/** pushgatewayDouble answers listings with the given elements (and anything else with 200). */
function pushgatewayDouble(elements: () => string[]): Promise<Backend> {
  return startBackend((req, res) => {
    if (req.method === 'GET' && req.url === '/api/v1/metrics') {
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(`{"status":"success","data":[${elements().join(',')}]}`);
      return;
    }
    res.writeHead(200, { 'Content-Length': 0 }).end();
  });
}

function nodeOf(url: string): Node {
  const parsed = parseNodeUrl(url);
  assert.ok(parsed.ok);
  return parsed.node;
}

type Data = { data: { labels: Record<string, string>; push_time_seconds: { metrics: { value: string }[] } }[] };

describe('the fleet reads on their worker thread', () => {
  it('answers the union of the nodes, lists them with the node credentials, names a dead one and counts the listings', async () => {
    const now = Math.floor(Date.now() / 1000);
    const a = await pushgatewayDouble(() => [element({ job: 'a', instance: '1' }, now - 10), element({ job: 'shared' }, now - 50)]);
    const b = await pushgatewayDouble(() => [element({ job: 'b', instance: '2' }, now - 20), element({ job: 'shared' }, now - 5)]);
    const dead = `http://127.0.0.1:${await freePort()}`;
    const file = join(mkdtempSync(join(tmpdir(), 'pgw-fleet-token-')), 'token');
    writeFileSync(file, 'fleet-secret\n');
    const director = directorFromFlags(['--mode=proxy', '--node', a.url, '--node', b.url, '--node', dead, `--node.authorization.credentials-file=${file}`]);
    director.discovery.start();
    try {
      const metrics = await request(director.server).get('/api/v1/metrics');
      assert.equal(metrics.status, 200);
      assert.equal(metrics.headers['x-pgw-director-unlisted'], nodeOf(dead).id);
      assert.equal(metrics.headers['content-length'], String(Buffer.byteLength(metrics.text)));
      const data = (JSON.parse(metrics.text) as Data).data;
      assert.deepEqual(data.map((group) => group.labels['job']).sort(), ['a', 'b', 'shared']);
      const shared = data.find((group) => group.labels['job'] === 'shared');
      assert.equal(shared?.push_time_seconds.metrics[0]?.value, String(now - 5), 'the newest copy of the shared group');
      for (const node of [a, b]) {
        const listing = node.received.find((r) => r.method === 'GET' && r.url === '/api/v1/metrics');
        assert.equal(listing?.headers.authorization, 'Bearer fleet-secret');
      }

      const groups = await request(director.server).get('/api/v1/fleet/groups?job=shared');
      assert.equal(groups.status, 200);
      assert.match(String(groups.headers['content-type']), /^application\/json/);
      const body = groups.body as { data: { total: number; copies_total: number; nodes: { id: string; reachable: boolean; health: string }[] } };
      assert.equal(body.data.total, 2);
      assert.equal(body.data.copies_total, 4);
      assert.deepEqual(body.data.nodes.map((line) => [line.id, line.reachable, line.health]), [
        ...[a, b].map((node) => [nodeOf(node.url).id, true, 'in ring']),
        [nodeOf(dead).id, false, 'in ring'],
      ].sort((x, y) => director.placement.ring.nodes.findIndex((n) => n.id === x[0]) - director.placement.ring.nodes.findIndex((n) => n.id === y[0])));
      // A filter on a label named __proto__ crosses to the worker as a filter, not as nothing (which lists everything).
      const proto = await request(director.server).get('/api/v1/fleet/groups').query({ label: '__proto__=x' });
      assert.equal((proto.body as { data: { total: number } }).data.total, 0);

      const page = await request(director.server).get('/?job=a');
      assert.equal(page.status, 200);
      assert.match(page.text, /<code>a<\/code>/);
      assert.doesNotMatch(page.text, /<code>b<\/code>/);
      assert.equal((await request(director.server).get('/?page=x')).status, 400);

      const exposition = (await request(director.server).get('/metrics')).text;
      assert.match(exposition, new RegExp(`pgw_director_fleet_listings_total\\{node="${nodeOf(a.url).id}",outcome="ok"\\} 1\\n`));
      assert.match(exposition, new RegExp(`pgw_director_fleet_listings_total\\{node="${nodeOf(dead).id}",outcome="error"\\} 1\\n`));
      assert.ok(!director.log.raw.join('\n').includes('fleet-secret'), 'the node token reached the log');
    } finally {
      await director.close();
      await a.close();
      await b.close();
    }
  });

  it('reaches nodes by name through the main thread\'s lookup, and sends a view\'s answer across once', async () => {
    const a = await pushgatewayDouble(() => [element({ job: 'named' }, 1)]);
    const asked: string[] = [];
    const lookup: LookupFunction = (hostname, _options, callback) => {
      asked.push(hostname);
      callback(null, [{ address: '127.0.0.1', family: 4 }]);
    };
    const placement = new Placement({ vnodes: 10, hashKey: 'grouping-key' });
    placement.update([nodeOf(`http://pgw-a.fleet.test:${a.port}`)]);
    const thread = createFleetThread({
      placement,
      vnodes: 10,
      drain: [],
      staleAfterMs: 3_600_000,
      client: { timeoutMs: 5000, authorization: undefined },
      lookup,
      logger: createLogger('info', new LogSink()),
    });
    try {
      const answer = await thread.metrics();
      assert.ok(answer.ok);
      assert.match(Buffer.concat(answer.chunks).toString(), /"job":"named"/);
      assert.deepEqual(asked, ['pgw-a.fleet.test']);
      // The same view's body crosses once: the next read is named by id and served the Buffers already here.
      const again = await thread.metrics();
      assert.ok(again.ok);
      assert.equal(again.chunks, answer.chunks);
    } finally {
      await thread.close();
      await a.close();
    }
  });

  it('serves the newest view whose answer is made while the next one is made, never one older (readers polling past the cache)', async () => {
    // Each listing holds the groups pushed so far; a reader polls past the cache, so every read finds a new view.
    let pushed = 1;
    const registry = new Registry();
    const a = await pushgatewayDouble(() => Array.from({ length: pushed }, (_, i) => element({ job: `poll-${i}` }, 100 + i)));
    const placement = new Placement({ vnodes: 10, hashKey: 'grouping-key' });
    placement.update([nodeOf(a.url)]);
    const thread = createFleetThread({
      placement,
      vnodes: 10,
      drain: [],
      staleAfterMs: 3_600_000,
      cacheMs: 0,
      client: { timeoutMs: 5000, authorization: undefined },
      logger: createLogger('info', new LogSink()),
      registry,
    });
    const listed = async (): Promise<number> => (await registry.getSingleMetric('pgw_director_fleet_listings_total')?.get())?.values.reduce((sum, v) => sum + v.value, 0) ?? 0;
    const jobsIn = async (): Promise<number> => {
      const answer = await thread.metrics();
      assert.ok(answer.ok);
      return (JSON.parse(Buffer.concat(answer.chunks).toString()) as Data).data.length;
    };
    try {
      assert.equal(await jobsIn(), 1);
      pushed = 2;
      const seen: number[] = [];
      for (let read = 0; read < 8 && !seen.includes(2); read++) {
        const before = await listed();
        seen.push(await jobsIn());
        // The read started a listing unless one still ran (the cache is 0 ms); the next read comes once it was made
        // and the worker had time to build its view.
        for (let turn = 0; turn < 5000 && (await listed()) === before; turn++) await new Promise((resolve) => setImmediate(resolve));
        for (let turn = 0; turn < 200; turn++) await new Promise((resolve) => setImmediate(resolve));
      }
      assert.ok(seen.includes(2), `a view made after the push was never served (served ${seen.join(', ')} groups)`);
    } finally {
      await thread.close();
      await a.close();
    }
  });

  describe('a worker that fails is a 503 and one log line, never a failed process', () => {
    afterEach(() => {
      delete process.env['PGW_SPEC_FLEET_WORKER'];
    });
    const threaded = (how: string, retryMs: number, more: Partial<FleetThreadOptions> = {}): { thread: FleetThread; app: express.Express; log: LogSink } => {
      process.env['PGW_SPEC_FLEET_WORKER'] = how;
      const log = new LogSink();
      const placement = new Placement({ vnodes: 10, hashKey: 'grouping-key' });
      placement.update([nodeOf('http://127.0.0.1:9')]);
      const thread = createFleetThread({
        placement,
        vnodes: 10,
        drain: [],
        staleAfterMs: 3_600_000,
        client: { timeoutMs: 1000, authorization: undefined },
        logger: createLogger('info', log),
        registry: new Registry(),
        workerFile: MISBEHAVING,
        retryMs,
        ...(how === 'hog' ? { resourceLimits: { maxOldGenerationSizeMb: 32 } } : {}),
        ...more,
      });
      return { thread, app: express().use(createFleetRouter({ answers: thread, ui: true })), log };
    };
    const failures = (log: LogSink): unknown[] => log.lines.filter((line) => String(line['msg']).startsWith('the fleet view failed in its worker thread'));

    const cases: { how: string; message: RegExp }[] = [
      { how: 'throw', message: /^the fleet view failed in its worker thread: the fleet worker broke$/ },
      { how: 'exit', message: /^the fleet view failed in its worker thread: the worker exited \(code 3\)$/ },
      { how: 'garbage', message: /^the fleet view failed in its worker thread: unexpected message \{"type":"surprise"\}$/ },
      { how: 'silent', message: /^the fleet view failed in its worker thread: the worker exited \(code 0\)$/ },
      { how: 'hog', message: /^the fleet view failed in its worker thread: it ran out of memory/ },
    ];
    for (const { how, message } of cases) {
      it(`answers 503 when the worker fails (${how}), then reads again with a new worker`, async () => {
        const { thread, app, log } = threaded(how, 0);
        try {
          const metrics = await request(app).get('/api/v1/metrics');
          assert.equal(metrics.status, 503);
          const error = metrics.body as { status: string; errorType: string; error: string };
          assert.equal(error.status, 'error');
          assert.equal(error.errorType, 'unavailable');
          assert.match(error.error, message);
          assert.equal(failures(log).length, 1, 'one log line per failure');
          assert.doesNotMatch(error.error, /\n/);

          process.env['PGW_SPEC_FLEET_WORKER'] = 'none';
          const again = await request(app).get('/api/v1/metrics');
          // The node at 127.0.0.1:9 does not listen: the real worker answers, with that node unlisted.
          assert.equal(again.status, 503);
          assert.match((again.body as { error: string }).error, /^no pushgateway could be listed: 127\.0\.0\.1:9 /);
          assert.equal((await request(app).get('/')).status, 200);
          assert.equal(failures(log).length, 1);
        } finally {
          await thread.close();
        }
      });
    }

    it('ends a worker whose event loop stopped turning, and answers 503', async () => {
      const { thread, app, log } = threaded('stuck', 0, { heartbeatMs: 50, stuckMs: 300 });
      try {
        const page = await request(app).get('/');
        assert.equal(page.status, 503);
        assert.equal(page.text, 'the fleet view failed in its worker thread: it answered nothing for 300 ms (stuck)\n');
        assert.equal(failures(log).length, 1);
      } finally {
        await thread.close();
      }
    });

    it('refuses reads for a while after a failure rather than starting a worker per read', async () => {
      const { thread, app, log } = threaded('throw', 60_000);
      try {
        assert.equal((await request(app).get('/')).status, 503);
        process.env['PGW_SPEC_FLEET_WORKER'] = 'none';
        const page = await request(app).get('/');
        assert.equal(page.status, 503);
        assert.equal(page.text, 'the fleet view failed in its worker thread: the fleet worker broke\n');
        const groups = await request(app).get('/api/v1/fleet/groups');
        assert.equal(groups.status, 503);
        assert.equal(failures(log).length, 1);
      } finally {
        await thread.close();
      }
    });
  });
});
