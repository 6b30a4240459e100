/**
 * Tombstones in this process's memory, for static nodes: one replica's own deletions, forgotten on restart.
 */
import { groupIdentity } from '../core/group';
import type { Labels, TombstoneMetrics, TombstoneStore } from './index';

/** MAX_MEMORY_TOMBSTONES bounds the store; past it the oldest tombstone is forgotten first. */
export const MAX_MEMORY_TOMBSTONES = 100_000;

/** createMemoryTombstones returns a store that keeps tombstones for `ttlSeconds` in a Map. */
export function createMemoryTombstones(options: Readonly<{ ttlSeconds: number; max?: number }>, metrics?: TombstoneMetrics): TombstoneStore {
  const max = options.max ?? MAX_MEMORY_TOMBSTONES;
  // Insertion order is deletion order: a group deleted again moves to the end.
  const deleted = new Map<string, number>();

  const record = (labels: Labels, at: number): Promise<void> => {
    const identity = groupIdentity(labels);
    const previous = deleted.get(identity);
    deleted.delete(identity);
    deleted.set(identity, Math.max(at, previous ?? at));
    while (deleted.size > max) deleted.delete(deleted.keys().next().value as string);
    metrics?.recorded.inc();
    return Promise.resolve();
  };

  const read = (now: number): Promise<ReadonlyMap<string, number>> => {
    for (const [identity, at] of deleted) if (now - at > options.ttlSeconds) deleted.delete(identity);
    return Promise.resolve(new Map(deleted));
  };

  return Object.freeze({ record, read });
}
