/**
 * The director's own metrics, on a registry of its own (so several directors can live in one test process). The
 * push path only calls `countPush` and `observeUpstream`, which reuse cached children: no label hashing per push.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

import type { Placement, RingChange } from './placement';
import { VERSION } from './version';

/** PushOutcome is what became of one push. */
export type PushOutcome = 'redirected' | 'proxied' | 'rejected' | 'unavailable' | 'upstream_error';

/** DirectorMetrics holds every collector; create one per director with createMetrics. */
export type DirectorMetrics = Readonly<{
  registry: Registry;
  countPush(method: string, outcome: PushOutcome, node: string): void;
  observeUpstream(node: string, seconds: number): void;
  discovery: Readonly<{ up: Gauge; errors: Counter; lastSuccess: Gauge }>;
}>;

/** createMetrics creates the collectors and follows the placement's ring changes. */
export function createMetrics(placement: Placement): DirectorMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  // Pushes are counted in plain numbers on the push path and handed to prom-client only when scraped: a
  // prom-client child's inc() costs more than the rest of a redirect's own work.
  const pushCounts = new Map<string, { labels: { method: string; outcome: PushOutcome; node: string }; value: number }>();
  new Counter({
    name: 'pgw_director_pushes_total',
    help: 'Pushes handled, by method, outcome and owning node ("" when none).',
    labelNames: ['method', 'outcome', 'node'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const { labels, value } of pushCounts.values()) this.inc(labels, value);
    },
  });
  const upstream = new Histogram({
    name: 'pgw_director_upstream_duration_seconds',
    help: 'Time from forwarding a proxied push to the node\'s response headers.',
    labelNames: ['node'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const members = new Gauge({ name: 'pgw_director_ring_members', help: 'Pushgateways on the ring.', registers: [registry] });
  const vnodes = new Gauge({ name: 'pgw_director_ring_vnodes', help: 'Virtual nodes per Pushgateway.', registers: [registry] });
  const changes = new Counter({ name: 'pgw_director_ring_changes_total', help: 'Ring membership changes.', registers: [registry] });
  const lastChange = new Gauge({
    name: 'pgw_director_ring_last_change_timestamp_seconds',
    help: 'When the ring membership last changed, in Unix seconds.',
    registers: [registry],
  });
  const discovery = {
    up: new Gauge({ name: 'pgw_director_discovery_up', help: '1 when the last discovery sync succeeded.', registers: [registry] }),
    errors: new Counter({ name: 'pgw_director_discovery_errors_total', help: 'Failed discovery syncs.', registers: [registry] }),
    lastSuccess: new Gauge({
      name: 'pgw_director_discovery_last_success_timestamp_seconds',
      help: 'When discovery last succeeded, in Unix seconds.',
      registers: [registry],
    }),
  };
  new Gauge({
    name: 'pgw_director_build_info',
    help: 'Always 1; labelled with the version of the director and of Node.js.',
    labelNames: ['version', 'nodejs_version'] as const,
    registers: [registry],
  }).set({ version: VERSION, nodejs_version: process.version }, 1);

  const showRing = (change?: RingChange): void => {
    members.set(placement.ring.nodes.length);
    vnodes.set(placement.ring.vnodes);
    lastChange.set(placement.changedAt.getTime() / 1000);
    if (change) changes.inc();
  };
  showRing();
  placement.on('change', showRing);

  const upstreamChildren = new Map<string, Histogram.Internal<'node'>>();
  return Object.freeze({
    registry,
    countPush(method: string, outcome: PushOutcome, node: string) {
      const key = `${method} ${outcome} ${node}`;
      const count = pushCounts.get(key);
      if (count !== undefined) count.value++;
      else pushCounts.set(key, { labels: { method, outcome, node }, value: 1 });
    },
    observeUpstream(node: string, seconds: number) {
      let child = upstreamChildren.get(node);
      if (child === undefined) {
        child = upstream.labels(node);
        upstreamChildren.set(node, child);
      }
      child.observe(seconds);
    },
    discovery,
  });
}
