/**
 * The messages between the director and a reconciliation pass running in a child process of its own
 * (lib/reconcile/process.ts starts it, lib/reconcile/child.ts runs it). Plain data only: everything here crosses the
 * child's IPC channel by structured clone (`serialization: 'advanced'`).
 *
 * director -> child, once, first: `setup`, a PassSetup (the ring snapshot, the pass's options, how to reach the nodes,
 *   the node credentials included: they go over the channel, never on the child's command line or environment).
 * child -> director, once started (before the setup, which a prepared child waits for): `ready`.
 * child -> director: `output` batches (log lines, counter increments, drained-node gauges), `tombstones` requests (the
 *   store lives in the director, Consul's or memory), `lookup` requests (with DNS discovery, node names resolve
 *   through the director's resolver), and one `done` with the pass's report, or one `failed` with why it failed.
 * director -> child: one answer per request, with the same type and id; and `stop`, at most once, to end the pass early.
 * A child that fails, throws, exits, or runs out of memory before `done` is a failed pass (the director rejects).
 */

import type { LogLevel } from '../config';
import type { HashKeyMode } from '../core/key-hash';
import type { Node } from '../core/node';
import type { CountedMetric, PassReport, ReconcileOptions } from '../reconcile';
import type { LookupAnswer } from '../threads/lookup';

export type { LookupAnswer } from '../threads/lookup';

/** PassSetup is everything a child needs to run one pass, as of the moment the pass starts. */
export type PassSetup = Readonly<{
  /** The ring the pass reconciles against: its members and how it is built (the child builds the same ring). */
  ring: Readonly<{ nodes: readonly Node[]; vnodes: number; hashKey: HashKeyMode }>;
  options: ReconcileOptions;
  /**
   * The NodeClient's settings: timeout, the node credentials, and whether node names resolve through the director's
   * lookup (DNS discovery's resolver, whose last good answers the child then shares) rather than the system's.
   */
  client: Readonly<{ timeoutMs: number; authorization: string | undefined; lookupOnMain: boolean }>;
  /** The level the director logs at; the child formats its lines at the same level. */
  logLevel: LogLevel;
  /** False when --group.tombstone-ttl is 0: no tombstones to read. */
  tombstones: boolean;
}>;

/** SetupPass is the first message a child receives: the pass to run. */
export type SetupPass = Readonly<{ type: 'setup'; setup: PassSetup }>;

/** PassOutput is what a child reports as it goes: log lines to write, counters to add, gauges to set. */
export type PassOutput = Readonly<{
  type: 'output';
  /** Complete JSON log lines, each ending with a newline, formatted by the child's logger. */
  lines: string;
  counts: Partial<Record<CountedMetric, number>>;
  /** The last pass's duration in seconds, once known. */
  durationS?: number;
  /** pgw_director_reconcile_drained_node_empty values, by node id. */
  drained: readonly (readonly [string, number])[];
}>;

/** FromChild is every message a pass's child process sends. */
export type FromChild =
  | Readonly<{ type: 'ready' }>
  | PassOutput
  | Readonly<{ type: 'tombstones'; id: number; now: number }>
  | Readonly<{ type: 'lookup'; id: number; hostname: string; family: number }>
  | Readonly<{ type: 'done'; report: PassReport }>
  | Readonly<{ type: 'failed'; message: string }>;

/** TombstonesAnswer is the director's answer to a `tombstones` request: the entries, or why they are unknown. */
export type TombstonesAnswer = Readonly<
  { type: 'tombstones'; id: number } & ({ ok: true; entries: readonly (readonly [string, number])[] } | { ok: false; message: string })
>;

/** StopPass asks the child to start no new delete or move and end the pass (the director is shutting down). */
export type StopPass = Readonly<{ type: 'stop' }>;

/** ToChild is every message the director sends a pass's child process. */
export type ToChild = SetupPass | TombstonesAnswer | LookupAnswer | StopPass;
