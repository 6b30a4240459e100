import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { parseGroupingKey } from '../../lib/core/grouping-key';
import { type TestDirector, directorFromFlags } from '../support/director';
import { type DecodedGroup, decodeApi } from '../support/fleet';
import { type Pushgateway, httpRequest, startPushgateway } from '../support/pushgateway';

const b64 = (value: string): string => (value === '' ? '=' : Buffer.from(value, 'utf8').toString('base64url'));

/** A group to push: its labels (job first) and a text-format body. */
type Push = { labels: Record<string, string>; body: string };

function pathOf(labels: Record<string, string>): string {
  let path = `/metrics/job@base64/${b64(labels['job'] ?? '')}`;
  for (const [name, value] of Object.entries(labels)) if (name !== 'job') path += `/${name}@base64/${b64(value)}`;
  return path;
}

// Every type the Pushgateway's API renders, with help texts and hostile label values. Families with one name keep
// one type across groups: the Pushgateway refuses a push whose type clashes with another group's.
const PUSHES: Push[] = [
  ...Array.from({ length: 12 }, (_, i) => ({
    labels: { job: `fleet_${i % 4}`, instance: `host-${i}` },
    body: `# HELP fleet_runs_total Runs.\n# TYPE fleet_runs_total counter\nfleet_runs_total ${i}\n# TYPE fleet_temp gauge\nfleet_temp{room="r${i}"} -${i}.5\n`,
  })),
  {
    labels: { job: 'fleet_summary', instance: 'a' },
    body: '# TYPE fleet_latency summary\nfleet_latency{quantile="0.5"} 1\nfleet_latency{quantile="0.99"} 2.5\nfleet_latency_sum 12\nfleet_latency_count 10\n',
  },
  {
    labels: { job: 'fleet_histogram', instance: 'a' },
    body: '# TYPE fleet_size histogram\nfleet_size_bucket{le="1"} 2\nfleet_size_bucket{le="10"} 5\nfleet_size_bucket{le="+Inf"} 6\nfleet_size_sum 30\nfleet_size_count 6\n',
  },
  { labels: { job: 'fleet_untyped', path: '/var/lib', empty: '' }, body: 'fleet_plain 1e+300\n' },
  { labels: { job: '<b>Zürich</b> "Π"', note: '</td><script>alert(1)</script>' }, body: 'fleet_plain 3\n' },
];

function ownerOf(director: TestDirector, labels: Record<string, string>): string {
  const parsed = parseGroupingKey(pathOf(labels));
  assert.ok(parsed.ok);
  const owner = director.placement.owner(parsed.key, parsed.path);
  assert.ok(owner);
  return owner.url;
}

async function put(url: string, labels: Record<string, string>, body: string): Promise<void> {
  const res = await httpRequest(`${url}${pathOf(labels)}`, { method: 'PUT', body });
  assert.equal(res.status, 200, `${url}${pathOf(labels)}: ${res.status} ${res.body}`);
}

const identity = (group: DecodedGroup): string => JSON.stringify(Object.entries(group.labels).sort());
const pushTime = (group: DecodedGroup): number => Number(group.families['push_time_seconds']?.metrics[0]?.value);

/** newestOfNodes decodes every node's own answer strictly and keeps the newest copy of each group. */
async function newestOfNodes(nodes: readonly Pushgateway[]): Promise<Map<string, { line: string; group: DecodedGroup }>> {
  const newest = new Map<string, { line: string; group: DecodedGroup }>();
  for (const node of nodes) {
    const res = await httpRequest(`${node.url}/api/v1/metrics`);
    const { lines, groups } = await decodeApi(res.body);
    groups.forEach((group, i) => {
      const current = newest.get(identity(group));
      if (current === undefined || pushTime(group) > pushTime(current.group)) newest.set(identity(group), { line: lines[i] as string, group });
    });
  }
  return newest;
}

/** apiRequests reads how many /api/v1/metrics requests a Pushgateway has served, from its own metrics. */
async function apiRequests(node: Pushgateway): Promise<number> {
  const res = await httpRequest(`${node.url}/metrics`);
  const match = /^pushgateway_http_requests_total\{code="200",handler="api\/v1\/metrics",method="get"\} (\d+)$/m.exec(res.body);
  return Number(match?.[1] ?? 0);
}

