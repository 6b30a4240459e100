/**
 * The entry point of a reconciliation pass's worker thread (started by lib/reconcile/thread.ts, one per pass). It
 * runs the same pass as the one-shot command (lib/reconcile.ts) on its own heap, garbage collector and event loop,
 * so the pass's listings and moves never pause the main thread that answers pushes. It builds the ring from the
 * snapshot it was given, reaches the nodes through its own NodeClient, asks the main thread for the tombstones, and
 * sends its log lines and counters back in batches (lib/reconcile/protocol.ts).
 */
import { getPriority, setPriority } from 'node:os';
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';

import { createLogger } from '../logger';
import { createNodeClient } from '../nodes/client';
import { Placement } from '../placement';
import { COUNTED_METRICS, type CountedMetric, type ReconcileMetrics, createReconciler } from '../reconcile';
import type { FromWorker, PassSetup, ToWorker } from './protocol';
import { lookupThrough } from '../threads/lookup';

/** How often buffered log lines and counts go to the main thread: often enough to follow a pass, rarely enough to cost nothing. */
const FLUSH_MS = 100;
/** How much nicer than the process the pass's thread runs (Linux nice steps; 19 at most). */
const NICER = 10;
/** Buffered log text past which it goes at once. */
const FLUSH_BYTES = 256 * 1024;

/** createOutput buffers what the pass reports and sends it to the main thread in batches. */
function createOutput(port: MessagePort) {
  let lines = '';
  let counts: Partial<Record<CountedMetric, number>> = {};
  let drained: [string, number][] = [];
  let durationS: number | undefined;
  let timer: NodeJS.Timeout | undefined;
  const flush = (): void => {
    clearTimeout(timer);
    timer = undefined;
    if (lines === '' && Object.keys(counts).length === 0 && drained.length === 0 && durationS === undefined) return;
    const message: FromWorker = { type: 'output', lines, counts, drained, ...(durationS === undefined ? {} : { durationS }) };
    port.postMessage(message);
    lines = '';
    counts = {};
    drained = [];
    durationS = undefined;
  };
  const later = (): void => {
    timer ??= setTimeout(flush, FLUSH_MS);
  };
  const count = (name: CountedMetric) => ({
    inc: (by = 1): void => {
      counts[name] = (counts[name] ?? 0) + by;
      later();
    },
  });
  const metrics = {
    ...(Object.fromEntries(COUNTED_METRICS.map((name) => [name, count(name)])) as Record<CountedMetric, { inc(by?: number): void }>),
    duration: { set: (value: number): void => void (durationS = value) },
    drainedEmpty: { set: (labels: { node: string }, value: number): void => void drained.push([labels.node, value]) },
  } satisfies ReconcileMetrics;
  const destination = {
    write: (line: string): void => {
      lines += line;
      if (lines.length >= FLUSH_BYTES) flush();
      else later();
    },
  };
  return { metrics, destination, flush };
}

/** createRequests sends requests to the main thread and matches its answers to them by type and id. */
function createRequests(port: MessagePort) {
  let next = 0;
  const waiting = new Map<string, (answer: ToWorker) => void>();
  const stop = new AbortController();
  port.on('message', (answer: ToWorker) => {
    if (answer.type === 'stop') {
      stop.abort();
      return;
    }
    const key = `${answer.type}/${answer.id}`;
    const settle = waiting.get(key);
    waiting.delete(key);
    settle?.(answer);
  });
  const ask = (request: Extract<FromWorker, { id: number }>['type'], fields: object): Promise<ToWorker> =>
    new Promise((resolve) => {
      const id = next++;
      waiting.set(`${request}/${id}`, resolve);
      port.postMessage({ type: request, id, ...fields });
    });

  /** tombstones reads the main thread's tombstones, one request per read. */
  const tombstones = {
    read: async (now: number): Promise<ReadonlyMap<string, number>> => {
      const answer = await ask('tombstones', { now });
      if (answer.type !== 'tombstones') throw new Error('a tombstone read got the wrong answer');
      if (!answer.ok) throw new Error(answer.message);
      return new Map(answer.entries);
    },
  };

  /** lookup resolves node names through the main thread's lookup (DNS discovery's resolver and its last good answers). */
  const lookup = lookupThrough(async (hostname, family) => {
    const answer = await ask('lookup', { hostname, family });
    return answer.type === 'lookup' ? answer : { type: 'lookup', id: -1, ok: false, message: 'a lookup got the wrong answer', code: undefined };
  });
  return { tombstones, lookup, stop: stop.signal };
}

async function run(port: MessagePort, setup: PassSetup): Promise<void> {
  if (process.platform === 'linux') {
    // Linux keeps a nice value per thread, and priority 0 names the calling thread: the pass yields the CPU to the
    // main thread (pushes) and everything else on the machine, without slowing down the main thread itself.
    try {
      setPriority(0, Math.min(19, getPriority(0) + NICER));
    } catch {
      // not allowed or not supported: the pass runs at the process's priority
    }
  }
  const output = createOutput(port);
  const placement = new Placement({ vnodes: setup.ring.vnodes, hashKey: setup.ring.hashKey });
  placement.update(setup.ring.nodes);
  const requests = createRequests(port);
  const client = createNodeClient({
    timeoutMs: setup.client.timeoutMs,
    authorization: setup.client.authorization,
    ...(setup.client.lookupOnMain ? { lookup: requests.lookup } : {}),
  });
  const logger = createLogger(setup.logLevel, output.destination);
  const reconciler = createReconciler(placement, setup.options, output.metrics, logger, client, setup.tombstones ? requests.tombstones : undefined);
  const report = await reconciler.pass(requests.stop);
  output.flush();
  const done: FromWorker = { type: 'done', report };
  port.postMessage(done);
}

if (parentPort !== null) {
  // A rejection becomes an uncaught exception, which ends this thread only: the main thread sees a failed pass.
  void run(parentPort, workerData as PassSetup).catch((error: unknown) => {
    throw error;
  });
}
