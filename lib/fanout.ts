/**
 * The fan-out DELETE: a group deleted through the director is deleted from the whole fleet, not only from its owner.
 * After a ring change the owner may hold nothing while the previous owner still serves the group; a node being
 * drained may hold it too. So besides the owner (which gets the client's DELETE, by 307 or proxied, and whose answer
 * is the client's), the director deletes the group on every other ring member and every draining node, in the
 * background, a few at a time, through the all-@base64 path of NodeClient.deleteGroup. It also records a tombstone,
 * so a node that missed the DELETE (down, unreachable, or out of the ring at the time) loses its copy on the first
 * reconciliation pass after it returns, instead of the reconciler moving it back to the owner.
 *
 * One entry point, `deleted`, which both lanes of the listener call once a DELETE is placed.
 */
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';

import { parseGroupingKey, toDisplayLabels } from './core/grouping-key';
import type { Node } from './core/node';
import type { NodeClient } from './nodes/client';
import type { Placement } from './placement';
import type { TombstoneStore } from './tombstones';

/** FanOutOptions configures createFanOut. */
export type FanOutOptions = Readonly<{
  placement: Placement;
  /** Nodes being drained (--reconcile.drain): they may hold any group. */
  drain: readonly Node[];
  client: NodeClient;
  tombstones: TombstoneStore | undefined;
  logger: Logger;
  registry: Registry;
  /** Deletes in flight at once to one node, across every DELETE (a hung node holds up only its own). @default 4 */
  concurrency?: number;
  /** Deletes waiting for one node; past it a delete is dropped (counted; the tombstone still applies). @default 10000 */
  maxQueued?: number;
  /** The clock, in seconds. @default Date.now() / 1000 */
  now?: () => number;
}>;

/** FanOut deletes groups from the fleet. */
export type FanOut = Readonly<{
  /**
   * deleted is called once a DELETE of the request target `target` (path and query as received) is placed on
   * `owner`. It records the tombstone and deletes the group on every other node in the background; the promise
   * (which never rejects) settles when all of that is done, for specs and shutdown. Callers do not wait for it.
   */
  deleted(target: string, owner: Node): Promise<void>;
  /** idle resolves when no fan-out delete is queued or in flight. */
  idle(): Promise<void>;
  /**
   * close drops the deletes still waiting (counted as dropped: the tombstones still apply) and resolves when those
   * in flight are done. DELETEs after it record their tombstone and delete nothing.
   */
  close(): Promise<void>;
}>;

/** FanOutOutcome is how one node's delete ended, as counted in pgw_director_fanout_deletes_total. */
export type FanOutOutcome = 'deleted' | 'failed' | 'dropped';

/** createFanOut returns the fan-out DELETE. */
export function createFanOut(options: FanOutOptions): FanOut {
  const concurrency = options.concurrency ?? 4;
  const maxQueued = options.maxQueued ?? 10_000;
  const now = options.now ?? ((): number => Date.now() / 1000);
  const log = options.logger.child({ component: 'fanout' });
  const deletes = new Counter({
    name: 'pgw_director_fanout_deletes_total',
    help: 'Deletes of a group on the nodes other than its owner after a DELETE through the director, by outcome.',
    labelNames: ['node', 'outcome'] as const,
    registers: [options.registry],
  });

  // One limiter per node: a node that hangs until the timeout holds up only the deletes meant for it.
  // A waiting delete is woken with true (its turn) or false (dropped at close).
  const lanes = new Map<string, { running: number; queue: ((go: boolean) => void)[] }>();
  const inFlight = new Set<Promise<void>>();
  let closed = false;
  const slot = (node: Node): Promise<boolean> => {
    if (closed) return Promise.resolve(false);
    let lane = lanes.get(node.id);
    if (lane === undefined) lanes.set(node.id, (lane = { running: 0, queue: [] }));
    if (lane.running < concurrency) {
      lane.running++;
      return Promise.resolve(true);
    }
    if (lane.queue.length >= maxQueued) return Promise.resolve(false);
    const queue = lane.queue;
    return new Promise<boolean>((resolve) => queue.push(resolve));
  };
  const release = (node: Node): void => {
    const lane = lanes.get(node.id);
    if (lane === undefined) return;
    const next = lane.queue.shift();
    if (next !== undefined) return next(true);
    lane.running--;
    if (lane.running === 0) lanes.delete(node.id);
  };

  const deleteOn = async (node: Node, labels: Readonly<Record<string, string>>): Promise<void> => {
    if (!(await slot(node))) {
      deletes.inc({ node: node.id, outcome: 'dropped' });
      log.warn(
        { node: node.id, group: labels },
        closed ? 'shutting down: fan-out delete dropped' : 'too many fan-out deletes waiting for this node: dropped; the tombstone still deletes the copy on a pass',
      );
      return;
    }
    try {
      await options.client.deleteGroup(node, labels);
      deletes.inc({ node: node.id, outcome: 'deleted' });
    } catch (error) {
      deletes.inc({ node: node.id, outcome: 'failed' });
      log.warn(
        { node: node.id, group: labels, err: (error as Error).message },
        options.tombstones === undefined
          ? 'cannot delete the group on this node: it keeps its copy'
          : 'cannot delete the group on this node: its tombstone deletes the copy on the first pass that can reach it',
      );
    } finally {
      release(node);
    }
  };

  const deleted = async (target: string, owner: Node): Promise<void> => {
    const query = target.indexOf('?');
    const parsed = parseGroupingKey(query < 0 ? target : target.slice(0, query));
    // The push handler placed this DELETE, so its path parses; anything else is not a group to delete.
    if (!parsed.ok) return;
    const labels = toDisplayLabels(parsed.key);
    const others = new Map<string, Node>();
    for (const node of [...options.placement.ring.nodes, ...options.drain]) if (node.id !== owner.id) others.set(node.id, node);
    const work = Promise.all([
      options.tombstones?.record(labels, now()),
      ...[...others.values()].map((node) => deleteOn(node, labels)),
    ]).then(() => undefined);
    inFlight.add(work);
    try {
      await work;
    } finally {
      inFlight.delete(work);
    }
  };

  const idle = async (): Promise<void> => {
    while (inFlight.size > 0) await Promise.all([...inFlight]);
  };

  const close = async (): Promise<void> => {
    closed = true;
    for (const lane of lanes.values()) for (const wake of lane.queue.splice(0)) wake(false);
    await idle();
  };

  return Object.freeze({ deleted, idle, close });
}
