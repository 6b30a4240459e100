import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Registry } from 'prom-client';

import type { Node } from '../../lib/core/node';
import { createFanOut } from '../../lib/fanout';
import { createLogger } from '../../lib/logger';
import type { NodeClient } from '../../lib/nodes/client';
import { Placement } from '../../lib/placement';
import { createMemoryTombstones } from '../../lib/tombstones/memory';
import { LogSink } from '../support/director';

const node = (i: number): Node => ({ id: `127.0.0.${i}:9091`, url: `http://127.0.0.${i}:9091` });

/** A client whose deletes wait until released, so the spec can count how many are in flight. */
function gatedClient() {
  const deletes: { node: string; labels: Readonly<Record<string, string>> }[] = [];
  const gates: (() => void)[] = [];
  let inFlight = 0;
  let most = 0;
  const failOn = new Set<string>();
  const client = {
    deleteGroup: async (n: Node, labels: Readonly<Record<string, string>>): Promise<void> => {
      inFlight++;
      most = Math.max(most, inFlight);
      await new Promise<void>((resolve) => gates.push(resolve));
      inFlight--;
      deletes.push({ node: n.id, labels });
      if (failOn.has(n.id)) throw new Error('connection refused');
    },
  } as unknown as NodeClient;
  return { client, deletes, gates, failOn, most: () => most, inFlight: () => inFlight };
}

async function drain(gates: (() => void)[], until: () => boolean): Promise<void> {
  while (!until()) {
    gates.shift()?.();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe('the fan-out DELETE', () => {
  it('deletes on every ring member but the owner and on every draining node, and records the tombstone', async () => {
    const placement = new Placement({ vnodes: 10, hashKey: 'grouping-key' });
    placement.update([node(1), node(2), node(3)]);
    const gated = gatedClient();
    const tombstones = createMemoryTombstones({ ttlSeconds: 60 });
    const registry = new Registry();
    const fanOut = createFanOut({ placement, drain: [node(4), node(3)], client: gated.client, tombstones, logger: createLogger('silent'), registry, now: () => 1000 });
    const done = fanOut.deleted('/metrics/job@base64/ajQ/instance/x?ignored=1', node(1));
    await drain(gated.gates, () => gated.deletes.length === 3);
    await done;
    assert.deepEqual(gated.deletes.map((d) => d.node).sort(), [node(2).id, node(3).id, node(4).id]);
    assert.deepEqual(gated.deletes[0]?.labels, { job: 'j4', instance: 'x' });
    assert.deepEqual([...(await tombstones.read(1000)).values()], [1000]);
    assert.match(await registry.metrics(), /pgw_director_fanout_deletes_total\{node="127\.0\.0\.4:9091",outcome="deleted"\} 1/);
  });

  it('keeps at most `concurrency` deletes in flight per node, drops past `maxQueued`, and counts failures', async () => {
    const placement = new Placement({ vnodes: 10, hashKey: 'grouping-key' });
    placement.update([1, 2].map(node));
    const gated = gatedClient();
    gated.failOn.add(node(2).id);
    const registry = new Registry();
    const sink = new LogSink();
    const fanOut = createFanOut({ placement, drain: [], client: gated.client, tombstones: undefined, logger: createLogger('info', sink), registry, concurrency: 2, maxQueued: 5 });
    // 12 DELETEs, one delete each on node 2: 2 run, 5 wait, 5 are dropped.
    const all = Array.from({ length: 12 }, (_, i) => fanOut.deleted(`/metrics/job/j${i}`, node(1)));
    await drain(gated.gates, () => gated.deletes.length === 7);
    await Promise.all(all);
    await fanOut.idle();
    assert.equal(gated.most(), 2);
    const metrics = await registry.metrics();
    const count = (outcome: string): number =>
      [...metrics.matchAll(new RegExp(`outcome="${outcome}"\\} (\\d+)`, 'g'))].reduce((sum, m) => sum + Number(m[1]), 0);
    assert.deepEqual([count('deleted') + count('failed'), count('dropped')], [7, 5]);
    assert.equal(count('failed'), 7);
    assert.ok(sink.lines.some((line) => line['msg'] === 'cannot delete the group on this node: it keeps its copy'));
  });

  it('fans nothing out for a path that is not a group', async () => {
    const placement = new Placement({ vnodes: 10, hashKey: 'grouping-key' });
    placement.update([node(1), node(2)]);
    const gated = gatedClient();
    const fanOut = createFanOut({ placement, drain: [], client: gated.client, tombstones: undefined, logger: createLogger('silent'), registry: new Registry() });
    await fanOut.deleted('/metrics/job/a/odd', node(1));
    assert.equal(gated.inFlight(), 0);
    assert.deepEqual(gated.deletes, []);
  });
});

describe('the fan-out DELETE with a hung node', () => {
  it('holds up only the deletes meant for that node', async () => {
    const placement = new Placement({ vnodes: 10, hashKey: 'grouping-key' });
    placement.update([1, 2, 3].map(node));
    const done: string[] = [];
    const client = {
      deleteGroup: (n: Node): Promise<void> => {
        if (n.id === node(2).id) return new Promise<void>(() => undefined);
        done.push(n.id);
        return Promise.resolve();
      },
    } as unknown as NodeClient;
    const fanOut = createFanOut({ placement, drain: [], client, tombstones: undefined, logger: createLogger('silent'), registry: new Registry(), concurrency: 1 });
    for (let i = 0; i < 5; i++) void fanOut.deleted(`/metrics/job/j${i}`, node(1));
    for (let turn = 0; turn < 1000 && done.length < 5; turn++) await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(done, Array.from({ length: 5 }, () => node(3).id));
  });

  it('drops what waits at close and waits for what is in flight', async () => {
    const placement = new Placement({ vnodes: 10, hashKey: 'grouping-key' });
    placement.update([1, 2].map(node));
    const gated = gatedClient();
    const registry = new Registry();
    const fanOut = createFanOut({ placement, drain: [], client: gated.client, tombstones: undefined, logger: createLogger('silent'), registry, concurrency: 1 });
    const all = Array.from({ length: 3 }, (_, i) => fanOut.deleted(`/metrics/job/j${i}`, node(1)));
    while (gated.inFlight() < 1) await new Promise((resolve) => setImmediate(resolve));
    const closing = fanOut.close();
    gated.gates.shift()?.();
    await closing;
    await Promise.all(all);
    await fanOut.deleted('/metrics/job/late', node(1));
    const metrics = await registry.metrics();
    assert.match(metrics, /outcome="deleted"\} 1/);
    assert.match(metrics, /outcome="dropped"\} 3/);
  });
});