describe('the fleet read as one Pushgateway, with real Pushgateways', () => {
  let nodes: Pushgateway[] = [];
  let director: TestDirector;
  let url: string;
  const older = { job: 'fleet_moved', instance: 'older-elsewhere' };
  const newer = { job: 'fleet_moved', instance: 'newer-elsewhere' };
  let strayNode = '';

  before(async () => {
    nodes = await Promise.all([startPushgateway(), startPushgateway(), startPushgateway()]);
    // No cache and no stale views: every read lists the nodes again, so each spec sees the pushes made before it.
    director = directorFromFlags(['--mode=proxy', '--reconcile.interval=0', '--log.level=warn', ...nodes.flatMap((n) => ['--node', n.url])], {}, { fleetCacheMs: 0, fleetMaxStaleMs: 0 });
    url = `http://127.0.0.1:${(await director.listen()).port}`;
    for (const push of PUSHES) await put(url, push.labels, push.body);
    // Two groups with a second copy off their owner: one older than the owner's copy, one newer.
    const body = (value: number): string => `# TYPE fleet_moved_value gauge\nfleet_moved_value ${value}\n`;
    // Three nodes, two owners: at least one node owns neither group.
    const stray = nodes.find((node) => node.url !== ownerOf(director, older) && node.url !== ownerOf(director, newer));
    assert.ok(stray);
    strayNode = stray.id;
    await put(stray.url, older, body(1));
    await put(url, older, body(2));
    await put(url, newer, body(1));
    await put(stray.url, newer, body(2));
  });
  after(async () => {
    await director.close();
    await Promise.all(nodes.map((node) => node.stop()));
  });

  it('answers /api/v1/metrics with the union of the nodes\' answers, newest copy of each group once, as a Go consumer decodes it', async () => {
    const res = await httpRequest(`${url}/api/v1/metrics`);
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'application/json');
    assert.equal(res.headers['x-pgw-director-unlisted'], undefined);
    const { lines, groups } = await decodeApi(res.body);
    const expected = await newestOfNodes(nodes);
    assert.equal(expected.size, PUSHES.length + 2);
    assert.equal(new Set(groups.map(identity)).size, groups.length, 'a group is listed twice');
    assert.deepEqual(new Set(lines), new Set([...expected.values()].map((entry) => entry.line)));
    const value = (labels: Record<string, string>): string | undefined =>
      groups.find((g) => identity(g) === JSON.stringify(Object.entries(labels).sort()))?.families['fleet_moved_value']?.metrics[0]?.value;
    assert.equal(value(older), '2', 'the owner\'s newer copy wins');
    assert.equal(value(newer), '2', 'the misplaced newer copy wins');
  });

  it('lists every copy in /api/v1/fleet/groups, with owner, misplaced marks, filters and pages', async () => {
    const all = await httpRequest(`${url}/api/v1/fleet/groups?limit=10000`);
    assert.equal(all.status, 200);
    type Copy = { labels: Record<string, string>; job: string; node: string; owner: string; misplaced: boolean; stale: boolean; push_time: string };
    type Data = { nodes: { id: string; reachable: boolean; groups: number; misplaced: number; health: string }[]; copies: Copy[]; total: number; copies_total: number; groups_total: number };
    const data = (JSON.parse(all.body) as { data: Data }).data;
    const onNodes = await Promise.all(nodes.map((node) => node.groups()));
    assert.equal(data.copies_total, onNodes.flat().length);
    assert.equal(data.groups_total, PUSHES.length + 2);
    assert.deepEqual(
      data.nodes.map((n) => [n.id, n.reachable, n.groups, n.health]),
      nodes.map((node, i) => [node.id, true, onNodes[i]?.length, 'in ring']).sort(),
    );
    const moved = data.copies.filter((copy) => copy.labels['instance'] === 'older-elsewhere');
    assert.equal(moved.length, 2);
    const stray = moved.find((copy) => copy.node === strayNode);
    assert.ok(stray?.misplaced && stray.owner !== strayNode && /^\d{4}-\d\d-\d\dT/.test(stray.push_time));
    assert.equal(data.nodes.find((n) => n.id === strayNode)?.misplaced, data.copies.filter((c) => c.node === strayNode && c.misplaced).length);

    const byJob = (JSON.parse((await httpRequest(`${url}/api/v1/fleet/groups?job=fleet_1`)).body) as { data: Data }).data;
    assert.deepEqual(byJob.copies.map((c) => c.labels['instance']).sort(), ['host-1', 'host-5', 'host-9']);
    const hostile = encodeURIComponent('note=</td><script>alert(1)</script>');
    const byLabel = (JSON.parse((await httpRequest(`${url}/api/v1/fleet/groups?label=${hostile}`)).body) as { data: Data }).data;
    assert.deepEqual(byLabel.copies.map((c) => c.job), ['<b>Zürich</b> "Π"']);
    const pages: Copy[] = [];
    for (let offset = 0; offset < data.total; offset += 4) {
      const page = (JSON.parse((await httpRequest(`${url}/api/v1/fleet/groups?limit=4&offset=${offset}`)).body) as { data: Data }).data;
      assert.equal(page.total, data.total);
      pages.push(...page.copies);
    }
    // Ages move between requests; everything else must be the same, in the same order.
    const withoutAge = (copy: Copy): Copy => ({ ...copy, age_seconds: 0 }) as Copy;
    assert.deepEqual(pages.map(withoutAge), data.copies.map(withoutAge));
    const bad = await httpRequest(`${url}/api/v1/fleet/groups?label=nolabel`);
    assert.equal(bad.status, 400);
    assert.equal((JSON.parse(bad.body) as { error: string }).error, 'label filter must be name=value; got "nolabel"');
  });

  it('lists each node at most once per cache period, however many readers ask at once', async () => {
    const cached = directorFromFlags(['--reconcile.interval=0', '--log.level=warn', ...nodes.flatMap((n) => ['--node', n.url])], {}, { fleetCacheMs: 600_000 });
    const cachedUrl = `http://127.0.0.1:${(await cached.listen()).port}`;
    try {
      const before = await Promise.all(nodes.map(apiRequests));
      const readers = Array.from({ length: 30 }, (_, i) => httpRequest(`${cachedUrl}${['/api/v1/metrics', '/api/v1/fleet/groups', '/', '/groups?job=fleet_1'][i % 4] as string}`));
      const answers = await Promise.all(readers);
      assert.deepEqual(new Set(answers.map((a) => a.status)), new Set([200]));
      await Promise.all(Array.from({ length: 10 }, () => httpRequest(`${cachedUrl}/api/v1/metrics`)));
      const afterwards = await Promise.all(nodes.map(apiRequests));
      assert.deepEqual(afterwards.map((n, i) => n - (before[i] as number)), [1, 1, 1]);
    } finally {
      await cached.close();
    }
  });

  it('turns the page off with --web.enable-ui=false and keeps the API', async () => {
    const off = directorFromFlags(['--web.enable-ui=false', '--reconcile.interval=0', '--log.level=warn', '--node', (nodes[0] as Pushgateway).url]);
    const offUrl = `http://127.0.0.1:${(await off.listen()).port}`;
    try {
      assert.equal((await httpRequest(`${offUrl}/`)).status, 404);
      assert.equal((await httpRequest(`${offUrl}/groups`)).status, 404);
      assert.equal((await httpRequest(`${offUrl}/api/v1/metrics`)).status, 200);
    } finally {
      await off.close();
    }
  });

  it('shows a node that cannot be listed as such and still answers with the others\' groups', async () => {
    const dead = nodes[2] as Pushgateway;
    await dead.stop();
    const res = await httpRequest(`${url}/api/v1/metrics`);
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-pgw-director-unlisted'], dead.id);
    const { lines } = await decodeApi(res.body);
    const expected = await newestOfNodes(nodes.slice(0, 2));
    assert.deepEqual(new Set(lines), new Set([...expected.values()].map((entry) => entry.line)));
    const fleet = JSON.parse((await httpRequest(`${url}/api/v1/fleet/groups`)).body) as { data: { nodes: { id: string; reachable: boolean; error?: string }[] } };
    assert.deepEqual(fleet.data.nodes.find((n) => n.id === dead.id), fleet.data.nodes.find((n) => n.id === dead.id && !n.reachable && n.error?.endsWith('unreachable: ECONNREFUSED') === true));
    const page = await httpRequest(`${url}/`);
    assert.match(page.body, new RegExp(`data-node="${dead.id.replace(/\./g, '\\.')}"><td data-label="node">.*unreachable: ECONNREFUSED`));

    await Promise.all(nodes.map((node) => node.stop()));
    const none = await httpRequest(`${url}/api/v1/metrics`);
    assert.equal(none.status, 503);
    assert.match((JSON.parse(none.body) as { error: string }).error, /^no pushgateway could be listed: /);
  });
});
