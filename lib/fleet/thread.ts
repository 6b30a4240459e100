/**
 * The fleet's reads off the push thread. Listing the nodes (3 x 14 MiB for 30,000 groups), cutting and parsing the
 * listings, sorting the copies and copying the 43 MiB /api/v1/metrics answer all allocate; on the thread that answers
 * pushes, collecting that garbage paused it for 100-170 ms at a time, however finely the work itself was sliced. Here
 * that work runs in one long-lived worker thread (lib/fleet/worker.ts): its own heap, collector and event loop, niced
 * like the reconciliation worker. The main thread keeps what only it knows (the ring, health, the clock of the page)
 * and sends it with each read; the worker answers with bytes it transfers, never with objects to deserialise:
 * /api/v1/metrics as the 128 KiB Buffers every reader is written from (sent once per view, then named by id), a page
 * or a groups answer as one Buffer.
 *
 * A worker that throws, exits, runs out of memory or says something unexpected has failed: every read waiting on it
 * rejects with one line (the routes answer 503), the failure is logged once, and the next read after `retryMs` starts
 * a new worker. The process goes on.
 */
import type { LookupFunction } from 'node:net';
import { join } from 'node:path';
import { type ResourceLimits, Worker } from 'node:worker_threads';

import type { Registry } from 'prom-client';
import type { Logger } from 'pino';

import type { FleetQuery } from '../core/fleet';
import type { Node } from '../core/node';
import { fleetNodes, listingsCounter } from '../fleet';
import { type FleetAnswers, type MetricsAnswer, type NodeHealth, defaultHealth } from '../http/fleet-answers';
import type { Placement } from '../placement';
import type { Facts, FleetAnswer, FleetRead, FleetRequest, FleetSetup, FromFleetWorker, MetricsBody, Ping } from './protocol';
import { answerLookup } from '../threads/lookup';

/** WORKER_FILE is the compiled worker entry point, beside this file. */
const WORKER_FILE = join(__dirname, 'worker.js');

/** How long after a failure reads are refused before a new worker is started: a worker that cannot start is not restarted per read. */
const RETRY_MS = 5000;
/** How often a worker that reads wait on is asked for a sign of life, and how long it may stay silent before it is ended as stuck. */
const HEARTBEAT_MS = 5000;
const STUCK_MS = 30_000;

/** FleetThreadOptions configures createFleetThread. */
export type FleetThreadOptions = Readonly<{
  placement: Placement;
  /** The ring's vnodes per node (--ring.vnodes), so the worker builds the same ring. */
  vnodes: number;
  /** Nodes leaving the ring (`--reconcile.drain`) whose groups are still read. */
  drain: readonly Node[];
  /** Nodes discovery names that health checks took off the ring. @default none */
  down?: () => readonly Node[];
  /** @default defaultHealth */
  health?: NodeHealth;
  staleAfterMs: number;
  /** FleetOptions.cacheMs and maxStaleMs (lib/fleet.ts). */
  cacheMs?: number | undefined;
  maxStaleMs?: number | undefined;
  client: Readonly<{ timeoutMs: number; authorization: string | undefined }>;
  /** How node names resolve (DNS discovery's resolver), when not the system's: the worker's lookups come here. */
  lookup?: LookupFunction | undefined;
  logger: Logger;
  /** Where listings are counted (pgw_director_fleet_listings_total); none by default. */
  registry?: Registry;
  /** The worker's entry point. @default lib/fleet/worker.js (specs start a misbehaving one) */
  workerFile?: string;
  /** The worker's heap limits (node:worker_threads); Node's defaults when absent. */
  resourceLimits?: ResourceLimits;
  /** How long reads are refused after the worker failed. @default RETRY_MS */
  retryMs?: number;
  /**
   * While reads wait, the worker is pinged every `heartbeatMs`; one that sends nothing for `stuckMs` (its event loop
   * never turns: a bug) is ended and the reads fail like after a crash. Its loop turns every few milliseconds even
   * while it lists and builds. @default HEARTBEAT_MS and STUCK_MS
   */
  heartbeatMs?: number;
  stuckMs?: number;
}>;

