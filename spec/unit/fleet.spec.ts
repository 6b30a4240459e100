import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { Group } from '../../lib/core/group';
import { type Node, parseNodeUrl } from '../../lib/core/node';
import { newestCopies, sortCopies } from '../../lib/core/fleet';
import { createFleet } from '../../lib/fleet';
import type { EachGroupOptions } from '../../lib/nodes/client';
import { Placement } from '../../lib/placement';
import { until } from '../support/wait';

const node = (url: string): Node => {
  const result = parseNodeUrl(url);
  assert.ok(result.ok);
  return result.node;
};
const A = node('http://127.0.0.1:9091');
const B = node('http://127.0.0.2:9091');
const D = node('http://127.0.0.3:9091');

/** The JSON text a node would send for a group (its element of `/api/v1/metrics`). */
const textOf = (group: Group): string => JSON.stringify({ labels: group.labels, last_push_successful: group.lastPushSuccessful, ...group.families });

/**
 * A NodeClient double whose listings the spec settles by hand, counting every call: settling visits the groups given
 * (then, for an Error, rejects, as a listing that breaks part-way does).
 */
function fakeClient() {
  const calls: string[] = [];
  const parsed: string[] = [];
  type Pending = { visit: (group: Group, text: string) => void; known: ((text: string) => boolean) | undefined; resolve: () => void; reject: (error: Error) => void };
  const pending = new Map<string, Pending[]>();
  return {
    calls,
    /** The texts of the groups visited (parsed), in order; those the fleet said it knew are not. */
    parsed,
    eachGroup(target: Node, visit: (group: Group, text: string) => void, options: EachGroupOptions = {}): Promise<void> {
      calls.push(target.id);
      return new Promise((resolve, reject) => pending.set(target.id, [...(pending.get(target.id) ?? []), { visit, known: options.known, resolve, reject }]));
    },
    settle(id: string, outcome: Group[] | Error, visitedFirst: Group[] = []): void {
      for (const p of pending.get(id) ?? []) {
        for (const group of outcome instanceof Error ? visitedFirst : outcome) {
          const text = textOf(group);
          if (p.known?.(text) === true) continue;
          parsed.push(text);
          p.visit(group, text);
        }
        if (outcome instanceof Error) p.reject(outcome);
        else p.resolve();
      }
      pending.delete(id);
    },
  };
}

const group = (job: string): Group => ({ labels: { job }, lastPushSuccessful: true, pushTime: 1, families: {} });

function setup(drain: Node[] = [], maxStaleMs = 0) {
  const placement = new Placement({ vnodes: 50, hashKey: 'grouping-key' });
  placement.update([A, B]);
  const client = fakeClient();
  let now = 1_000_000;
  const fleet = createFleet({ placement, client, drain, cacheMs: 5000, maxStaleMs, now: () => now });
  return { placement, client, fleet, advance: (ms: number) => (now += ms) };
}

