/**
 * Reconciliation passes off the push thread. A pass over tens of thousands of groups allocates hundreds of MiB of
 * short-lived objects (listings, families, 20,000 requests); on the thread that answers pushes, collecting them
 * paused every push for tens of milliseconds at a time. Here each pass runs in a worker thread of its own
 * (lib/reconcile/worker.ts): its own heap, garbage collector and event loop, started for the pass and ended after it,
 * so its memory goes back when it ends. The main thread keeps the ring and the tombstones: it hands the worker a
 * snapshot of the ring, answers its tombstone reads, writes its log lines and adds its counts to the director's
 * metrics (lib/reconcile/protocol.ts). A worker that throws, exits or runs out of memory is a failed pass: pass()
 * rejects with one line, the errors counter goes up, and the process goes on.
 */
import type { LookupFunction } from 'node:net';
import { join } from 'node:path';
import { type ResourceLimits, Worker } from 'node:worker_threads';

import pino, { type Logger } from 'pino';

import type { LogLevel } from '../config';
import type { Placement } from '../placement';
import { COUNTED_METRICS, type PassReport, type ReconcileMetrics, type ReconcileOptions, type Reconciler, type TombstoneReader } from '../reconcile';
import type { FromWorker, PassSetup, StopPass, TombstonesAnswer } from './protocol';
import { answerLookup } from '../threads/lookup';

/** WORKER_FILE is the compiled worker entry point, beside this file. */
const WORKER_FILE = join(__dirname, 'worker.js');

/** ThreadedReconcilerOptions configures createThreadedReconciler. */
export type ThreadedReconcilerOptions = Readonly<{
  /** The placement whose ring each pass reconciles against (read once, when the pass starts). */
  placement: Placement;
  /** The ring's vnodes per node (--ring.vnodes), so the worker builds the same ring. */
  vnodes: number;
  options: ReconcileOptions;
  client: Readonly<{ timeoutMs: number; authorization: string | undefined }>;
  logLevel: LogLevel;
  metrics: ReconcileMetrics;
  /** The director's logger: the worker's lines are written to its destination. */
  logger: Logger;
  tombstones: TombstoneReader | undefined;
  /** How node names resolve (DNS discovery's resolver), when not the system's: the worker's lookups come here. */
  lookup?: LookupFunction | undefined;
  /** The worker's entry point. @default lib/reconcile/worker.js (specs start a misbehaving one) */
  workerFile?: string;
  /** The worker's heap limits (node:worker_threads); Node's defaults when absent. */
  resourceLimits?: ResourceLimits;
}>;

/** LogDestination is where a pino logger writes its lines. */
type LogDestination = { write(text: string): unknown };

/**
 * createThreadedReconciler returns a Reconciler whose passes each run in a worker thread. Passes may overlap (each
 * has its own worker); the director runs one at a time.
 */
export function createThreadedReconciler(settings: ThreadedReconcilerOptions): Reconciler {
  const { placement, metrics, logger, tombstones } = settings;
  // pino.symbols.streamSym is pino's documented handle on a logger's destination: the worker formats its lines with
  // the same options (lib/logger.ts), and here they are written out unchanged.
  const destination = (logger as unknown as Record<symbol, LogDestination | undefined>)[pino.symbols.streamSym] ?? process.stdout;


  const answerTombstones = (worker: Worker, id: number, now: number): void => {
    const send = (answer: TombstonesAnswer): void => worker.postMessage(answer);
    if (tombstones === undefined) {
      send({ type: 'tombstones', id, ok: true, entries: [] });
      return;
    }
    tombstones.read(now).then(
      (map) => send({ type: 'tombstones', id, ok: true, entries: [...map] }),
      (error: unknown) => send({ type: 'tombstones', id, ok: false, message: (error as Error).message }),
    );
  };

  const pass = (stop?: AbortSignal): Promise<PassReport> =>
    new Promise((resolve, reject) => {
      const setup: PassSetup = {
        ring: { nodes: placement.ring.nodes, vnodes: settings.vnodes, hashKey: placement.hashKey },
        options: settings.options,
        client: { ...settings.client, lookupOnMain: settings.lookup !== undefined },
        logLevel: settings.logLevel,
        tombstones: tombstones !== undefined,
      };
      let settled = false;
      const fail = (worker: Worker | undefined, why: string): void => {
        if (settled) return;
        settled = true;
        metrics.errors.inc();
        metrics.passes.inc();
        void worker?.terminate();
        reject(new Error(`the reconciliation pass failed in its worker thread: ${why}`));
      };
      let worker: Worker;
      try {
        worker = new Worker(settings.workerFile ?? WORKER_FILE, {
          workerData: setup,
          ...(settings.resourceLimits === undefined ? {} : { resourceLimits: settings.resourceLimits }),
        });
      } catch (error) {
        fail(undefined, (error as Error).message);
        return;
      }
      // Stopping is the worker's to do, between requests: a thread ended mid-move would leave a group on two nodes.
      const askToStop = (): void => {
        if (!settled) worker.postMessage({ type: 'stop' } satisfies StopPass);
      };
      if (stop?.aborted === true) askToStop();
      else stop?.addEventListener('abort', askToStop, { once: true });
      worker.once('exit', () => stop?.removeEventListener('abort', askToStop));
      worker.on('message', (message: FromWorker) => {
        if (settled) return;
        switch (message?.type) {
          case 'output':
            if (message.lines !== '') destination.write(message.lines);
            for (const name of COUNTED_METRICS) {
              const by = message.counts[name];
              if (by !== undefined && by > 0) metrics[name].inc(by);
            }
            for (const [node, value] of message.drained) metrics.drainedEmpty.set({ node }, value);
            if (message.durationS !== undefined) metrics.duration.set(message.durationS);
            return;
          case 'tombstones':
            answerTombstones(worker, message.id, message.now);
            return;
          case 'lookup':
            answerLookup(settings.lookup, message.id, message.hostname, message.family, (answer) => worker.postMessage(answer));
            return;
          case 'done':
            settled = true;
            void worker.terminate();
            resolve(message.report);
            return;
          default:
            fail(worker, `unexpected message ${JSON.stringify(message)?.slice(0, 100)}`);
        }
      });
      worker.on('messageerror', (error) => fail(worker, error.message));
      worker.on('error', (error: NodeJS.ErrnoException) => {
        const outOfMemory = error.code === 'ERR_WORKER_OUT_OF_MEMORY';
        fail(worker, outOfMemory ? `it needed more memory than --reconcile.max-heap allows (${error.message})` : error.message ?? String(error));
      });
      worker.on('exit', (code) => fail(worker, `the worker exited (code ${code}) before the pass ended`));
    });

  return Object.freeze({ pass });
}
