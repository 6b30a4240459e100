import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { type HashFn, hashString } from '../../../lib/core/hash';
import { type Node, parseNodeUrl } from '../../../lib/core/node';
import { buildRing } from '../../../lib/core/ring';

function node(url: string): Node {
  const result = parseNodeUrl(url);
  assert.ok(result.ok, url);
  return result.node;
}

describe('buildRing with a table hash', () => {
  // vnode i of node "<letter>:1" hashes to base(letter) + i, with a=10, c=30, e=50; anything else reads as a number.
  const bases: Record<string, number> = { a: 10, c: 30, e: 50 };
  const table: HashFn = (bytes) => {
    const text = new TextDecoder().decode(bytes);
    const match = /^(\d+)([a-z]):1$/.exec(text);
    if (match) return (bases[match[2] as string] as number) + Number(match[1]);
    return Number(text);
  };
  const ring = buildRing([node('e:1'), node('a:1'), node('c:1')], { vnodes: 3, hash: table });
  //  point: 10  11  12  30  31  32  50  51  52
  //  owner: a   a   a   c   c   c   e   e   e
  const probes: [number, string][] = [
    [0, 'a:1'], // before the first point
    [10, 'a:1'], // at a point: strictly greater, so the next point (11)
    [12, 'c:1'], // at the last point of a: the next is 30
    [13, 'c:1'], // just past it
    [32, 'e:1'],
    [51, 'e:1'],
    [52, 'a:1'], // at the last point: wraps to the first
    [2 ** 32 - 1, 'a:1'], // the maximum: wraps
  ];
  for (const [hash, owner] of probes) {
    it(`gives hash ${hash} to ${owner}`, () => assert.equal(ring.lookup(hash)?.id, owner));
  }

  it('counts its points and sorts its members', () => {
    assert.equal(ring.points, 9);
    assert.deepEqual(
      ring.nodes.map((n) => n.id),
      ['a:1', 'c:1', 'e:1'],
    );
  });

  it('gives a shared point to the greater id', () => {
    const colliding: HashFn = () => 7;
    const r = buildRing([node('b:1'), node('a:1')], { vnodes: 2, hash: colliding });
    assert.equal(r.points, 1);
    assert.equal(r.lookup(0)?.id, 'b:1');
    assert.equal(r.lookup(9)?.id, 'b:1');
  });

  it('returns undefined on an empty ring', () => {
    assert.equal(buildRing([]).lookup(123), undefined);
  });

  it('splits the hash space into shares that add up to one', () => {
    const shares = ring.shares();
    assert.equal(shares.length, 3);
    assert.ok(Math.abs(shares.reduce((a, b) => a + b, 0) - 1) < 1e-9);
  });
});

