/**
 * Tombstones: the director remembers each group deleted through it, with the time, for --group.tombstone-ttl, so a
 * reconciliation pass deletes, and never moves back, a copy whose last push is older than the DELETE (a node that was
 * down or unreachable during the DELETE keeps its copy until then). With Consul the tombstones live in Consul's KV
 * store and every replica sees every other's; with static nodes they live in this process's memory.
 */
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';

import type { Config } from '../config';
import { createConsulTombstones } from './consul';
import { createMemoryTombstones } from './memory';

/** Labels are a group's grouping key as the Pushgateway's API spells it (`job` included), UTF-8 values. */
export type Labels = Readonly<Record<string, string>>;

/**
 * TombstoneStore records deletions and reads them back. Times are seconds since the epoch. Shared by the fan-out
 * (which records) and the reconciler (which reads); one per director.
 */
export type TombstoneStore = Readonly<{
  /** record remembers that the group was deleted at `at`. Never rejects: a failed write is logged and retried later. */
  record(labels: Labels, at: number): Promise<void>;
  /**
   * read returns the deletion time of every group with a live tombstone, by group identity (core/group's
   * groupIdentity), and forgets the expired ones. Rejects when the tombstones cannot be read.
   */
  read(now: number): Promise<ReadonlyMap<string, number>>;
}>;

/** TombstoneMetrics counts what the stores do. */
export type TombstoneMetrics = Readonly<{ recorded: Counter; errors: Counter }>;

/** createTombstoneMetrics registers the tombstone counters. */
export function createTombstoneMetrics(registry: Registry): TombstoneMetrics {
  return {
    recorded: new Counter({ name: 'pgw_director_tombstones_recorded_total', help: 'Groups deleted through the director and remembered.', registers: [registry] }),
    errors: new Counter({ name: 'pgw_director_tombstone_errors_total', help: 'Failed tombstone writes and reads (Consul KV).', registers: [registry] }),
  };
}

/**
 * createTombstones picks the store the configuration asks for: Consul KV under --consul.kv-prefix with Consul, memory
 * otherwise; undefined when --group.tombstone-ttl is 0.
 */
export function createTombstones(config: Config, registry: Registry, logger: Logger): TombstoneStore | undefined {
  const ttlSeconds = config.reconcile.tombstoneTtlMs / 1000;
  if (ttlSeconds <= 0) return undefined;
  const metrics = createTombstoneMetrics(registry);
  if (config.consul !== undefined) return createConsulTombstones(config.consul, { ttlSeconds, prefix: config.consul.kvPrefix }, metrics, logger);
  return createMemoryTombstones({ ttlSeconds }, metrics);
}
