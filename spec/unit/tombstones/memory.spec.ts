import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { groupIdentity } from '../../../lib/core/group';
import { parseTombstone, tombstoneKey } from '../../../lib/tombstones/consul';
import { createMemoryTombstones } from '../../../lib/tombstones/memory';

describe('tombstones in memory', () => {
  it('keeps the later deletion time, forgets after the TTL, and the oldest first past its bound', async () => {
    const store = createMemoryTombstones({ ttlSeconds: 100, max: 2 });
    await store.record({ job: 'a' }, 1000);
    await store.record({ job: 'a' }, 900);
    assert.deepEqual([...(await store.read(1000))], [[groupIdentity({ job: 'a' }), 1000]]);
    await store.record({ job: 'b' }, 1010);
    await store.record({ job: 'c' }, 1020);
    assert.deepEqual([...(await store.read(1050)).keys()], [groupIdentity({ job: 'b' }), groupIdentity({ job: 'c' })]);
    assert.deepEqual([...(await store.read(1115)).keys()], [groupIdentity({ job: 'c' })]);
  });
});

describe('tombstone keys and values in consul', () => {
  it('names a group by a hash of its identity under the prefix, whatever order its labels come in', () => {
    assert.equal(tombstoneKey('p/', { job: 'a', x: '1' }), tombstoneKey('p/', { x: '1', job: 'a' }));
    assert.match(tombstoneKey('p/', { job: 'a' }), /^p\/tombstones\/[0-9a-f]{64}$/);
  });

  const values: [string, string | null, ReturnType<typeof parseTombstone>][] = [
    ['reads what the store writes', '{"labels":{"job":"a"},"deleted_at":12.5}', { labels: { job: 'a' }, deletedAt: 12.5 }],
    ['refuses an empty key', null, undefined],
    ['refuses text that is not JSON', 'tombstone', undefined],
    ['refuses labels that are not strings', '{"labels":{"job":1},"deleted_at":1}', undefined],
    ['refuses a missing time', '{"labels":{"job":"a"}}', undefined],
    ['refuses labels that are a list', '{"labels":["a"],"deleted_at":1}', undefined],
  ];
  for (const [name, value, expected] of values) it(name, () => assert.deepEqual(parseTombstone(value), expected));
});
