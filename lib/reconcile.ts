/**
 * The reconciler: after the ring changes, a group's newest copy may sit on its new owner while an old copy lingers on
 * its previous node (the Pushgateway never forgets a group), so Prometheus would scrape both. A pass lists every
 * node's groups, reads the tombstones, asks lib/reconcile/decide.ts what to do with each copy, and does it:
 * 1. deletes what needs no other step: copies older than their tombstone or the TTL, and older copies of a group
 *    whose newest copy stays or moves;
 * 2. copies each group that moves to its owner (PUT as the only copy, or POST of its newer families merged into the
 *    owner's older copy);
 * 3. lists each owner that received groups once, to check they arrived, and reads the tombstones again: a group
 *    deleted through a director while the pass ran is deleted from its owner too, so a pass never resurrects it;
 * 4. deletes the moved groups where they were, once they arrived.
 *
 * Every step is idempotent and every director replica computes the same owners, so replicas may reconcile at once.
 * A node that cannot be listed is skipped: a failed read never counts as a missing group.
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';

import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';

import { type Family, type Group, groupIdentity as identity, groupKeyOf as keyOf, newerFamilies, toTextFormat } from './core/group';
import type { Node } from './core/node';
import type { Ring } from './core/ring';
import type { EachGroupOptions, NodeClient } from './nodes/client';
import type { Placement } from './placement';
import { type Action, decideGroup } from './reconcile/decide';
import type { TombstoneStore } from './tombstones';

/** RingView is what a pass reads of the placement: the current ring and how a grouping key hashes onto it. */
export type RingView = Pick<Placement, 'ring' | 'hash'>;

/** TombstoneReader is what a pass reads of the tombstones (a TombstoneStore, or the director's over a pass process's IPC channel). */
export type TombstoneReader = Pick<TombstoneStore, 'read'>;

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
  /** Requests to nodes in flight at once within a pass. @default 16 */
  concurrency?: number;
}>;

/** PassReport counts what one pass saw and did. */
export type PassReport = {
  /** True when the pass only reported what it would do. */
  dryRun: boolean;
  nodes: number;
  skipped: string[];
  groups: number;
  misplaced: number;
  deleted: number;
  migrated: number;
  expired: number;
  /** Copies deleted because the group was deleted through a director after their last push. */
  tombstoned: number;
  kept: number;
  errors: number;
  drainedEmpty: string[];
  durationMs: number;
};

/** COUNTED_METRICS names the reconciler's counters, as ReconcileMetrics keys them. */
export const COUNTED_METRICS = ['misplaced', 'deleted', 'tombstoned', 'migrated', 'expired', 'errors', 'passes'] as const;

/** CountedMetric is the key of one of the reconciler's counters. */
export type CountedMetric = (typeof COUNTED_METRICS)[number];

/**
 * ReconcileMetrics is what a pass records: its counters, the last pass's duration and the drained nodes' emptiness.
 * createReconcileMetrics makes them prom-client metrics; a pass in a child process records into stand-ins that carry
 * the figures to the director's (lib/reconcile/process.ts).
 */
export type ReconcileMetrics = Readonly<
  Record<CountedMetric, Readonly<{ inc(by?: number): void }>> & {
    duration: Readonly<{ set(value: number): void }>;
    drainedEmpty: Readonly<{ set(labels: { node: string }, value: number): void }>;
  }
>;

/**
 * DirectorReconcileMetrics adds what only the director records: when the running pass started (set by the loop that
 * runs passes, lib/director.ts).
 */
export type DirectorReconcileMetrics = ReconcileMetrics & Readonly<{ passStart: Readonly<{ set(value: number): void }> }>;

