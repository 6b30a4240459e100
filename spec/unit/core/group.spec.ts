import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { parseGroupingKey, toDisplayLabels } from '../../../lib/core/grouping-key';
import { type Group, groupPath, newerFamilies, toTextFormat } from '../../../lib/core/group';

describe('groupPath', () => {
  const cases: Record<string, string>[] = [
    { job: 'backup', instance: 'db1' },
    { job: 'a/b', path: '/var/lib', empty: '' },
    { job: 'Zürich', city: 'Π+ space', z: '=' },
  ];
  for (const labels of cases) {
    it(`round-trips ${JSON.stringify(labels)} through @base64`, () => {
      const parsed = parseGroupingKey(groupPath(labels));
      assert.ok(parsed.ok, groupPath(labels));
      assert.deepEqual(toDisplayLabels(parsed.key), labels);
    });
  }
});

describe('toTextFormat', () => {
  it('renders counters, gauges, summaries and histograms, without the families the Pushgateway adds', () => {
    const text = toTextFormat({
      jobs_total: { type: 'COUNTER', help: 'Jobs run.', metrics: [{ labels: { job: 'j', instance: '' }, value: '3' }] },
      temp: { type: 'GAUGE', metrics: [{ labels: { job: 'j', room: 'a "b"\n' }, value: '-1.5' }] },
      latency: { type: 'SUMMARY', metrics: [{ labels: { job: 'j' }, quantiles: { '0.5': '1', '0.99': '2' }, count: '10', sum: '12' }] },
      size: { type: 'HISTOGRAM', metrics: [{ labels: { job: 'j' }, buckets: { '1': '2', '10': '5' }, count: '6', sum: '30' }] },
      push_time_seconds: { type: 'GAUGE', metrics: [{ labels: { job: 'j' }, value: '1.7e9' }] },
      push_failure_time_seconds: { type: 'GAUGE', metrics: [{ labels: { job: 'j' }, value: '0' }] },
    });
    assert.equal(
      text,
      [
        '# HELP jobs_total Jobs run.',
        '# TYPE jobs_total counter',
        'jobs_total{job="j",instance=""} 3',
        '# TYPE temp gauge',
        'temp{job="j",room="a \\"b\\"\\n"} -1.5',
        '# TYPE latency summary',
        'latency{job="j",quantile="0.5"} 1',
        'latency{job="j",quantile="0.99"} 2',
        'latency_sum{job="j"} 12',
        'latency_count{job="j"} 10',
        '# TYPE size histogram',
        'size_bucket{job="j",le="1"} 2',
        'size_bucket{job="j",le="10"} 5',
        'size_bucket{job="j",le="+Inf"} 6',
        'size_sum{job="j"} 30',
        'size_count{job="j"} 6',
        '',
      ].join('\n'),
    );
  });

  it('refuses native histograms, which the text format cannot carry', () => {
    assert.equal(toTextFormat({ h: { type: 'HISTOGRAM', metrics: [{ labels: {}, buckets: [] as unknown as Record<string, string>, count: '1', sum: '1' }] } }), undefined);
  });
});

describe('newerFamilies', () => {
  const group = (families: Record<string, string | undefined>): Group => ({
    labels: { job: 'j' },
    lastPushSuccessful: true,
    pushTime: 0,
    families: Object.fromEntries(Object.entries(families).map(([name, at]) => [name, at === undefined ? {} : { time_stamp: at }])),
  });
  it('carries each family the target lacks or holds older, a tie included, never the Pushgateway\'s own', () => {
    const from = group({
      missing: '2024-01-01T00:00:00Z',
      newer: '2024-01-01T00:00:02.000000001Z',
      older: '2024-01-01T00:00:00Z',
      tie: '2024-01-01T01:00:01+01:00',
      undated: undefined,
      push_time_seconds: '2030-01-01T00:00:00Z',
    });
    const onto = group({ newer: '2024-01-01T00:00:01Z', older: '2024-01-01T00:00:01Z', tie: '2024-01-01T00:00:01Z', undated: '2024-01-01T00:00:00Z' });
    assert.deepEqual(Object.keys(newerFamilies(from, onto)).sort(), ['missing', 'newer', 'tie']);
  });
});
