import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import express from 'express';
import request from 'supertest';

import type { FleetView, NodeSummary } from '../../../lib/core/fleet';
import { type FleetGroup, copiesOf, fleetGroupOf } from '../../../lib/core/fleet';
import type { Fleet } from '../../../lib/fleet';
import { createFleetAnswers } from '../../../lib/http/fleet-answers';
import { createFleetRouter } from '../../../lib/http/fleet-api';

const A = { id: '127.0.0.1:9091', url: 'http://127.0.0.1:9091' };
const B = { id: '127.0.0.2:9091', url: 'http://127.0.0.2:9091' };
/** A listed group as a Pushgateway sends it: `text` is its element of the node's `/api/v1/metrics`. */
const listed = (labels: Record<string, string>, text: string): FleetGroup => fleetGroupOf({ labels, lastPushSuccessful: true, pushTime: 1, families: {} }, text);
const group = (job: string, value: string): FleetGroup =>
  listed(
    { job },
    JSON.stringify({ labels: { job }, last_push_successful: true, v: { time_stamp: '2026-01-01T00:00:00Z', type: 'GAUGE', metrics: [{ labels: { job }, value }] } }),
  );
const line = (node: typeof A, reachable: boolean): NodeSummary => ({
  node,
  role: 'member',
  share: 0.5,
  reachable,
  error: reachable ? undefined : 'unreachable: ECONNREFUSED',
  listedAt: Date.now(),
  groups: 0,
  misplaced: 0,
});
function view(groups: FleetGroup[], nodes: NodeSummary[] = [line(A, true)]): FleetView {
  const copies = copiesOf({ node: A, role: 'member', listedAt: 0, groups, error: undefined }, () => A);
  return { nodes, copies, newest: copies };
}
function app(views: FleetView[], maxStaleMs = 60_000) {
  let at = 0;
  const fleet: Fleet = { read: () => Promise.resolve(views[Math.min(at++, views.length - 1)] as FleetView), nodes: () => [], maxStaleMs };
  return express().use(createFleetRouter({ answers: createFleetAnswers({ fleet, staleAfterMs: 3_600_000 }), ui: false }));
}