/** createReconcileMetrics registers the reconciler's metrics. */
export function createReconcileMetrics(registry: Registry): DirectorReconcileMetrics {
  const counter = (name: string, help: string): Counter => new Counter({ name: `pgw_director_reconcile_${name}`, help, registers: [registry] });
  return {
    misplaced: counter('misplaced_groups_total', 'Copies of groups seen on a node that does not own them.'),
    deleted: counter('deleted_groups_total', 'Copies deleted because a newer copy of the group stays or moves to its owner.'),
    tombstoned: counter('tombstoned_groups_total', 'Copies deleted because the group was deleted through a director after their last push.'),
    migrated: counter('migrated_groups_total', 'Groups copied to their owner, then deleted where they were.'),
    expired: counter('expired_groups_total', 'Groups deleted because their last push was older than --group.ttl.'),
    errors: counter('errors_total', 'Failed reads and writes towards the Pushgateways during passes.'),
    passes: counter('passes_total', 'Reconciliation passes run.'),
    duration: new Gauge({ name: 'pgw_director_reconcile_last_pass_duration_seconds', help: 'How long the last pass took.', registers: [registry] }),
    passStart: new Gauge({
      name: 'pgw_director_reconcile_pass_start_time_seconds',
      help: 'When the running pass started, in seconds since the Unix epoch; 0 while no pass runs.',
      registers: [registry],
    }),
    drainedEmpty: new Gauge({
      name: 'pgw_director_reconcile_drained_node_empty',
      help: '1 when a node named by --reconcile.drain holds no group any more and can be stopped.',
      labelNames: ['node'] as const,
      registers: [registry],
    }),
  };
}

/**
 * Reconciler runs passes against the current ring. A pass given a `stop` signal that fires starts no new delete or
 * move; the moves already sent are still checked and their old copies deleted, so a stopped pass leaves every group
 * in one place, as a finished one does.
 */
export type Reconciler = Readonly<{
  pass(stop?: AbortSignal): Promise<PassReport>;
  /**
   * prepare, where passes run in a process of their own (lib/reconcile/process.ts), starts the next pass's process
   * now, so that its start-up is over when the pass begins; it returns at once. Absent where a pass needs no start-up.
   */
  prepare?(): void;
  /** close ends what prepare() started and prepares no more; a running pass is stopped by its signal, not here. */
  close?(): void;
}>;

type Copy = Readonly<{ node: Node; group: Group }>;
type Planned = Readonly<{ copy: Copy; action: Action; ownerCopy: Copy | undefined; owner: Node | undefined }>;

/** withoutSamples keeps a group's labels, push time and the time of each family, not the families' samples. */
function withoutSamples(group: Group): Group {
  const families: Record<string, Family> = {};
  for (const [name, family] of Object.entries(group.families)) families[name] = family.time_stamp === undefined ? {} : { time_stamp: family.time_stamp };
  return { ...group, families };
}

/** A long synchronous stretch of a pass yields to the event loop after this long, so pushes are never held up. */
const BUDGET_MS = 5;

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

/**
 * createTurns returns a function that hands out turns one at a time, first come first served: it resolves with the
 * function that ends the turn (calling it again does nothing), and the next turn starts when it is called.
 */
function createTurns(): () => Promise<() => void> {
  let tail: Promise<void> = Promise.resolve();
  return () => {
    let end!: () => void;
    const ended = new Promise<void>((resolve) => (end = resolve));
    const start = tail.then(() => end);
    tail = tail.then(() => ended);
    return start;
  };
}

/** forEachLimited runs `fn` over `items`, at most `limit` at once; once `stop` fires it starts no more. */
async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>, stop?: AbortSignal): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length && stop?.aborted !== true) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

const DELETE_WHY = {
  delete: 'a newer copy of the group stays or moves to its owner',
  expire: 'its last push is older than --group.ttl',
  tombstoned: "the group was deleted through a director after this copy's last push",
} as const;

const COUNTED = { delete: 'deleted', expire: 'expired', tombstoned: 'tombstoned' } as const;

