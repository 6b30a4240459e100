/**
 * The messages between the director's main thread and the fleet's worker thread (lib/fleet/thread.ts starts it,
 * lib/fleet/worker.ts runs it). Plain data and transferred ArrayBuffers only: everything crosses threads by structured
 * clone, and the answers' bytes are transferred (moved, not copied), so the main thread never deserialises a view.
 *
 * main -> worker, once, as workerData: a FleetSetup.
 * main -> worker: one request per read (`metrics`, `groups`, `page`), each with the facts only the main thread knows
 *   (the ring's members, the nodes health checks took off it, each node's health as the page shows it); and answers
 *   to the worker's `lookup` requests (with DNS discovery, node names resolve through the main thread's resolver).
 * worker -> main: one `answer` per request, with its id; `listed` after each listing (counted on the main thread's
 *   registry); `lookup` requests; `pong` for each `ping` (sent while reads wait: a worker that says nothing for
 *   long is stuck, and is ended like a failed one).
 * A worker that throws, exits or sends anything else has failed: the main thread answers the pending reads with 503s.
 */
import type { FleetQuery } from '../core/fleet';
import type { HashKeyMode } from '../core/key-hash';
import type { Node } from '../core/node';
import type { LookupAnswer } from '../threads/lookup';

export type { LookupAnswer } from '../threads/lookup';

/** FleetSetup is what the fleet's worker is started with. */
export type FleetSetup = Readonly<{
  /** How the ring is built (the worker builds the same ring from the members each request names). */
  vnodes: number;
  hashKey: HashKeyMode;
  /** Nodes leaving the ring (`--reconcile.drain`) whose groups are still read. */
  drain: readonly Node[];
  /** FleetOptions.cacheMs and maxStaleMs (lib/fleet.ts); the defaults when undefined. */
  cacheMs: number | undefined;
  maxStaleMs: number | undefined;
  /** A group whose last push is older than this is marked stale. */
  staleAfterMs: number;
  /** The NodeClient's settings, as the reconciliation worker gets them (lib/reconcile/protocol.ts PassSetup). */
  client: Readonly<{ timeoutMs: number; authorization: string | undefined; lookupOnMain: boolean }>;
}>;

/** Facts is what the main thread knows and the worker does not, as of one request. */
export type Facts = Readonly<{
  /** The ring's members, in ring order. */
  members: readonly Node[];
  /** Nodes discovery names that health checks took off the ring. */
  down: readonly Node[];
  /** Each node's health as the page shows it, keyed by `${role} ${node.id}`. */
  health: readonly (readonly [string, string])[];
}>;

/** FleetRead is one read the main thread asks the worker to answer. */
export type FleetRead = Readonly<
  | { type: 'metrics' }
  | { type: 'groups'; query: FleetQuery; nowMs: number }
  | { type: 'page'; path: string; query: FleetQuery; nowMs: number }
>;

/** FleetRequest is a read as sent: with its id (its answer carries it) and the main thread's facts. */
export type FleetRequest = FleetRead & Readonly<{ id: number; facts: Facts }>;

/** Ping asks the worker for a sign of life while reads wait on it; it answers `pong` from its event loop. */
export type Ping = Readonly<{ type: 'ping' }>;

/** ToFleetWorker is every message the main thread sends the fleet's worker. */
export type ToFleetWorker = FleetRequest | LookupAnswer | Ping;

/**
 * MetricsBody is a /api/v1/metrics body the worker made: its Buffers' ArrayBuffers, transferred. Sent once; later
 * answers name it by id.
 */
export type MetricsBody = Readonly<{ id: number; chunks: readonly ArrayBuffer[]; bytes: number; unlisted: string; oldestListedAt: number }>;

/** FleetAnswer is the worker's answer to one request. */
export type FleetAnswer = Readonly<
  { type: 'answer'; id: number } & (
    | { kind: 'metrics'; body: number; made: MetricsBody | undefined }
    /** /api/v1/metrics cannot be served: no node, or none could be listed. */
    | { kind: 'refused'; error: string }
    /** The body of a groups or page answer, transferred. */
    | { kind: 'bytes'; bytes: ArrayBuffer }
    /** The answer could not be made (a bug): the main thread answers 503 with this line. */
    | { kind: 'failed'; error: string }
  )
>;

/** FromFleetWorker is every message the fleet's worker sends. */
export type FromFleetWorker =
  | FleetAnswer
  | Readonly<{ type: 'listed'; node: string; outcome: 'ok' | 'error' }>
  | Readonly<{ type: 'lookup'; id: number; hostname: string; family: number }>
  | Readonly<{ type: 'pong' }>;
