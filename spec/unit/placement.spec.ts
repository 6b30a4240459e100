import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { buildRing } from '../../lib/core/ring';
import { Placement } from '../../lib/placement';

describe('Placement', () => {
  it('lets no one but update replace its ring, pending reason or change time', () => {
    const placement = new Placement({ vnodes: 5, hashKey: 'grouping-key', pendingReason: 'waiting for consul' });
    const writable = placement as unknown as Record<string, unknown>;
    assert.throws(() => (writable['ring'] = buildRing([{ id: 'x:1', url: 'http://x:1' }], { vnodes: 5 })), TypeError);
    assert.throws(() => (writable['pendingReason'] = undefined), TypeError);
    assert.throws(() => (writable['changedAt'] = new Date(0)), TypeError);
    assert.equal(placement.ring.points, 0);
    assert.equal(placement.pendingReason, 'waiting for consul');
    placement.update([{ id: '127.0.0.1:9091', url: 'http://127.0.0.1:9091' }]);
    assert.equal(placement.ring.nodes.length, 1);
    assert.equal(placement.pendingReason, undefined);
  });

  it('emits one change for the first membership, even an empty one, and none for the same members', () => {
    const placement = new Placement({ vnodes: 5, hashKey: 'grouping-key', pendingReason: 'waiting for consul' });
    let changes = 0;
    placement.on('change', () => changes++);
    placement.update([]);
    assert.equal(changes, 1);
    placement.update([]);
    assert.equal(changes, 1);
  });
});
