/**
 * The reconciler: after the ring changes, a group's newest copy may sit on its new owner while an old copy lingers on
 * its previous node (the Pushgateway never forgets a group), so Prometheus would scrape both. A pass lists every
 * node's groups, finds each copy that is not on its owner, and deletes it once the owner holds a newer copy; with
 * migration (or for a node being drained) it first copies the group to its owner and checks it arrived. With a TTL
 * it also deletes groups whose last push is too old, wherever they are.
 *
 * Every step is idempotent and every director replica computes the same owners, so replicas may reconcile at once.
 * A node that cannot be listed is skipped: a failed read never counts as a missing group.
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';

import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';

import { type Family, type Group, groupIdentity as identity, groupKeyOf as keyOf, toTextFormat } from './core/group';
import type { Node } from './core/node';
import type { Ring } from './core/ring';
import type { NodeClient } from './nodes/client';
import type { Placement } from './placement';

/** ReconcileOptions configures a pass. */
export type ReconcileOptions = Readonly<{
  /** Copy misplaced groups to their owner when the owner has no newer copy. */
  migrate: boolean;
  /** Nodes leaving the ring but still running: every group they hold moves to its owner. */
  drain: readonly Node[];
  /** Log what a pass would do, change nothing. */
  dryRun: boolean;
  /** Delete groups whose last push is older than this; undefined: never. */
  ttlMs: number | undefined;
}>;

/** PassReport counts what one pass saw and did. */
export type PassReport = {
  nodes: number;
  skipped: string[];
  groups: number;
  misplaced: number;
  deleted: number;
  migrated: number;
  expired: number;
  kept: number;
  errors: number;
  drainedEmpty: string[];
  durationMs: number;
};

/** ReconcileMetrics are the reconciler's counters and gauges. */
export type ReconcileMetrics = ReturnType<typeof createReconcileMetrics>;

/** createReconcileMetrics registers the reconciler's metrics. */
export function createReconcileMetrics(registry: Registry) {
  const counter = (name: string, help: string): Counter => new Counter({ name: `pgw_director_reconcile_${name}`, help, registers: [registry] });
  return {
    misplaced: counter('misplaced_groups_total', 'Copies of groups seen on a node that does not own them.'),
    deleted: counter('deleted_groups_total', 'Misplaced copies deleted because the owner held a newer copy.'),
    migrated: counter('migrated_groups_total', 'Groups copied to their owner, then deleted where they were.'),
    expired: counter('expired_groups_total', 'Groups deleted because their last push was older than --group.ttl.'),
    errors: counter('errors_total', 'Failed reads and writes towards the Pushgateways during passes.'),
    passes: counter('passes_total', 'Reconciliation passes run.'),
    duration: new Gauge({ name: 'pgw_director_reconcile_last_pass_duration_seconds', help: 'How long the last pass took.', registers: [registry] }),
    drainedEmpty: new Gauge({
      name: 'pgw_director_reconcile_drained_node_empty',
      help: '1 when a node named by --reconcile.drain holds no group any more and can be stopped.',
      labelNames: ['node'] as const,
      registers: [registry],
    }),
  };
}

/** How many deletions or copies a pass keeps in flight at once. */
const IO_CONCURRENCY = 16;
/** How long a pass computes before it lets the event loop (and so the pushes) run. */
const BUDGET_MS = 5;

const NO_FAMILIES: Readonly<Record<string, Family>> = Object.freeze({});

type Removal = { node: Node; group: Group; reason: 'deleted' | 'expired' };
type Migration = { node: Node; owner: Node; group: Group; followers: Removal[] };

/** createPacer returns a function to await in long loops: it yields to the event loop once BUDGET_MS have passed. */
function createPacer(): () => Promise<void> {
  let since = performance.now();
  let calls = 0;
  return async () => {
    if (++calls % 64 !== 0 || performance.now() - since < BUDGET_MS) return;
    await yieldToLoop();
    since = performance.now();
  };
}

