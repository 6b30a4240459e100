import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { describeLookup, describeRing, pushPathOf } from '../../lib/inspect';
import { Placement } from '../../lib/placement';

const placement = new Placement({ vnodes: 50, hashKey: 'grouping-key' });
placement.update([
  { id: '127.0.0.1:9091', url: 'http://127.0.0.1:9091' },
  { id: '127.0.0.2:9091', url: 'http://127.0.0.2:9091' },
]);

describe('pushPathOf', () => {
  const cases: [string, string, string][] = [
    ['keeps a path as it is', '/metrics/job/a/x/1', '/metrics/job/a/x/1'],
    ['takes the path of a whole URL', 'http://director:9292/metrics/job/a/x/1', '/metrics/job/a/x/1'],
    ['takes the path of an https URL with credentials', 'https://u:p@director:9292/metrics/job/a', '/metrics/job/a'],
    ['drops the query string', 'http://director:9292/metrics/job/a?x=1', '/metrics/job/a'],
    ['keeps escapes and dot segments byte for byte', 'http://d/metrics/job/a/x/%2E%2E', '/metrics/job/a/x/%2E%2E'],
  ];
  for (const [name, input, path] of cases) it(name, () => assert.equal(pushPathOf(input), path));
});

describe('describeLookup', () => {
  it('places a URL exactly where its path goes', () => {
    const byPath = describeLookup(placement, '/metrics/job/a/x/1');
    const byUrl = describeLookup(placement, 'http://director:9292/metrics/job/a/x/1');
    assert.ok(byPath.ok && byUrl.ok);
    assert.deepEqual(byUrl.view.node, byPath.view.node);
    assert.equal(byUrl.view.hash, byPath.view.hash);
    assert.equal(byUrl.view.path, 'http://director:9292/metrics/job/a/x/1');
    assert.deepEqual(byUrl.view.labels, { job: 'a', x: '1' });
  });

  it('says a path outside /metrics/job/ is not a push path', () => {
    assert.deepEqual(describeLookup(placement, 'metrics/job/a'), {
      ok: false,
      status: 400,
      message: 'not a push path: "metrics/job/a" (push paths start with /metrics/job/)',
    });
  });

  it('answers a path the Pushgateway would refuse with its 400 message', () => {
    assert.deepEqual(describeLookup(placement, 'http://d/metrics/job/a/x'), {
      ok: false,
      status: 400,
      message: 'odd number of components in label string "/x"',
    });
  });
});

describe('describeRing', () => {
  it('lists the members with shares that add up to 1, and no pending reason once known', () => {
    const view = describeRing(placement);
    assert.deepEqual(view.members.map((member) => member.id), ['127.0.0.1:9091', '127.0.0.2:9091']);
    assert.ok(Math.abs(view.members.reduce((sum, member) => sum + member.share, 0) - 1) < 1e-9);
    assert.equal(view.pending, undefined);
    assert.equal(describeRing(new Placement({ vnodes: 5, hashKey: 'path', pendingReason: 'waiting for consul' })).pending, 'waiting for consul');
  });
});
