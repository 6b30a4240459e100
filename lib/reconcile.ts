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
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';

import { type Group, groupIdentity as identity, groupKeyOf as keyOf, toTextFormat } from './core/group';
import type { Node } from './core/node';
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

/** PassReport counts what one pass saw and did; in a dry run, what it would have done. */
export type PassReport = {
  /** True when the pass changed nothing and its counts are what it would have done. */
  dryRun: boolean;
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
  // A dry run's log says what would happen: an operator reading it must not think groups moved.
  const act = (doing: string, wouldDo: string): string => (options.dryRun ? wouldDo : doing);
  const list = (node: Node): Promise<Group[]> => client.listGroups(node);
  const remove = (node: Node, group: Group): Promise<void> => client.deleteGroup(node, group.labels);

  const copy = async (owner: Node, group: Group): Promise<void> => {
    const body = toTextFormat(group.families);
    if (body === undefined) throw new Error('the group holds native histograms, which cannot be re-pushed in the text format');
    await client.putGroup(owner, group.labels, body);
    const arrived = (await list(owner)).some((g) => identity(g.labels) === identity(group.labels) && g.pushTime > 0);
    if (!arrived) throw new Error(`the group did not arrive on ${owner.id}`);
  };

  const pass = async (): Promise<PassReport> => {
    const started = Date.now();
    const ring = placement.ring;
    const report: PassReport = { dryRun: options.dryRun, nodes: 0, skipped: [], groups: 0, misplaced: 0, deleted: 0, migrated: 0, expired: 0, kept: 0, errors: 0, drainedEmpty: [], durationMs: 0 };
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
          listed.set(node.id, await list(node));
        } catch (error) {
          report.skipped.push(node.id);
          report.errors++;
          metrics.errors.inc();
          log.warn({ node: node.id, err: (error as Error).message }, 'cannot list the node: skipping it this pass');
        }
      }),
    );
    const byIdentity = (nodeId: string): Map<string, Group> => new Map((listed.get(nodeId) ?? []).map((g) => [identity(g.labels), g]));
    const indexes = new Map<string, Map<string, Group>>();
    for (const nodeId of listed.keys()) indexes.set(nodeId, byIdentity(nodeId));
    const now = Date.now() / 1000;

    for (const node of nodes) {
      const groups = listed.get(node.id);
      if (groups === undefined) continue;
      const leaving = draining.has(node.id);
      let left = 0;
      for (const group of groups) {
        report.groups++;
        const context = { node: node.id, group: group.labels };
        try {
          if (options.ttlMs !== undefined && group.pushTime > 0 && now - group.pushTime > options.ttlMs / 1000) {
            log.info({ ...context, age_s: Math.round(now - group.pushTime) }, act('group expired: deleting', 'group expired: would delete'));
            if (!options.dryRun) await remove(node, group);
            report.expired++;
            metrics.expired.inc();
            continue;
          }
          const owner = ring.lookup(placement.hash(keyOf(group.labels), ''));
          if (owner === undefined) {
            left++;
            continue;
          }
          // On its owner (a drained node still on the ring owns its groups: nothing moves until it leaves the ring).
          if (owner.id === node.id) continue;
          report.misplaced++;
          metrics.misplaced.inc();
          const ownerGroups = indexes.get(owner.id);
          if (ownerGroups === undefined) {
            // The owner could not be listed: nothing is known about its copy, so nothing is deleted.
            left++;
            report.kept++;
            continue;
          }
          const ownerCopy = ownerGroups.get(identity(group.labels));
          if (ownerCopy !== undefined && ownerCopy.pushTime > group.pushTime) {
            log.info({ ...context, owner: owner.id }, act('misplaced copy: the owner holds a newer one, deleting', 'misplaced copy: the owner holds a newer one, would delete'));
            if (!options.dryRun) await remove(node, group);
            report.deleted++;
            metrics.deleted.inc();
            continue;
          }
          if (!options.migrate && !leaving) {
            log.info({ ...context, owner: owner.id }, 'misplaced group kept: its owner has no newer copy (--reconcile.migrate moves it)');
            report.kept++;
            left++;
            continue;
          }
          log.info({ ...context, owner: owner.id }, leaving
              ? act('draining: moving the group to its owner', 'draining: would move the group to its owner')
              : act('migrating the group to its owner', 'would migrate the group to its owner'),
          );
          if (!options.dryRun) {
            await copy(owner, group);
            await remove(node, group);
            ownerGroups.set(identity(group.labels), { ...group, pushTime: now });
          }
          report.migrated++;
          metrics.migrated.inc();
        } catch (error) {
          left++;
          report.errors++;
          metrics.errors.inc();
          log.error({ ...context, err: (error as Error).message }, 'reconciling the group failed; it stays where it is');
        }
      }
      if (leaving) {
        const empty = left === 0 && !options.dryRun;
        metrics.drainedEmpty.set({ node: node.id }, empty ? 1 : 0);
        if (empty) {
          report.drainedEmpty.push(node.id);
          log.info({ node: node.id }, 'drained node holds no group any more: it can be stopped');
        }
      }
    }
    report.durationMs = Date.now() - started;
    metrics.passes.inc();
    metrics.duration.set(report.durationMs / 1000);
    log.info({ ...report }, act('reconciliation pass done', 'reconciliation dry run done: nothing changed'));
    return report;
  };

  return Object.freeze({ pass });
}
