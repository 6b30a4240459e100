import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { type FleetCopy, type FleetGroup, type Listing, copiesOf, filterCopies, newestCopies, parseFleetQuery, sortCopies, summarise } from '../../../lib/core/fleet';
import { groupIdentity } from '../../../lib/core/group';
import type { Node } from '../../../lib/core/node';

const A: Node = { id: 'a:9091', url: 'http://a:9091' };
const B: Node = { id: 'b:9091', url: 'http://b:9091' };
const group = (labels: Record<string, string>, pushTime: number): FleetGroup => ({ labels, identity: groupIdentity(labels), lastPushSuccessful: true, pushTime, json: new Uint8Array() });
const listing = (node: Node, groups: FleetGroup[] | undefined): Listing => ({
  node,
  role: 'member',
  listedAt: 0,
  groups,
  error: groups === undefined ? 'unreachable: ECONNREFUSED' : undefined,
});
// Owners by job: jobs starting with "a" belong to A, the others to B.
const ownerOf = (labels: Readonly<Record<string, string>>): Node => ((labels['job'] ?? '').startsWith('a') ? A : B);

describe('copiesOf and summarise', () => {
  it('places each copy against its owner and counts misplaced copies per node; an unlisted node holds none', () => {
    const copies = [
      ...copiesOf(listing(A, [group({ job: 'a1' }, 1), group({ job: 'b1' }, 1)]), ownerOf),
      ...copiesOf(listing(B, undefined), ownerOf),
    ];
    assert.deepEqual(copies.map((c) => [c.job, c.node.id, c.owner?.id, c.misplaced]), [
      ['a1', 'a:9091', 'a:9091', false],
      ['b1', 'a:9091', 'b:9091', true],
    ]);
    const lines = summarise([listing(A, []), listing(B, undefined)], copies, (node) => (node === A ? 0.6 : 0.4));
    assert.deepEqual(lines.map((l) => [l.node.id, l.reachable, l.groups, l.misplaced, l.share, l.error]), [
      ['a:9091', true, 0, 1, 0.6, undefined],
      ['b:9091', false, 0, 0, 0.4, 'unreachable: ECONNREFUSED'],
    ]);
  });

  it('has no owner and nothing misplaced when owners are undefined (--hash.key=path)', () => {
    const [copy] = copiesOf(listing(A, [group({ job: 'b1' }, 1)]), () => undefined);
    assert.equal(copy?.owner, undefined);
    assert.equal(copy?.misplaced, false);
  });
});

describe('newestCopies', () => {
  const copies = (a: FleetGroup[], b: FleetGroup[]): FleetCopy[] => sortCopies([...copiesOf(listing(A, a), ownerOf), ...copiesOf(listing(B, b), ownerOf)]);
  const pick = (list: FleetCopy[]): string[] => newestCopies(list).map((c) => `${c.job}@${c.node.id}`);

  it('keeps the newest copy of each group, wherever it is', () => {
    assert.deepEqual(pick(copies([group({ job: 'a1', x: '1' }, 10), group({ job: 'b1' }, 30)], [group({ x: '1', job: 'a1' }, 20), group({ job: 'b1' }, 5)])), [
      'a1@b:9091',
      'b1@a:9091',
    ]);
  });
  it('prefers the owner\'s copy on a tie', () => {
    assert.deepEqual(pick(copies([group({ job: 'b1' }, 7)], [group({ job: 'b1' }, 7)])), ['b1@b:9091']);
    assert.deepEqual(pick(copies([group({ job: 'a1' }, 7)], [group({ job: 'a1' }, 7)])), ['a1@a:9091']);
  });
  it('tells groups apart by their whole label set', () => {
    assert.deepEqual(pick(copies([group({ job: 'a1', i: '1' }, 1)], [group({ job: 'a1', i: '2' }, 1), group({ job: 'a1' }, 1)])).length, 3);
  });
});

