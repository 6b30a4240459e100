/**
 * The messages between the director's main thread and a reconciliation pass running in a worker thread
 * (lib/reconcile/thread.ts starts it, lib/reconcile/worker.ts runs it). Plain data only: everything here crosses
 * threads by structured clone.
 *
 * main -> worker, once, as workerData: a PassSetup (the ring snapshot, the pass's options, how to reach the nodes).
 * worker -> main: `output` batches (log lines, counter increments, drained-node gauges), `tombstones` requests (the
 *   store lives on the main thread, Consul's or memory), `lookup` requests (with DNS discovery, node names resolve
 *   through the main thread's resolver), and one `done` with the pass's report.
 * main -> worker: one answer per request, with the same type and id; and `stop`, at most once, to end the pass early.
 * A worker that throws, exits, or runs out of memory before `done` is a failed pass (the main thread rejects).
 */

import type { LogLevel } from '../config';
import type { HashKeyMode } from '../core/key-hash';
import type { Node } from '../core/node';
import type { CountedMetric, PassReport, ReconcileOptions } from '../reconcile';
import type { LookupAnswer } from '../threads/lookup';

export type { LookupAnswer } from '../threads/lookup';

/** PassSetup is everything a worker needs to run one pass, as of the moment the pass starts. */
export type PassSetup = Readonly<{
  /** The ring the pass reconciles against: its members and how it is built (the worker builds the same ring). */
  ring: Readonly<{ nodes: readonly Node[]; vnodes: number; hashKey: HashKeyMode }>;
  options: ReconcileOptions;
  /**
   * The NodeClient's settings: timeout, the node credentials, and whether node names resolve through the main
   * thread's lookup (DNS discovery's resolver, whose last good answers the worker then shares) rather than the
   * system's.
   */
  client: Readonly<{ timeoutMs: number; authorization: string | undefined; lookupOnMain: boolean }>;
  /** The level the main thread logs at; the worker formats its lines at the same level. */
  logLevel: LogLevel;
  /** False when --group.tombstone-ttl is 0: no tombstones to read. */
  tombstones: boolean;
}>;

/** PassOutput is what a worker reports as it goes: log lines to write, counters to add, gauges to set. */
export type PassOutput = Readonly<{
  type: 'output';
  /** Complete JSON log lines, each ending with a newline, formatted by the worker's logger. */
  lines: string;
  counts: Partial<Record<CountedMetric, number>>;
  /** The last pass's duration in seconds, once known. */
  durationS?: number;
  /** pgw_director_reconcile_drained_node_empty values, by node id. */
  drained: readonly (readonly [string, number])[];
}>;

/** FromWorker is every message a pass worker sends. */
export type FromWorker =
  | PassOutput
  | Readonly<{ type: 'tombstones'; id: number; now: number }>
  | Readonly<{ type: 'lookup'; id: number; hostname: string; family: number }>
  | Readonly<{ type: 'done'; report: PassReport }>;

/** TombstonesAnswer is the main thread's answer to a `tombstones` request: the entries, or why they are unknown. */
export type TombstonesAnswer = Readonly<
  { type: 'tombstones'; id: number } & ({ ok: true; entries: readonly (readonly [string, number])[] } | { ok: false; message: string })
>;


/** StopPass asks the worker to start no new delete or move and end the pass (the director is shutting down). */
export type StopPass = Readonly<{ type: 'stop' }>;

/** ToWorker is every message the main thread sends a pass worker. */
export type ToWorker = TombstonesAnswer | LookupAnswer | StopPass;