/** forEachLimited runs `work` on every item, at most `limit` at once. */
async function forEachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await work(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** Reconciler runs passes against the current ring. */
export type Reconciler = Readonly<{ pass(): Promise<PassReport> }>;

/** createReconciler builds a reconciler that reaches the nodes through `client`. */
export function createReconciler(
  placement: Placement,
  options: ReconcileOptions,
  metrics: ReconcileMetrics,
  logger: Logger,
  client: NodeClient,
): Reconciler {
  const log = logger.child({ component: 'reconcile', ...(options.dryRun ? { dry_run: true } : {}) });
  /**
   * list reads a node's groups for a pass. A copy on its owner is never re-pushed, so its families are dropped as it
   * is read: a pass over tens of thousands of groups keeps the families of the misplaced ones only.
   */
  const list = async (node: Node, ring: Ring): Promise<Group[]> => {
    const groups: Group[] = [];
    await client.eachGroup(node, (group) => {
      const owner = ring.lookup(placement.hash(keyOf(group.labels), ''));
      groups.push(owner?.id === node.id ? { ...group, families: NO_FAMILIES } : group);
    });
    return groups;
  };
  const remove = (node: Node, group: Group): Promise<void> => client.deleteGroup(node, group.labels);

  const pass = async (): Promise<PassReport> => {
    const started = Date.now();
    const ring = placement.ring;
    const report: PassReport = { nodes: 0, skipped: [], groups: 0, misplaced: 0, deleted: 0, migrated: 0, expired: 0, kept: 0, errors: 0, drainedEmpty: [], durationMs: 0 };
    const draining = new Set(options.drain.map((node) => node.id));
    for (const node of ring.nodes) {
      if (draining.has(node.id)) log.warn({ node: node.id }, 'a node to drain is still on the ring: take it out of discovery first');
    }
    const nodes = [...ring.nodes.filter((node) => !draining.has(node.id)), ...options.drain.filter((node) => !ring.nodes.some((n) => n.id === node.id))];
    report.nodes = nodes.length;

    const listed = new Map<string, Group[]>();
    await Promise.all(
      nodes.map(async (node) => {
        try {
          listed.set(node.id, await list(node, ring));
        } catch (error) {
          report.skipped.push(node.id);
          report.errors++;
          metrics.errors.inc();
          log.warn({ node: node.id, err: (error as Error).message }, 'cannot list the node: skipping it this pass');
        }
      }),
    );
    const pace = createPacer();
    const indexes = new Map<string, Map<string, Group>>();
    for (const [nodeId, groups] of listed) {
      const index = new Map<string, Group>();
      for (const group of groups) {
        index.set(identity(group.labels), group);
        await pace();
      }
      indexes.set(nodeId, index);
    }
    const now = Date.now() / 1000;

    // Decide every copy first (yielding as it goes), then act in three rounds with bounded concurrency: copies to
    // owners; one listing per owner to check they arrived; deletions, of migrated copies only once checked.
    const removals: Removal[] = [];
    const migrations = new Map<string, Migration>(); // by group identity: the first copy seen is the one moved
    const left = new Map<string, number>(); // per node: groups that stay where they are
    const stays = (node: Node): void => void left.set(node.id, (left.get(node.id) ?? 0) + 1);
    for (const node of nodes) {
      const groups = listed.get(node.id);
      if (groups === undefined) continue;
      const leaving = draining.has(node.id);
      for (const group of groups) {
        await pace();
        report.groups++;
        const context = { node: node.id, group: group.labels };
        if (options.ttlMs !== undefined && group.pushTime > 0 && now - group.pushTime > options.ttlMs / 1000) {
          log.info({ ...context, age_s: Math.round(now - group.pushTime) }, 'group expired: deleting');
          removals.push({ node, group, reason: 'expired' });
          continue;
        }
        const owner = ring.lookup(placement.hash(keyOf(group.labels), ''));
        if (owner === undefined) {
          stays(node);
          continue;
        }
        // On its owner (a drained node still on the ring owns its groups: nothing moves until it leaves the ring).
        if (owner.id === node.id) continue;
        report.misplaced++;
        metrics.misplaced.inc();
        const ownerGroups = indexes.get(owner.id);
        if (ownerGroups === undefined) {
          // The owner could not be listed: nothing is known about its copy, so nothing is deleted.
          stays(node);
          report.kept++;
          continue;
        }
        const id = identity(group.labels);
        const ownerCopy = ownerGroups.get(id);
        if (ownerCopy !== undefined && ownerCopy.pushTime > group.pushTime) {
          log.info({ ...context, owner: owner.id }, 'misplaced copy: the owner holds a newer one, deleting');
          removals.push({ node, group, reason: 'deleted' });
          continue;
        }
        const moving = migrations.get(id);
        if (moving !== undefined) {
          // Another copy of the group is being moved to the owner this pass: this one goes once that one arrived.
          log.info({ ...context, owner: owner.id }, 'misplaced copy: another copy is moving to the owner, deleting once it arrived');
          moving.followers.push({ node, group, reason: 'deleted' });
          continue;
        }
        if (!options.migrate && !leaving) {
          log.info({ ...context, owner: owner.id }, 'misplaced group kept: its owner has no newer copy (--reconcile.migrate moves it)');
          report.kept++;
          stays(node);
          continue;
        }
        log.info({ ...context, owner: owner.id }, leaving ? 'draining: moving the group to its owner' : 'migrating the group to its owner');
        migrations.set(id, { node, owner, group, followers: [] });
      }
    }

    const failed = (node: Node, group: Group, error: unknown): void => {
      stays(node);
      report.errors++;
      metrics.errors.inc();
      log.error({ node: node.id, group: group.labels, err: (error as Error).message }, 'reconciling the group failed; it stays where it is');
    };
    const removeAll = (items: readonly Removal[]): Promise<void> =>
      forEachLimited(items, IO_CONCURRENCY, async ({ node, group, reason }) => {
        try {
          if (!options.dryRun) await remove(node, group);
          report[reason]++;
          metrics[reason].inc();
        } catch (error) {
          failed(node, group, error);
        }
      });

    await removeAll(removals);
    const moved: Migration[] = [];
    if (options.dryRun) moved.push(...migrations.values());
    else {
      const copied: Migration[] = [];
      await forEachLimited([...migrations.values()], IO_CONCURRENCY, async (migration) => {
        try {
          const body = toTextFormat(migration.group.families);
          if (body === undefined) throw new Error('the group holds native histograms, which cannot be re-pushed in the text format');
          await client.putGroup(migration.owner, migration.group.labels, body);
          copied.push(migration);
        } catch (error) {
          failed(migration.node, migration.group, error);
        }
      });
      // One listing per owner checks every copy sent to it.
      const owners = new Map<string, Node>(copied.map((m) => [m.owner.id, m.owner]));
      const arrived = new Map<string, Set<string> | Error>();
      await Promise.all(
        [...owners.values()].map(async (owner) => {
          try {
            const present = new Set<string>();
            await client.eachGroup(owner, (g) => {
              if (g.pushTime > 0) present.add(identity(g.labels));
            });
            arrived.set(owner.id, present);
          } catch (error) {
            arrived.set(owner.id, error as Error);
          }
        }),
      );
      for (const migration of copied) {
        await pace();
        const present = arrived.get(migration.owner.id);
        if (present instanceof Error) failed(migration.node, migration.group, present);
        else if (present?.has(identity(migration.group.labels)) !== true) failed(migration.node, migration.group, new Error(`the group did not arrive on ${migration.owner.id}`));
        else moved.push(migration);
      }
    }
    await forEachLimited(moved, IO_CONCURRENCY, async ({ node, group }) => {
      try {
        if (!options.dryRun) await remove(node, group);
        report.migrated++;
        metrics.migrated.inc();
      } catch (error) {
        failed(node, group, error);
      }
    });
    await removeAll(moved.flatMap((m) => m.followers));
    const done = new Set(moved);
    for (const migration of migrations.values()) {
      if (!done.has(migration)) for (const follower of migration.followers) stays(follower.node);
    }

    for (const node of nodes) {
      if (!draining.has(node.id) || !listed.has(node.id)) continue;
      const empty = (left.get(node.id) ?? 0) === 0 && !options.dryRun;
      metrics.drainedEmpty.set({ node: node.id }, empty ? 1 : 0);
      if (empty) {
        report.drainedEmpty.push(node.id);
        log.info({ node: node.id }, 'drained node holds no group any more: it can be stopped');
      }
    }
    report.durationMs = Date.now() - started;
    metrics.passes.inc();
    metrics.duration.set(report.durationMs / 1000);
    log.info({ ...report }, 'reconciliation pass done');
    return report;
  };

  return Object.freeze({ pass });
}