describe('filterCopies', () => {
  const now = 100_000_000;
  const all = sortCopies([
    ...copiesOf(listing(A, [group({ job: 'a1', env: 'prod' }, now / 1000 - 10), group({ job: 'b1', env: 'dev' }, now / 1000 - 7200)]), ownerOf),
    ...copiesOf(listing(B, [group({ job: 'b1', env: 'dev' }, now / 1000 - 5), group({ job: 'b2' }, 0)]), ownerOf),
  ]);
  const cases: { name: string; filter: Parameters<typeof filterCopies>[1]; expected: string[] }[] = [
    { name: 'selects everything with no filter', filter: {}, expected: ['a1@a:9091', 'b1@a:9091', 'b1@b:9091', 'b2@b:9091'] },
    { name: 'selects by job', filter: { job: 'b1' }, expected: ['b1@a:9091', 'b1@b:9091'] },
    { name: 'selects by label value, exactly', filter: { labels: { env: 'dev' } }, expected: ['b1@a:9091', 'b1@b:9091'] },
    { name: 'selects nothing for a label no group has', filter: { labels: { env: 'de' } }, expected: [] },
    { name: 'selects by node', filter: { node: 'b:9091' }, expected: ['b1@b:9091', 'b2@b:9091'] },
    { name: 'selects misplaced copies', filter: { misplaced: true }, expected: ['b1@a:9091'] },
    {
      name: 'selects stale groups: older than the limit, or never pushed successfully',
      filter: { stale: { nowMs: now, staleAfterMs: 3_600_000 } },
      expected: ['b1@a:9091', 'b2@b:9091'],
    },
    { name: 'combines filters', filter: { job: 'b1', misplaced: true, labels: { env: 'dev' } }, expected: ['b1@a:9091'] },
  ];
  for (const c of cases) {
    it(c.name, () => assert.deepEqual(filterCopies(all, c.filter).map((x) => `${x.job}@${x.node.id}`), c.expected));
  }
});

describe('parseFleetQuery', () => {
  const ok: { name: string; raw: Record<string, unknown>; expected: Partial<ReturnType<typeof parse>> }[] = [
    { name: 'defaults to the first page', raw: {}, expected: { offset: 0, limit: 50, labels: {}, misplaced: false, stale: false } },
    { name: 'ignores empty parameters, as a GET form sends them', raw: { job: '', node: '', label: '' }, expected: { job: undefined, node: undefined, labels: {} } },
    { name: 'reads repeated label filters', raw: { label: ['a=1', 'b=x=y'] }, expected: { labels: { a: '1', b: 'x=y' } } },
    { name: 'reads an empty label value', raw: { label: 'a=' }, expected: { labels: { a: '' } } },
    { name: 'turns a page into an offset', raw: { page: '3', limit: '20' }, expected: { offset: 40, limit: 20 } },
    { name: 'reads checkboxes', raw: { misplaced: '1', stale: 'on' }, expected: { misplaced: true, stale: true } },
  ];
  function parse(raw: Record<string, unknown>) {
    const result = parseFleetQuery(raw, 50);
    assert.ok(result.ok, JSON.stringify(result));
    return result.query;
  }
  for (const c of ok) {
    it(c.name, () => {
      const query = parse(c.raw);
      for (const [key, value] of Object.entries(c.expected)) assert.deepEqual(query[key as keyof typeof query], value, key);
    });
  }
  // A filter on __proto__ was assigned to a plain object, which drops it: the answer listed every group instead of none.
  it('keeps a filter on a label named __proto__, which then matches nothing', () => {
    const query = parse({ label: ['__proto__=x', 'job=a'] });
    assert.deepEqual(Object.entries(query.labels), [['__proto__', 'x'], ['job', 'a']]);
    const copies = copiesOf(listing(A, [group({ job: 'a' }, 1)]), () => A);
    assert.equal(filterCopies(copies, { labels: query.labels }).length, 0);
    assert.equal(filterCopies(copies, { labels: { job: 'a' } }).length, 1);
  });
  const bad: { raw: Record<string, unknown>; message: string }[] = [
    { raw: { label: 'env' }, message: 'label filter must be name=value; got "env"' },
    { raw: { label: '=x' }, message: 'label filter must be name=value; got "=x"' },
    { raw: { job: ['a', 'b'] }, message: 'query parameter "job" must be given once' },
    { raw: { job: { x: '1' } }, message: 'query parameter "job" must be given once' },
    { raw: { limit: '0' }, message: 'query parameter "limit" must be an integer from 1 to 10000; got "0"' },
    { raw: { limit: '1e3' }, message: 'query parameter "limit" must be an integer from 1 to 10000; got "1e3"' },
    { raw: { offset: '-1' }, message: 'query parameter "offset" must be an integer from 0 to 1000000000; got "-1"' },
    { raw: { page: '0' }, message: 'query parameter "page" must be an integer from 1 to 1000000000; got "0"' },
    { raw: { page: '2', offset: '5' }, message: 'give either "offset" or "page", not both' },
    { raw: { stale: 'maybe' }, message: 'query parameter "stale" must be true or false; got "maybe"' },
  ];
  for (const c of bad) {
    it(`refuses ${JSON.stringify(c.raw)}`, () => assert.deepEqual(parseFleetQuery(c.raw, 50), { ok: false, message: c.message }));
  }
});