describe('createFleet', () => {
  it('shares one listing per node between readers that arrive while it runs', async () => {
    const { client, fleet } = setup();
    const reads = Array.from({ length: 20 }, () => fleet.read());
    assert.deepEqual(client.calls.sort(), [A.id, B.id]);
    client.settle(A.id, [group('x')]);
    client.settle(B.id, [group('y'), group('z')]);
    const views = await Promise.all(reads);
    assert.ok(views.every((view) => view === views[0]));
    assert.deepEqual(views[0]?.nodes.map((line) => [line.node.id, line.groups]), [[A.id, 1], [B.id, 2]]);
  });

  it('reuses a listing for the cache period from its start, then lists again', async () => {
    const { client, fleet, advance } = setup();
    const first = fleet.read();
    client.settle(A.id, []);
    client.settle(B.id, []);
    const view = await first;
    advance(4999);
    assert.equal(await fleet.read(), view, 'the same view within the cache period');
    assert.equal(client.calls.length, 2);
    advance(1);
    const next = fleet.read();
    assert.equal(client.calls.length, 4);
    client.settle(A.id, [group('x')]);
    client.settle(B.id, []);
    assert.equal((await next).copies.length, 1);
  });

  it('shows a node that cannot be listed as such, keeps the others, and does not list it again before the period ends', async () => {
    const { client, fleet, advance } = setup();
    const read = fleet.read();
    // NodeClient's own one-line error, as it rejects a listing of a node it cannot reach.
    client.settle(A.id, new Error(`pushgateway "${A.id}" unreachable: ECONNREFUSED`));
    client.settle(B.id, [group('y')]);
    const view = await read;
    assert.deepEqual(view.nodes.map((l) => [l.node.id, l.reachable, l.error]), [
      [A.id, false, `pushgateway "${A.id}" unreachable: ECONNREFUSED`],
      [B.id, true, undefined],
    ]);
    assert.deepEqual(view.copies.map((c) => c.job), ['y']);
    advance(1000);
    await fleet.read();
    assert.equal(client.calls.length, 2);
  });

  it('keeps each group\'s JSON text as its node sent it, and nothing of a listing that broke part-way', async () => {
    const { client, fleet } = setup();
    const read = fleet.read();
    const sent: Group = { labels: { job: 'x', zone: 'ü' }, lastPushSuccessful: false, pushTime: 7, families: { v: { type: 'GAUGE', metrics: [{ value: '1' }] } } };
    client.settle(A.id, [sent]);
    client.settle(B.id, new Error('listing 127.0.0.2:9091: the listing ends early (truncated JSON)'), [group('y')]);
    const view = await read;
    assert.deepEqual(view.copies.map((c) => [c.node.id, c.group.labels, c.group.lastPushSuccessful, c.group.pushTime]), [[A.id, sent.labels, false, 7]]);
    assert.equal(Buffer.from(view.copies[0]?.group.json ?? []).toString('utf8'), textOf(sent));
    assert.deepEqual(view.nodes.map((l) => [l.node.id, l.reachable, l.groups]), [[A.id, true, 1], [B.id, false, 0]]);
  });

  it('takes over the groups whose text did not change since the last complete listing, unparsed, and parses the others', async () => {
    const { client, fleet, advance } = setup();
    const [x, y, z] = [group('x'), group('y'), group('z')];
    const first = fleet.read();
    client.settle(A.id, [x, y]);
    client.settle(B.id, [z]);
    const before = await first;
    advance(5000);
    const next = fleet.read();
    client.parsed.length = 0;
    const pushedAgain: Group = { ...y, pushTime: 2, families: { push_time_seconds: { type: 'GAUGE', metrics: [{ value: '2' }] } } };
    client.settle(A.id, [x, pushedAgain]);
    client.settle(B.id, new Error('listing 127.0.0.2:9091: HTTP 500'));
    const after = await next;
    assert.deepEqual(client.parsed, [textOf(pushedAgain)], 'only the changed group is parsed');
    const copyOf = (view: typeof after, job: string) => view.copies.find((c) => c.job === job)?.group;
    assert.equal(copyOf(after, 'x'), copyOf(before, 'x'), 'the unchanged group is the same object');
    assert.equal(copyOf(after, 'y')?.pushTime, 2);
    assert.equal(Buffer.from(copyOf(after, 'y')?.json ?? []).toString(), textOf(pushedAgain));
    assert.equal(copyOf(after, 'z'), undefined, 'the failed node holds nothing');
    // A failed listing keeps what the last complete one knew: B's group is taken over once B answers again.
    advance(5000);
    const third = fleet.read();
    client.parsed.length = 0;
    client.settle(A.id, [x, pushedAgain]);
    client.settle(B.id, [z]);
    const last = await third;
    assert.deepEqual(client.parsed, []);
    assert.equal(copyOf(last, 'z'), copyOf(before, 'z'));
    assert.deepEqual(last.copies.map((c) => [c.job, c.node.id, c.misplaced]), before.copies.map((c) => [c.job, c.node.id, c.misplaced]));
  });

  it('reads draining nodes after the ring members, and drops nodes that left', async () => {
    const { client, fleet, placement, advance } = setup([D]);
    const read = fleet.read();
    for (const id of [A.id, B.id, D.id]) client.settle(id, []);
    assert.deepEqual((await read).nodes.map((l) => [l.node.id, l.role]), [[A.id, 'member'], [B.id, 'member'], [D.id, 'draining']]);
    placement.update([A]);
    advance(1);
    const after = await fleet.read();
    assert.deepEqual(after.nodes.map((l) => l.node.id), [A.id, D.id]);
    assert.equal(client.calls.length, 3, 'a ring change alone lists nothing again');
  });

  it('serves the last view while a refresh runs, and never lists a node twice at once', async () => {
    const { client, fleet, advance } = setup([], 60_000);
    const first = fleet.read();
    client.settle(A.id, []);
    client.settle(B.id, []);
    const view = await first;
    advance(5000);
    assert.equal(await fleet.read(), view, 'the last view, at once');
    assert.equal(client.calls.length, 4, 'a refresh started behind it');
    advance(5000);
    assert.equal(await fleet.read(), view);
    assert.equal(client.calls.length, 4, 'the refresh still runs: no second listing');
    client.settle(A.id, [group('x')]);
    client.settle(B.id, []);
    await until(async () => (await fleet.read()) !== view, 'the refreshed view to be served');
    assert.equal((await fleet.read()).copies.length, 1);
    // The clock says the refresh's listings are due again (started 5 s ago): one more round at most.
    assert.equal(client.calls.length, 6);
  });

  it('makes readers wait for a fresh view once the last one is older than maxStaleMs', async () => {
    const { client, fleet, advance } = setup([], 60_000);
    const first = fleet.read();
    client.settle(A.id, []);
    client.settle(B.id, []);
    await first;
    advance(60_000);
    let settled = false;
    const waiting = fleet.read().then((v) => ((settled = true), v));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(settled, false);
    client.settle(A.id, [group('x')]);
    client.settle(B.id, []);
    assert.equal((await waiting).copies.length, 1);
  });

  it('orders copies and picks the newest of each group in slices exactly as the pure functions do', async () => {
    const { client, fleet } = setup();
    const read = fleet.read();
    // More groups than one slice, shuffled, with copies of one group on both nodes at different push times.
    const many = (salt: number): Group[] =>
      Array.from({ length: 4500 }, (_, i) => ({ ...group(`job-${(i * 7919 + salt) % 300}`), labels: { job: `job-${(i * 7919) % 300}`, i: String(i % 1700) }, pushTime: (i * salt) % 13 }));
    client.settle(A.id, many(3));
    client.settle(B.id, many(5));
    const view = await read;
    assert.equal(view.copies.length, 9000);
    assert.deepEqual(view.copies, sortCopies(view.copies));
    assert.deepEqual(view.newest, newestCopies(view.copies));
    assert.ok(view.newest.length < view.copies.length);
  });

  // Health checks take a node off the ring while it may still hold groups (a 401 on /-/healthy, a slow node): it
  // vanished from the page and the API, with its groups, and describeHealth's `down:` line could never show.
  it('reads the nodes health checks took off the ring last, as down, and their copies as misplaced', async () => {
    const placement = new Placement({ vnodes: 50, hashKey: 'grouping-key' });
    placement.update([A]);
    const client = fakeClient();
    const fleet = createFleet({ placement, client, drain: [D], down: () => [B, D, A], cacheMs: 5000 });
    const read = fleet.read();
    client.settle(A.id, []);
    client.settle(D.id, []);
    client.settle(B.id, [group('x')]);
    const view = await read;
    assert.deepEqual(view.nodes.map((l) => [l.node.id, l.role, l.groups, l.misplaced]), [[A.id, 'member', 0, 0], [D.id, 'draining', 0, 0], [B.id, 'down', 1, 1]]);
    assert.deepEqual(view.copies.map((c) => [c.node.id, c.owner?.id, c.misplaced]), [[B.id, A.id, true]]);
  });

  it('places copies against the current ring', async () => {
    const { client, fleet, placement } = setup();
    const read = fleet.read();
    client.settle(A.id, Array.from({ length: 50 }, (_, i) => group(`job-${i}`)));
    client.settle(B.id, []);
    const view = await read;
    const misplaced = view.copies.filter((c) => c.misplaced);
    assert.ok(misplaced.length > 0 && misplaced.length < 50, String(misplaced.length));
    assert.ok(misplaced.every((c) => c.owner?.id === B.id));
    placement.update([A]);
    assert.equal((await fleet.read()).copies.filter((c) => c.misplaced).length, 0);
  });
});
