/**
 * Tombstones in Consul's KV store, shared by every director replica: one key per deleted group,
 * `<prefix>tombstones/<sha256 of the group identity>`, whose value is JSON `{"labels": {...}, "deleted_at": seconds}`.
 * Consul keys have no TTL of their own (only sessions expire, and they need renewing), so the time lives in the value
 * and every read deletes the expired keys, with `?cas` so a tombstone another replica just renewed survives.
 *
 * Writes keep the later time when two replicas delete the same group: read the key, then write with `?cas` on the
 * ModifyIndex read (0: only if still absent), and retry when another write came in between. A write that fails
 * (Consul down, 403) stays pending in memory, counts in the reads of this replica, and is retried on every read.
 *
 * The director's token needs `key_prefix "<prefix>" { policy = "write" }`.
 */
import { createHash } from 'node:crypto';

import Consul from 'consul';
import type { Logger } from 'pino';

import type { ConsulConfig } from '../config';
import { groupIdentity } from '../core/group';
import type { Labels, TombstoneMetrics, TombstoneStore } from './index';

/** ConsulTombstoneOptions configures createConsulTombstones. */
export type ConsulTombstoneOptions = Readonly<{ ttlSeconds: number; prefix: string; timeoutMs?: number }>;

type KvItem = { Key: string; Value: string | null; ModifyIndex: number };

const CAS_ATTEMPTS = 5;
/** MAX_PENDING bounds the tombstones kept in memory while Consul does not take them; the oldest go first. */
export const MAX_PENDING = 100_000;

/** tombstoneKey is the KV key of a group's tombstone under a prefix. */
export function tombstoneKey(prefix: string, labels: Labels): string {
  return `${prefix}tombstones/${createHash('sha256').update(groupIdentity(labels)).digest('hex')}`;
}

/** parseTombstone reads a tombstone's value; undefined when it is not what this module writes. */
export function parseTombstone(value: string | null | undefined): { labels: Labels; deletedAt: number } | undefined {
  if (typeof value !== 'string') return undefined;
  try {
    const doc = JSON.parse(value) as { labels?: unknown; deleted_at?: unknown };
    const labels = doc.labels;
    if (labels === null || typeof labels !== 'object' || Array.isArray(labels)) return undefined;
    if (!Object.values(labels).every((v) => typeof v === 'string')) return undefined;
    if (typeof doc.deleted_at !== 'number' || !Number.isFinite(doc.deleted_at)) return undefined;
    return { labels: labels as Labels, deletedAt: doc.deleted_at };
  } catch {
    return undefined;
  }
}

/** createConsulTombstones returns a store in Consul's KV under `options.prefix`. */
export function createConsulTombstones(
  config: ConsulConfig,
  options: ConsulTombstoneOptions,
  metrics: TombstoneMetrics,
  logger: Logger,
): TombstoneStore {
  const at = config.address.lastIndexOf(':');
  const consul = new Consul({ host: config.address.slice(0, at), port: Number(config.address.slice(at + 1)), secure: config.scheme === 'https' });
  const log = logger.child({ component: 'tombstones', consul: config.address });
  const common: Record<string, unknown> = { timeout: options.timeoutMs ?? 10_000 };
  if (config.token !== undefined) common['token'] = config.token;
  if (config.datacenter !== undefined) common['dc'] = config.datacenter;
  const kv = consul.kv as unknown as {
    get(opts: Record<string, unknown>): Promise<KvItem | KvItem[] | undefined>;
    set(opts: Record<string, unknown>): Promise<boolean>;
    del(opts: Record<string, unknown>): Promise<boolean>;
  };
  const pending = new Map<string, { labels: Labels; at: number }>();

  /** describe turns a failed call into one line; never the token. */
  const describe = (error: unknown): string => {
    const err = error as { statusCode?: number; message?: string; code?: string; response?: { statusCode?: number } };
    const status = err.response?.statusCode ?? err.statusCode;
    if (status === 403) return `consul refused the ACL token (403; token from ${config.tokenSource}): the token needs key:write on ${JSON.stringify(options.prefix)}`;
    if (status !== undefined) return `consul answered ${status}`;
    return `consul unreachable: ${err.code ?? err.message ?? String(error)}`;
  };

  const write = async (labels: Labels, when: number): Promise<void> => {
    const key = tombstoneKey(options.prefix, labels);
    const value = JSON.stringify({ labels, deleted_at: when });
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const item = (await kv.get({ ...common, key })) as KvItem | undefined;
      const existing = parseTombstone(item?.Value);
      if (existing !== undefined && existing.deletedAt >= when) return;
      if (await kv.set({ ...common, key, value, cas: item?.ModifyIndex ?? 0 })) return;
    }
    throw new Error(`tombstone ${key} kept changing under ${CAS_ATTEMPTS} compare-and-set writes`);
  };

  const record = async (labels: Labels, when: number): Promise<void> => {
    const identity = groupIdentity(labels);
    const previous = pending.get(identity);
    pending.delete(identity);
    pending.set(identity, { labels, at: Math.max(when, previous?.at ?? when) });
    while (pending.size > MAX_PENDING) pending.delete(pending.keys().next().value as string);
    try {
      await write(labels, when);
      if (pending.get(identity)?.at === when) pending.delete(identity);
      metrics.recorded.inc();
    } catch (error) {
      metrics.errors.inc();
      log.warn({ group: labels, err: describe(error) }, 'cannot write the tombstone to consul: kept in memory, retried on the next pass');
    }
  };

  const read = async (now: number): Promise<ReadonlyMap<string, number>> => {
    for (const [identity, { labels, at: when }] of [...pending]) {
      try {
        await write(labels, when);
        if (pending.get(identity)?.at === when) pending.delete(identity);
      } catch {
        // Consul takes no writes yet: the rest wait for the next pass (a hung Consul would cost a timeout each), and
        // they count below all the same.
        break;
      }
    }
    let items: KvItem[];
    try {
      const answer = await kv.get({ ...common, key: `${options.prefix}tombstones/`, recurse: true });
      items = answer === undefined ? [] : Array.isArray(answer) ? answer : [answer];
    } catch (error) {
      metrics.errors.inc();
      throw new Error(`cannot read the tombstones: ${describe(error)}`);
    }
    const live = new Map<string, number>();
    const expired: KvItem[] = [];
    for (const item of items) {
      const tombstone = parseTombstone(item.Value);
      if (tombstone === undefined) {
        log.warn({ key: item.Key }, 'ignoring a tombstone key this director did not write');
        continue;
      }
      if (now - tombstone.deletedAt > options.ttlSeconds) expired.push(item);
      else live.set(groupIdentity(tombstone.labels), tombstone.deletedAt);
    }
    for (const [identity, { at: when }] of pending) live.set(identity, Math.max(when, live.get(identity) ?? when));
    // Prune with ?cas: a tombstone renewed since it was read keeps its new value.
    await Promise.all(
      expired.map((item) =>
        kv.del({ ...common, key: item.Key, cas: item.ModifyIndex }).catch((error: unknown) => {
          metrics.errors.inc();
          log.warn({ key: item.Key, err: describe(error) }, 'cannot prune an expired tombstone');
        }),
      ),
    );
    return live;
  };

  return Object.freeze({ record, read });
}