/** FleetThread is FleetAnswers made on the fleet's worker thread; close ends the thread. */
export type FleetThread = FleetAnswers & Readonly<{ close(): Promise<void> }>;

type Pending = { resolve(answer: FleetAnswer): void; reject(error: Error): void };
type HeldBody = { chunks: readonly Buffer[]; bytes: number; unlisted: string; oldestListedAt: number };

/** createFleetThread returns the answers of the read routes, made on a worker thread started at the first read. */
export function createFleetThread(settings: FleetThreadOptions): FleetThread {
  const { placement, logger } = settings;
  const health = settings.health ?? defaultHealth;
  const retryMs = settings.retryMs ?? RETRY_MS;
  const heartbeatMs = settings.heartbeatMs ?? HEARTBEAT_MS;
  const stuckMs = settings.stuckMs ?? STUCK_MS;
  const listings = settings.registry === undefined ? undefined : listingsCounter(settings.registry);
  const setup: FleetSetup = {
    vnodes: settings.vnodes,
    hashKey: placement.hashKey,
    drain: settings.drain,
    cacheMs: settings.cacheMs,
    maxStaleMs: settings.maxStaleMs,
    staleAfterMs: settings.staleAfterMs,
    client: { ...settings.client, lookupOnMain: settings.lookup !== undefined },
  };
  let worker: Worker | undefined;
  let failure: { at: number; message: string } | undefined;
  let closed = false;
  let nextId = 0;
  const pending = new Map<number, Pending>();
  // The /api/v1/metrics bodies this worker sent, by id: the newest two (a read may name the one before the newest).
  const bodies = new Map<number, HeldBody>();
  let newest: number | undefined;
  // When the worker last said anything, and the timer that pings it while reads wait.
  let lastHeard = 0;
  let heartbeat: NodeJS.Timeout | undefined;

  const fail = (failed: Worker, why: string, log: boolean): void => {
    if (worker !== failed) return;
    worker = undefined;
    clearInterval(heartbeat);
    heartbeat = undefined;
    const message = `the fleet view failed in its worker thread: ${why}`;
    failure = { at: Date.now(), message };
    if (log) logger.error(message);
    void failed.terminate();
    bodies.clear();
    newest = undefined;
    const waiting = [...pending.values()];
    pending.clear();
    for (const read of waiting) read.reject(new Error(message));
  };


  const start = (): Worker => {
    if (closed) throw new Error('the director is shutting down');
    if (worker !== undefined) return worker;
    if (failure !== undefined && Date.now() - failure.at < retryMs) throw new Error(failure.message);
    let started: Worker;
    try {
      started = new Worker(settings.workerFile ?? WORKER_FILE, {
        workerData: setup,
        ...(settings.resourceLimits === undefined ? {} : { resourceLimits: settings.resourceLimits }),
      });
    } catch (error) {
      failure = { at: Date.now(), message: `the fleet view failed in its worker thread: ${(error as Error).message}` };
      logger.error(failure.message);
      throw new Error(failure.message);
    }
    worker = started;
    // Reads waiting on it keep the process busy anyway; an idle worker must not keep it alive.
    started.unref();
    started.on('message', (message: FromFleetWorker) => {
      lastHeard = Date.now();
      switch (message?.type) {
        case 'answer': {
          const read = pending.get(message.id);
          pending.delete(message.id);
          read?.resolve(message);
          return;
        }
        case 'listed':
          listings?.inc({ node: message.node, outcome: message.outcome });
          return;
        case 'lookup':
          answerLookup(settings.lookup, message.id, message.hostname, message.family, (answer) => started.postMessage(answer));
          return;
        case 'pong':
          return;
        default:
          fail(started, `unexpected message ${JSON.stringify(message)?.slice(0, 100)}`, true);
      }
    });
    // Its silence counts from when it runs: starting a thread on a loaded machine is no sign of a stuck one.
    started.on('online', () => (lastHeard = Date.now()));
    started.on('messageerror', (error) => fail(started, error.message, true));
    started.on('error', (error: NodeJS.ErrnoException) => {
      const outOfMemory = error.code === 'ERR_WORKER_OUT_OF_MEMORY';
      fail(started, outOfMemory ? `it ran out of memory (${error.message})` : error.message ?? String(error), true);
    });
    started.on('exit', (code) => fail(started, `the worker exited (code ${code})`, !closed));
    heartbeat = setInterval(() => {
      if (pending.size === 0) return;
      if (Date.now() - lastHeard > stuckMs) fail(started, `it answered nothing for ${stuckMs} ms (stuck)`, true);
      else started.postMessage({ type: 'ping' } satisfies Ping);
    }, heartbeatMs);
    heartbeat.unref();
    return started;
  };

  const facts = (): Facts => {
    const members = placement.ring.nodes;
    const down = settings.down?.() ?? [];
    return {
      members,
      down,
      health: fleetNodes(members, settings.drain, down).map(({ node, role }) => [`${role} ${node.id}`, health(node, role)] as const),
    };
  };

  /** ask sends one read and resolves with its answer; rejects with one line when the worker cannot answer. */
  const ask = (read: FleetRead): Promise<FleetAnswer> =>
    new Promise((resolve, reject) => {
      let to: Worker;
      try {
        to = start();
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      const id = nextId++;
      // A worker idle until now owes no sign of life for the time it had nothing to do.
      if (pending.size === 0) lastHeard = Date.now();
      pending.set(id, { resolve, reject });
      const request: FleetRequest = { ...read, id, facts: facts() };
      to.postMessage(request);
    });

  const bytesOf = (answer: FleetAnswer): Buffer => {
    if (answer.kind === 'bytes') return Buffer.from(answer.bytes);
    throw new Error(answer.kind === 'failed' ? answer.error : `the fleet view failed in its worker thread: unexpected answer ${answer.kind}`);
  };

  const metrics = async (): Promise<MetricsAnswer> => {
    const answer = await ask({ type: 'metrics' });
    if (answer.kind === 'refused') return { ok: false, status: 503, error: answer.error };
    if (answer.kind !== 'metrics') throw new Error(answer.kind === 'failed' ? answer.error : `the fleet view failed in its worker thread: unexpected answer ${answer.kind}`);
    if (answer.made !== undefined) hold(answer.made);
    const body = bodies.get(answer.body) ?? (newest === undefined ? undefined : bodies.get(newest));
    if (body === undefined) throw new Error('the fleet view failed in its worker thread: it named an answer it never sent');
    return { ok: true, chunks: body.chunks, bytes: body.bytes, unlisted: body.unlisted };
  };

  const hold = (made: MetricsBody): void => {
    bodies.set(made.id, { chunks: made.chunks.map((chunk) => Buffer.from(chunk)), bytes: made.bytes, unlisted: made.unlisted, oldestListedAt: made.oldestListedAt });
    const current = newest === undefined ? undefined : bodies.get(newest);
    if (current === undefined || made.oldestListedAt >= current.oldestListedAt) newest = made.id;
    for (const id of bodies.keys()) if (bodies.size > 2 && id !== newest && id !== made.id) bodies.delete(id);
  };

  return Object.freeze({
    metrics,
    groups: async (query: FleetQuery, nowMs: number) => bytesOf(await ask({ type: 'groups', query, nowMs })),
    page: async (path: string, query: FleetQuery, nowMs: number) => bytesOf(await ask({ type: 'page', path, query, nowMs })),
    async close() {
      closed = true;
      const running = worker;
      if (running === undefined) return;
      fail(running, 'the director is shutting down', false);
      await running.terminate();
    },
  });
}
