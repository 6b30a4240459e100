/**
 * The director's own metrics, on a registry of its own (so several directors can live in one test process). The
 * push path only calls `countPush` and `observeUpstream`, which add to plain numbers: no label hashing per push.
 */
import {
  Counter,
  Gauge,
  Histogram,
  type MetricObjectWithValues,
  type MetricType,
  type MetricValueWithName,
  Registry,
  collectDefaultMetrics,
} from 'prom-client';

import type { Placement, RingChange } from './placement';
import { VERSION } from './version';

/** PushOutcome is what became of one push. */
export type PushOutcome = 'redirected' | 'proxied' | 'handed_off' | 'rejected' | 'unavailable' | 'upstream_error';

const UPSTREAM_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * PlainHistogram is a histogram by node whose observations are plain additions into bucket counts, rendered by
 * prom-client only when scraped: prom-client's own observe() hashes the labels of every observation, which costs a
 * proxied push more than reading its answer's head.
 */
class PlainHistogram extends Histogram<'node' | 'le'> {
  private readonly series = new Map<string, { counts: Float64Array; sum: number; count: number }>();

  constructor(
    private readonly name: string,
    private readonly help: string,
    registry: Registry,
  ) {
    super({ name, help, labelNames: ['node'], buckets: UPSTREAM_BUCKETS, registers: [registry] });
  }

  observeNode(node: string, value: number): void {
    let series = this.series.get(node);
    if (series === undefined) {
      series = { counts: new Float64Array(UPSTREAM_BUCKETS.length), sum: 0, count: 0 };
      this.series.set(node, series);
    }
    let bucket = 0;
    while (bucket < UPSTREAM_BUCKETS.length && value > (UPSTREAM_BUCKETS[bucket] as number)) bucket++;
    if (bucket < UPSTREAM_BUCKETS.length) (series.counts[bucket] as number)++;
    series.sum += value;
    series.count++;
  }

  /** getForPromString is what the registry renders from, when a metric has one (prom-client's own histograms do). */
  getForPromString(): Promise<MetricObjectWithValues<MetricValueWithName<'node' | 'le'>>> {
    return this.get();
  }

  override get(): Promise<MetricObjectWithValues<MetricValueWithName<'node' | 'le'>>> {
    const { name } = this;
    const values: MetricValueWithName<'node' | 'le'>[] = [];
    for (const [node, series] of this.series) {
      let cumulative = 0;
      UPSTREAM_BUCKETS.forEach((le, i) => {
        cumulative += series.counts[i] as number;
        values.push({ metricName: `${name}_bucket`, labels: { le, node }, value: cumulative });
      });
      values.push({ metricName: `${name}_bucket`, labels: { le: '+Inf', node }, value: series.count });
      values.push({ metricName: `${name}_sum`, labels: { node }, value: series.sum });
      values.push({ metricName: `${name}_count`, labels: { node }, value: series.count });
    }
    // prom-client's typings declare MetricType as a numeric enum it does not export; its registry prints this string.
    const type = 'histogram' as unknown as MetricType;
    return Promise.resolve({ name, help: this.help, type, values, aggregator: 'sum', collect: () => undefined });
  }
}

/** DirectorMetrics holds every collector; create one per director with createMetrics. */
export type DirectorMetrics = Readonly<{
  registry: Registry;
  countPush(method: string, outcome: PushOutcome, node: string): void;
  observeUpstream(node: string, seconds: number): void;
  /** nodeUp is 1 for a candidate node that is up (on the ring), 0 for one its health checks took out. */
  nodeUp: Gauge<'node'>;
  /** countFastLane counts a push the proxy's fast lane took (pgw_director_fast_lane_pushes_total). */
  countFastLane(): void;
  discovery: Readonly<{
    up: Gauge;
    errors: Counter;
    lastSuccess: Gauge;
    /**
     * setStatic says the members come from the configuration: they are never out of date, so the last-success
     * timestamp reads the time of each scrape (a value set once would look stale and fire PgwDirectorDiscoveryStale).
     */
    setStatic(): void;
  }>;
}>;