describe('GET /api/v1/metrics', () => {
  it('answers the newest copies in the Pushgateway\'s shape', async () => {
    const res = await request(app([view([group('a', '1')])])).get('/api/v1/metrics');
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(res.text), {
      status: 'success',
      data: [{ labels: { job: 'a' }, last_push_successful: true, v: { time_stamp: '2026-01-01T00:00:00Z', type: 'GAUGE', metrics: [{ labels: { job: 'a' }, value: '1' }] } }],
    });
  });

  // The Pushgateway's encoder escapes <, > and & and orders keys its own way; the answer keeps its bytes exactly.
  it('re-emits each group\'s element exactly as its node sent it', async () => {
    const texts = [
      '{"labels":{"job":"a\\u003cb"},"last_push_successful":true,"push_time_seconds":{"time_stamp":"2026-01-01T00:00:00.123456789Z","type":"GAUGE","help":"Last Unix time when changing this group in the Pushgateway succeeded.","metrics":[{"labels":{"job":"a\\u003cb"},"value":"1.795979327137121e+09"}]}}',
      '{"last_push_successful":false, "labels":{"job":"ü"}}',
    ];
    const res = await request(app([view([listed({ job: 'a<b' }, texts[0] as string), listed({ job: 'ü' }, texts[1] as string)])])).get('/api/v1/metrics');
    assert.equal(res.status, 200);
    assert.equal(res.text, `{"status":"success","data":[${texts.join(',')}]}`);
    assert.equal(res.headers['content-length'], String(Buffer.byteLength(res.text)));
  });

  it('answers a fleet larger than one chunk whole and in order, the same bytes to readers at once', async () => {
    const groups = Array.from({ length: 3000 }, (_, i) => group(`job-${String(i).padStart(4, '0')}`, 'x'.repeat(i % 1500)));
    const server = app([view(groups)]);
    const answers = await Promise.all(Array.from({ length: 4 }, () => request(server).get('/api/v1/metrics')));
    const body = (answers[0] as request.Response).text;
    assert.ok(Buffer.byteLength(body) > 2 * (1 << 20), `more than two chunks: ${Buffer.byteLength(body)} bytes`);
    assert.ok(answers.every((res) => res.status === 200 && res.text === body && res.headers['content-length'] === String(Buffer.byteLength(body))));
    const decoded = JSON.parse(body) as { data: { labels: { job: string } }[] };
    assert.deepEqual(decoded.data.map((g) => g.labels.job), groups.map((g) => g.labels['job']));
  });

  it('takes turns on the event loop between the chunks it writes to a reader, even when the socket takes them at once', async () => {
    const groups = Array.from({ length: 3000 }, (_, i) => group(`job-${i}`, 'x'.repeat(1000)));
    let turns = 0;
    const pacer = { due: () => true, next: () => new Promise<void>((resolve) => setImmediate(() => (turns++, resolve()))) };
    const one = view(groups);
    const fleet: Fleet = { read: () => Promise.resolve(one), nodes: () => [], maxStaleMs: 60_000 };
    const server = express().use(createFleetRouter({ answers: createFleetAnswers({ fleet, staleAfterMs: 3_600_000, pacer }), ui: false, pacer }));
    const first = await request(server).get('/api/v1/metrics');
    // The second reader gets the answer already made: every turn it takes is between its writes.
    turns = 0;
    const second = await request(server).get('/api/v1/metrics');
    assert.equal(second.status, 200);
    assert.equal(second.text, first.text);
    assert.ok(turns > 0, 'wrote every chunk in one turn');
  });

  it('serves the last answer made while the next view\'s answer is serialised, then the next', async () => {
    const server = app([view([group('a', '1')]), view([group('a', '2')])]);
    const values = [];
    for (let i = 0; i < 3; i++) values.push((JSON.parse((await request(server).get('/api/v1/metrics')).text) as { data: { v: { metrics: { value: string }[] } }[] }).data[0]?.v.metrics[0]?.value);
    assert.deepEqual(values, ['1', '1', '2']);
  });

  it('never serves an older answer when stale views are off', async () => {
    const server = app([view([group('a', '1')]), view([group('a', '2')])], 0);
    const values = [];
    for (let i = 0; i < 2; i++) values.push((JSON.parse((await request(server).get('/api/v1/metrics')).text) as { data: { v: { metrics: { value: string }[] } }[] }).data[0]?.v.metrics[0]?.value);
    assert.deepEqual(values, ['1', '2']);
  });

  it('names the nodes it could not list in a header, and answers 503 when none could be listed or there is none', async () => {
    const partial = await request(app([view([group('a', '1')], [line(A, true), line(B, false)])])).get('/api/v1/metrics');
    assert.equal(partial.status, 200);
    assert.equal(partial.headers['x-pgw-director-unlisted'], B.id);
    const none = await request(app([view([], [line(A, false), line(B, false)])])).get('/api/v1/metrics');
    assert.equal(none.status, 503);
    assert.deepEqual(JSON.parse(none.text), {
      status: 'error',
      errorType: 'unavailable',
      error: 'no pushgateway could be listed: 127.0.0.1:9091 (unreachable: ECONNREFUSED), 127.0.0.2:9091 (unreachable: ECONNREFUSED)',
    });
    const empty = await request(app([view([], [])])).get('/api/v1/metrics');
    assert.equal(empty.status, 503);
    assert.equal((JSON.parse(empty.text) as { error: string }).error, 'no pushgateway nodes available');
  });

  it('serves no page with the UI off', async () => {
    assert.equal((await request(app([view([])])).get('/')).status, 404);
  });
});
