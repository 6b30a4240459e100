import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Histogram, Registry } from 'prom-client';

import { createMetrics } from '../../lib/metrics';
import { Placement } from '../../lib/placement';

describe('pgw_director_upstream_duration_seconds', () => {
  it('renders exactly as a prom-client histogram given the same observations', async () => {
    const metrics = createMetrics(new Placement({ vnodes: 10, hashKey: 'grouping-key' }));
    const registry = new Registry();
    const reference = new Histogram({
      name: 'pgw_director_upstream_duration_seconds',
      help: 'Time from forwarding a proxied push to the node\'s response headers.',
      labelNames: ['node'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
    // Bucket bounds themselves, values between them, past the last bound, and two nodes.
    const observations: [string, number][] = [
      ['a:9091', 0.001],
      ['a:9091', 0.0009],
      ['a:9091', 0.0031],
      ['b:9091', 10],
      ['b:9091', 42],
      ['a:9091', 0.25],
    ];
    for (const [node, seconds] of observations) {
      metrics.observeUpstream(node, seconds);
      reference.observe({ node }, seconds);
    }
    const name = 'pgw_director_upstream_duration_seconds';
    assert.equal(await metrics.registry.getSingleMetricAsString(name), await registry.getSingleMetricAsString(name));
  });
});

describe('pgw_director_discovery_last_success_timestamp_seconds', () => {
  const read = async (metrics: ReturnType<typeof createMetrics>): Promise<number> => {
    const text = await metrics.registry.getSingleMetricAsString('pgw_director_discovery_last_success_timestamp_seconds');
    return Number(/^pgw_director_discovery_last_success_timestamp_seconds (\S+)$/m.exec(text)?.[1]);
  };

  it('reads the scrape time for static nodes, which are never out of date', async () => {
    const metrics = createMetrics(new Placement({ vnodes: 10, hashKey: 'grouping-key' }));
    metrics.discovery.setStatic();
    const before = Date.now() / 1000;
    const value = await read(metrics);
    assert.ok(value >= before && value <= Date.now() / 1000 + 1, `${value} is not the scrape time`);
    assert.match(await metrics.registry.getSingleMetricAsString('pgw_director_discovery_up'), /^pgw_director_discovery_up 1$/m);
  });

  it('keeps the time of the last success for discovery that syncs', async () => {
    const metrics = createMetrics(new Placement({ vnodes: 10, hashKey: 'grouping-key' }));
    metrics.discovery.lastSuccess.set(1234);
    assert.equal(await read(metrics), 1234);
  });
});