/** createMetrics creates the collectors and follows the placement's ring changes. */
export function createMetrics(placement: Placement): DirectorMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  // Pushes are counted in plain numbers on the push path and handed to prom-client only when scraped: a
  // prom-client child's inc() costs more than the rest of a redirect's own work.
  // By node, then outcome, then method: three lookups of strings whose hashes V8 has mostly cached already, instead
  // of one lookup of a key joined from them, a new string to build and hash on every push (in a micro-benchmark,
  // 0.04 µs a push against 0.28 µs).
  type PushCount = { labels: { method: string; outcome: PushOutcome; node: string }; value: number };
  const pushCounts = new Map<string, Map<PushOutcome, Map<string, PushCount>>>();
  new Counter({
    name: 'pgw_director_pushes_total',
    help: 'Pushes handled, by method, outcome and owning node ("" when none).',
    labelNames: ['method', 'outcome', 'node'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const outcomes of pushCounts.values()) {
        for (const methods of outcomes.values()) for (const { labels, value } of methods.values()) this.inc(labels, value);
      }
    },
  });
  let fastLanePushes = 0;
  new Counter({
    name: 'pgw_director_fast_lane_pushes_total',
    help: 'Pushes the proxy\'s fast lane took; every other proxied push went through Node\'s HTTP server.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(fastLanePushes);
    },
  });
  const upstream = new PlainHistogram(
    'pgw_director_upstream_duration_seconds',
    'Time from forwarding a proxied push to the node\'s response headers.',
    registry,
  );
  const members = new Gauge({ name: 'pgw_director_ring_members', help: 'Pushgateways on the ring.', registers: [registry] });
  const vnodes = new Gauge({ name: 'pgw_director_ring_vnodes', help: 'Virtual nodes per Pushgateway.', registers: [registry] });
  const changes = new Counter({ name: 'pgw_director_ring_changes_total', help: 'Ring membership changes.', registers: [registry] });
  const lastChange = new Gauge({
    name: 'pgw_director_ring_last_change_timestamp_seconds',
    help: 'When the ring membership last changed, in Unix seconds.',
    registers: [registry],
  });
  let staticMembers = false;
  const discovery = {
    up: new Gauge({ name: 'pgw_director_discovery_up', help: '1 when the last discovery sync succeeded.', registers: [registry] }),
    errors: new Counter({ name: 'pgw_director_discovery_errors_total', help: 'Failed discovery syncs.', registers: [registry] }),
    lastSuccess: new Gauge({
      name: 'pgw_director_discovery_last_success_timestamp_seconds',
      help: 'When discovery last succeeded, in Unix seconds (the scrape time for static nodes, which are always current).',
      registers: [registry],
      collect() {
        if (staticMembers) this.set(Date.now() / 1000);
      },
    }),
    setStatic() {
      staticMembers = true;
      discovery.up.set(1);
    },
  };
  const nodeUp = new Gauge({
    name: 'pgw_director_node_up',
    help: '1 when a Pushgateway discovery lists is up and on the ring, 0 when its health checks took it out.',
    labelNames: ['node'] as const,
    registers: [registry],
  });
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

  return Object.freeze({
    registry,
    countPush(method: string, outcome: PushOutcome, node: string) {
      let outcomes = pushCounts.get(node);
      if (outcomes === undefined) pushCounts.set(node, (outcomes = new Map<PushOutcome, Map<string, PushCount>>()));
      let methods = outcomes.get(outcome);
      if (methods === undefined) outcomes.set(outcome, (methods = new Map<string, PushCount>()));
      const count = methods.get(method);
      if (count !== undefined) count.value++;
      else methods.set(method, { labels: { method, outcome, node }, value: 1 });
    },
    observeUpstream(node: string, seconds: number) {
      upstream.observeNode(node, seconds);
    },
    countFastLane() {
      fastLanePushes++;
    },
    discovery,
    nodeUp,
  });
}