describe('buildRing with murmur3 (dynamic-sharding placement)', () => {
  const two = buildRing([node('1.1.1.2:9091'), node('1.1.1.1:9091')]);
  const vectors: [string, number, string][] = [
    ['/metrics/job/job_a', 0x09cb13a9, '1.1.1.1:9091'],
    ['/metrics/job/job_b', 0xbb4eb084, '1.1.1.1:9091'],
    ['/metrics/job/job_c', 0xf229927a, '1.1.1.2:9091'],
    ['/metrics/job/job_a/tag_a/value_a', 0x165fe5d4, '1.1.1.1:9091'],
    ['/metrics/job/job_a/tag_a/value_b', 0x99f945ae, '1.1.1.2:9091'],
  ];
  for (const [path, hash, owner] of vectors) {
    it(`sends ${path} to ${owner}`, () => {
      assert.equal(hashString(path), hash);
      assert.equal(two.lookup(hash)?.id, owner);
    });
  }

  const three = buildRing(['10.0.0.3:9091', '10.0.0.1:9091', '10.0.0.2:9091'].map(node));
  const owners3: [string, string][] = [
    ['/metrics/job/job_a', '10.0.0.1:9091'],
    ['/metrics/job/job_b', '10.0.0.2:9091'],
    ['/metrics/job/job_c', '10.0.0.2:9091'],
  ];
  for (const [path, owner] of owners3) {
    it(`sends ${path} to ${owner} among three nodes`, () => assert.equal(three.lookup(hashString(path))?.id, owner));
  }

  it('hashes known values like murmur3 Sum32', () => {
    assert.equal(hashString('hello'), 0x248bfa47);
    assert.equal(hashString('The quick brown fox jumps over the lazy dog'), 0x2e4ff723);
    assert.equal(hashString('01.1.1.1:9091'), 0x804f3877);
  });

  const keys = Array.from({ length: 30000 }, (_, i) => hashString(`/metrics/job/job_${i}`));

  it('spreads 30,000 paths over three nodes as the Go ring does', () => {
    const counts = new Map<string, number>();
    for (const k of keys) {
      const id = three.lookup(k)?.id ?? '';
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    assert.deepEqual(Object.fromEntries(counts), {
      '10.0.0.1:9091': 10292,
      '10.0.0.2:9091': 10625,
      '10.0.0.3:9091': 9083,
    });
  });

  it('moves only the removed node keys when a node leaves', () => {
    const smaller = buildRing(['10.0.0.1:9091', '10.0.0.2:9091'].map(node));
    let moved = 0;
    for (const k of keys) {
      const before = three.lookup(k)?.id;
      const after = smaller.lookup(k)?.id;
      if (before !== after) {
        moved++;
        assert.equal(before, '10.0.0.3:9091');
      }
    }
    assert.equal(moved, 9083);
  });

  it('moves keys only onto a node that joins', () => {
    const bigger = buildRing(['10.0.0.1:9091', '10.0.0.2:9091', '10.0.0.3:9091', '10.0.0.4:9091'].map(node));
    let moved = 0;
    for (const k of keys) {
      const before = three.lookup(k)?.id;
      const after = bigger.lookup(k)?.id;
      if (before !== after) {
        moved++;
        assert.equal(after, '10.0.0.4:9091');
      }
    }
    assert.ok(moved > 5000 && moved < 10000, `moved ${moved}`);
  });

  it('does not depend on the order nodes are listed in', () => {
    const ids = Array.from({ length: 12 }, (_, i) => `10.1.0.${i}:9091`);
    const forward = buildRing(ids.map(node));
    const backward = buildRing([...ids].reverse().map(node));
    const shuffled = buildRing([...ids].sort(() => Math.random() - 0.5).map(node));
    for (let i = 0; i < 10000; i++) {
      const h = hashString(`key-${i}`);
      const owner = forward.lookup(h)?.id;
      assert.equal(backward.lookup(h)?.id, owner);
      assert.equal(shuffled.lookup(h)?.id, owner);
    }
  });

  it('drops duplicate node ids', () => {
    const r = buildRing([node('http://127.0.0.11:9091'), node('127.0.0.11:9091')], { vnodes: 10 });
    assert.equal(r.nodes.length, 1);
    assert.equal(r.points, 10);
  });

  it('refuses a vnode count that is not a positive integer', () => {
    assert.throws(() => buildRing([], { vnodes: 0 }), RangeError);
    assert.throws(() => buildRing([], { vnodes: 1.5 }), RangeError);
  });
});

describe('ring.lookupExcluding: the owner once some members have left', () => {
  // The same table as above: vnode i of node "<letter>:1" hashes to base(letter) + i, with a=10, c=30, e=50.
  const bases: Record<string, number> = { a: 10, c: 30, e: 50 };
  const table: HashFn = (bytes) => {
    const match = /^(\d+)([a-z]):1$/.exec(new TextDecoder().decode(bytes));
    return match ? (bases[match[2] as string] as number) + Number(match[1]) : 0;
  };
  const ring = buildRing([node('e:1'), node('a:1'), node('c:1')], { vnodes: 3, hash: table });
  //  point: 10  11  12  30  31  32  50  51  52
  //  owner: a   a   a   c   c   c   e   e   e
  const probes: [number, string[], string | undefined][] = [
    [0, [], 'a:1'], // nothing excluded: the owner, as lookup answers
    [0, ['a:1'], 'c:1'], // the owner left: the next distinct node clockwise
    [11, ['a:1'], 'c:1'], // inside a's run of points, past all of them
    [12, ['c:1'], 'e:1'], // owner c left: its three points are skipped
    [13, ['c:1', 'e:1'], 'a:1'], // two left: wraps around to the first point
    [32, ['a:1'], 'e:1'], // an excluded node that is not the owner changes nothing
    [52, ['a:1'], 'c:1'], // at the last point: wraps, skips a
    [2 ** 32 - 1, ['a:1', 'c:1'], 'e:1'], // the maximum: wraps, skips a and c
    [31, ['a:1', 'c:1', 'e:1'], undefined], // everyone left
  ];
  for (const [hash, excluded, owner] of probes) {
    it(`gives hash ${hash} to ${owner ?? 'nobody'} without ${excluded.join(', ') || 'anyone'}`, () => {
      assert.equal(ring.lookupExcluding(hash, new Set(excluded))?.id, owner);
    });
  }

  it('gives a point two vnodes share to the other node once the winner left', () => {
    const colliding: HashFn = () => 7;
    const r = buildRing([node('b:1'), node('a:1')], { vnodes: 2, hash: colliding });
    assert.equal(r.lookupExcluding(0, new Set(['b:1']))?.id, 'a:1');
    assert.equal(r.lookupExcluding(9, new Set(['b:1']))?.id, 'a:1');
    assert.equal(r.lookupExcluding(9, new Set(['a:1', 'b:1'])), undefined);
  });

  it('returns undefined on an empty ring', () => {
    assert.equal(buildRing([]).lookupExcluding(123, new Set()), undefined);
  });

  it('answers as a ring rebuilt without the owner, on 10,000 murmur3 keys over 10 nodes', () => {
    const ids = Array.from({ length: 10 }, (_, i) => `10.2.0.${i}:9091`);
    const full = buildRing(ids.map(node));
    const without = new Map(ids.map((id) => [id, buildRing(ids.filter((other) => other !== id).map(node))]));
    for (let i = 0; i < 10000; i++) {
      const h = hashString(`/metrics/job/job_${i}`);
      const owner = full.lookup(h)?.id as string;
      const successor = full.lookupExcluding(h, new Set([owner]))?.id;
      assert.notEqual(successor, owner);
      assert.equal(successor, without.get(owner)?.lookup(h)?.id, `key ${i}`);
    }
  });
});