/** createReconciler builds a reconciler that reaches the nodes through `client` and reads `tombstones`. */
export function createReconciler(
  placement: RingView,
  options: ReconcileOptions,
  metrics: ReconcileMetrics,
  logger: Logger,
  client: NodeClient,
  tombstones?: TombstoneReader,
): Reconciler {
  const log = logger.child({ component: 'reconcile', ...(options.dryRun ? { dry_run: true } : {}) });
  const concurrency = options.concurrency ?? 16;
  const would = (doing: string, wouldDo: string): string => (options.dryRun ? wouldDo : doing);

  /**
   * list reads a node's groups for a pass. A copy on its owner is never re-pushed: at most a newer copy is merged into
   * it, which needs only its families' times, so it keeps those and drops the samples as it is read. A pass over tens
   * of thousands of groups then holds the samples of the misplaced copies only.
   */
  const list = async (node: Node, ring: Ring, options: EachGroupOptions): Promise<Group[]> => {
    const groups: Group[] = [];
    await client.eachGroup(
      node,
      (group) => {
        const owner = ring.lookup(placement.hash(keyOf(group.labels), ''));
        groups.push(owner?.id === node.id ? withoutSamples(group) : group);
      },
      options,
    );
    return groups;
  };

  const readTombstones = async (now: number): Promise<ReadonlyMap<string, number> | undefined> => {
    if (tombstones === undefined) return new Map();
    try {
      return await tombstones.read(now);
    } catch (error) {
      log.warn({ err: (error as Error).message }, 'cannot read the tombstones: no group moves this pass');
      return undefined;
    }
  };

  const pass = async (stop?: AbortSignal): Promise<PassReport> => {
    const started = Date.now();
    const ring = placement.ring;
    const report: PassReport = {
      dryRun: options.dryRun,
      nodes: 0,
      skipped: [],
      groups: 0,
      misplaced: 0,
      deleted: 0,
      migrated: 0,
      expired: 0,
      tombstoned: 0,
      kept: 0,
      errors: 0,
      drainedEmpty: [],
      durationMs: 0,
    };
    const failed = (context: object, error: unknown, message: string): void => {
      report.errors++;
      metrics.errors.inc();
      log.error({ ...context, err: (error as Error).message }, message);
    };
    const draining = new Set(options.drain.map((node) => node.id));
    for (const node of ring.nodes) {
      if (draining.has(node.id)) log.warn({ node: node.id }, 'a node to drain is still on the ring: take it out of discovery first');
    }
    const nodes = [...ring.nodes.filter((node) => !draining.has(node.id)), ...options.drain.filter((node) => !ring.nodes.some((n) => n.id === node.id))];
    report.nodes = nodes.length;

    // One node encodes a listing for the pass at a time, in this step and step 3. A listing is the costliest thing a
    // pass asks of a Pushgateway (about a CPU-second for 10,000 groups, all spent before it sends a byte), and a node
    // busy encoding is slow for the pushes sent to it meanwhile: asking one node at a time keeps the rest of the
    // fleet quick, and keeps the pass's peak demand on the fleet (and on a machine shared with nodes) to one
    // listing. The next node is asked as soon as the one before starts answering, so its encoding overlaps with the
    // reading of the answer before.
    const listingTurn = createTurns();
    const listTaking = async <T>(read: (options: EachGroupOptions) => Promise<T>): Promise<T> => {
      const endTurn = await listingTurn();
      try {
        return await read({ onAnswer: endTurn });
      } finally {
        endTurn();
      }
    };

    // 0. Read: every node's groups, then the tombstones (after the listings, so a DELETE that emptied a node before
    //    it was listed has its tombstone read too).
    const listed = new Map<string, Group[]>();
    await Promise.all(
      nodes.map(async (node) => {
        try {
          listed.set(node.id, await listTaking((listOptions) => list(node, ring, listOptions)));
        } catch (error) {
          report.skipped.push(node.id);
          report.errors++;
          metrics.errors.inc();
          log.warn({ node: node.id, err: (error as Error).message }, 'cannot list the node: skipping it this pass');
        }
      }),
    );
    const now = Date.now() / 1000;
    const deletedAt = await readTombstones(now);
    if (deletedAt === undefined) {
      report.errors++;
      metrics.errors.inc();
    }

    // Decide, group by group.
    const pace = createPacer();
    const copies = new Map<string, Copy[]>();
    for (const node of nodes) {
      for (const group of listed.get(node.id) ?? []) {
        await pace();
        const id = identity(group.labels);
        const list = copies.get(id);
        if (list === undefined) copies.set(id, [{ node, group }]);
        else list.push({ node, group });
        report.groups++;
      }
    }
    const plan: Planned[] = [];
    for (const [id, group] of copies) {
      await pace();
      const labels = (group[0] as Copy).group.labels;
      const owner = ring.lookup(placement.hash(keyOf(labels), ''));
      const actions = decideGroup({
        copies: group.map((copy) => ({ node: copy.node.id, pushTime: copy.group.pushTime })),
        owner: owner?.id,
        ownerListed: owner !== undefined && listed.has(owner.id),
        draining,
        tombstone: deletedAt?.get(id),
        tombstonesKnown: deletedAt !== undefined,
        now,
        ttl: options.ttlMs === undefined ? undefined : options.ttlMs / 1000,
        migrate: options.migrate,
        dryRun: options.dryRun,
      });
      const ownerCopy = group.find((copy) => copy.node.id === owner?.id);
      group.forEach((copy, i) => {
        if (copy.node.id !== owner?.id) {
          report.misplaced++;
          metrics.misplaced.inc();
        }
        plan.push({ copy, action: actions[i] as Action, ownerCopy, owner });
      });
    }

    const left = new Map<string, number>();
    const stays = (node: Node): void => {
      left.set(node.id, (left.get(node.id) ?? 0) + 1);
    };
    const remove = async ({ copy, action }: Planned): Promise<void> => {
      const kind = action.kind as keyof typeof DELETE_WHY;
      const context = { node: copy.node.id, group: copy.group.labels };
      log.info({ ...context, ...(kind === 'expire' ? { age_s: Math.round(now - copy.group.pushTime) } : {}) }, `${would('deleting', 'would delete')} the copy: ${DELETE_WHY[kind]}`);
      try {
        if (action.execute) await client.deleteGroup(copy.node, copy.group.labels);
        const counted = COUNTED[kind];
        report[counted]++;
        metrics[counted].inc();
      } catch (error) {
        stays(copy.node);
        failed(context, error, 'deleting the copy failed; it stays where it is');
      }
    };

    // 1. Deletes that need no other step.
    const deletes = plan.filter(({ action }) => action.kind === 'delete' || action.kind === 'expire' || action.kind === 'tombstoned');
    await forEachLimited(deletes, concurrency, remove, stop);
    for (const { copy, action } of plan) {
      if (action.kind !== 'keep') continue;
      stays(copy.node);
      if (action.reason === 'on-owner' || action.reason === 'receives-newer') continue;
      report.kept++;
      log.info({ node: copy.node.id, group: copy.group.labels, reason: action.reason }, 'misplaced group kept where it is');
    }

    // 2. Moves to the owners.
    const moves = plan.filter(({ action }) => action.kind === 'migrate');
    const sent: { planned: Planned; before: number | undefined }[] = [];
    await forEachLimited(moves, concurrency, async (planned) => {
      const { copy, action, ownerCopy, owner } = planned;
      if (action.kind !== 'migrate' || owner === undefined) return;
      const context = { node: copy.node.id, group: copy.group.labels, owner: owner.id };
      const draining = options.drain.some((node) => node.id === copy.node.id);
      log.info(
        context,
        action.merge
          ? `${would('merging', 'would merge')} the newest copy into the owner's older one`
          : `${would('migrating', 'would migrate')} the group to its owner${draining ? ' (draining)' : ''}`,
      );
      if (!action.execute) {
        report.migrated++;
        metrics.migrated.inc();
        return;
      }
      try {
        const families = action.merge && ownerCopy !== undefined ? newerFamilies(copy.group, ownerCopy.group) : copy.group.families;
        const body = toTextFormat(families);
        if (body === undefined) throw new Error('the group holds native histograms, which cannot be re-pushed in the text format');
        if (action.merge) await client.postGroup(owner, copy.group.labels, body);
        else await client.putGroup(owner, copy.group.labels, body);
        sent.push({ planned, before: ownerCopy?.group.pushTime });
      } catch (error) {
        stays(copy.node);
        failed(context, error, 'moving the group failed; it stays where it is');
      }
    }, stop);
    if (stop?.aborted === true) log.warn({ moved: sent.length }, 'reconciliation pass stopped early: only the moves already made are finished');

    // 3. Check arrivals (one listing per owner) and tombstones written while the pass ran.
    const arrivals = new Map<string, Promise<Map<string, number> | Error>>();
    const arrivedOn = (owner: Node): Promise<Map<string, number> | Error> => {
      let listing = arrivals.get(owner.id);
      if (listing === undefined) {
        // Only the push times are read off this listing: nothing else of it is kept.
        const pushTimes = new Map<string, number>();
        listing = listTaking((listOptions) => client.eachGroup(owner, (group) => pushTimes.set(identity(group.labels), group.pushTime), listOptions)).then(
          () => pushTimes,
          (error: unknown) => error as Error,
        );
        arrivals.set(owner.id, listing);
      }
      return listing;
    };
    const lateTombstones = sent.length > 0 ? await readTombstones(Date.now() / 1000) : undefined;

    // 4. Delete the moved groups where they were.
    await forEachLimited(sent, concurrency, async ({ planned, before }) => {
      const { copy, owner } = planned;
      if (owner === undefined) return;
      const id = identity(copy.group.labels);
      const context = { node: copy.node.id, group: copy.group.labels, owner: owner.id };
      const listing = await arrivedOn(owner);
      const arrived = listing instanceof Map ? listing.get(id) : undefined;
      if (arrived === undefined || arrived <= 0 || arrived === before) {
        stays(copy.node);
        const why = listing instanceof Error ? `cannot list the owner: ${listing.message}` : `the group did not arrive on ${owner.id}`;
        failed(context, new Error(why), 'moving the group failed; it stays where it is');
        return;
      }
      const late = lateTombstones?.get(id);
      try {
        if (late !== undefined && copy.group.pushTime < late) {
          // Deleted through a director while this pass moved it: the move must not bring it back.
          log.info(context, 'the group was deleted while the pass moved it: deleting it from its owner too');
          await client.deleteGroup(owner, copy.group.labels);
          await client.deleteGroup(copy.node, copy.group.labels);
          report.tombstoned++;
          metrics.tombstoned.inc();
          return;
        }
        await client.deleteGroup(copy.node, copy.group.labels);
        report.migrated++;
        metrics.migrated.inc();
      } catch (error) {
        stays(copy.node);
        failed(context, error, 'deleting the moved group where it was failed; the next pass deletes the older copy');
      }
    });

    for (const node of options.drain) {
      if (!nodes.some((n) => n.id === node.id)) continue;
      // A stopped pass left some of the node's copies unvisited: it is not known to be empty.
      const empty = !options.dryRun && stop?.aborted !== true && listed.has(node.id) && (left.get(node.id) ?? 0) === 0;
      metrics.drainedEmpty.set({ node: node.id }, empty ? 1 : 0);
      if (empty) {
        report.drainedEmpty.push(node.id);
        log.info({ node: node.id }, 'drained node holds no group any more: it can be stopped');
      }
    }
    report.durationMs = Date.now() - started;
    metrics.passes.inc();
    metrics.duration.set(report.durationMs / 1000);
    log.info({ ...report }, options.dryRun ? 'reconciliation pass done (dry run: nothing changed)' : 'reconciliation pass done');
    return report;
  };

  return Object.freeze({ pass });
}
