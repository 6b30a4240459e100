/**
 * The entry point of a reconciliation pass's child process (started by lib/reconcile/process.ts, one per pass, niced
 * from birth, usually a little ahead of its pass). It runs the same pass as the one-shot command (lib/reconcile.ts) in
 * a V8 of its own: its own heap, garbage collector, collector helper threads and event loop, so neither the pass's
 * work nor its collections take CPU from the director's pushes at their priority. It says `ready`, waits for its
 * setup on the IPC channel, builds the ring from the snapshot, reaches the nodes through its own NodeClient, asks the
 * director for the tombstones, and sends its log lines and counters back in batches (lib/reconcile/protocol.ts). When
 * the channel closes (the director ended, or was killed), it exits at once: a pass never goes on against the nodes
 * without a director. Started ahead of its pass and given none within the time on its command line (SETUP_WAIT_MS),
 * it exits too.
 */
import { createLogger } from '../logger';
import { createNodeClient } from '../nodes/client';
import { Placement } from '../placement';
import { COUNTED_METRICS, type CountedMetric, type ReconcileMetrics, createReconciler } from '../reconcile';
import type { FromChild, PassSetup, ToChild } from './protocol';
import { lookupThrough } from '../threads/lookup';

/** How often buffered log lines and counts go to the director: often enough to follow a pass, rarely enough to cost nothing. */
const FLUSH_MS = 100;
/** Buffered log text past which it goes at once. */
const FLUSH_BYTES = 256 * 1024;

/** Channel is the child's end of the IPC channel. */
type Channel = Readonly<{ send(message: FromChild): void; on(listener: (message: ToChild) => void): void }>;

/** createOutput buffers what the pass reports and sends it to the director in batches. */
function createOutput(channel: Channel) {
  let lines = '';
  let counts: Partial<Record<CountedMetric, number>> = {};
  let drained: [string, number][] = [];
  let durationS: number | undefined;
  let timer: NodeJS.Timeout | undefined;
  const flush = (): void => {
    clearTimeout(timer);
    timer = undefined;
    if (lines === '' && Object.keys(counts).length === 0 && drained.length === 0 && durationS === undefined) return;
    channel.send({ type: 'output', lines, counts, drained, ...(durationS === undefined ? {} : { durationS }) });
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

/** createRequests sends requests to the director and matches its answers to them by type and id. */
function createRequests(channel: Channel) {
  let next = 0;
  const waiting = new Map<string, (answer: ToChild) => void>();
  channel.on((answer) => {
    // The setup and the stop are main()'s.
    if (answer.type === 'stop' || answer.type === 'setup') return;
    const key = `${answer.type}/${answer.id}`;
    const settle = waiting.get(key);
    waiting.delete(key);
    settle?.(answer);
  });
  const ask = (request: Extract<FromChild, { id: number }>['type'], fields: object): Promise<ToChild> =>
    new Promise((resolve) => {
      const id = next++;
      waiting.set(`${request}/${id}`, resolve);
      channel.send({ type: request, id, ...fields } as FromChild);
    });

  /** tombstones reads the director's tombstones, one request per read. */
  const tombstones = {
    read: async (now: number): Promise<ReadonlyMap<string, number>> => {
      const answer = await ask('tombstones', { now });
      if (answer.type !== 'tombstones') throw new Error('a tombstone read got the wrong answer');
      if (!answer.ok) throw new Error(answer.message);
      return new Map(answer.entries);
    },
  };

  /** lookup resolves node names through the director's lookup (DNS discovery's resolver and its last good answers). */
  const lookup = lookupThrough(async (hostname, family) => {
    const answer = await ask('lookup', { hostname, family });
    return answer.type === 'lookup' ? answer : { type: 'lookup', id: -1, ok: false, message: 'a lookup got the wrong answer', code: undefined };
  });
  return { tombstones, lookup };
}

async function run(channel: Channel, setup: PassSetup, stop: AbortController): Promise<void> {
  const output = createOutput(channel);
  const placement = new Placement({ vnodes: setup.ring.vnodes, hashKey: setup.ring.hashKey });
  placement.update(setup.ring.nodes);
  const requests = createRequests(channel);
  const client = createNodeClient({
    timeoutMs: setup.client.timeoutMs,
    authorization: setup.client.authorization,
    ...(setup.client.lookupOnMain ? { lookup: requests.lookup } : {}),
  });
  const logger = createLogger(setup.logLevel, output.destination);
  const reconciler = createReconciler(placement, setup.options, output.metrics, logger, client, setup.tombstones ? requests.tombstones : undefined);
  const report = await reconciler.pass(stop.signal);
  output.flush();
  channel.send({ type: 'done', report });
}

/** main waits for the setup, runs the pass, and turns any failure into one `failed` message before exiting. */
function main(): void {
  const send = process.send?.bind(process);
  if (send === undefined) {
    process.stderr.write('lib/reconcile/child.js runs a pass for a director, over its IPC channel; it is not run by hand\n');
    process.exitCode = 2;
    return;
  }
  // Without its director the pass stops at once, between two requests or in the middle of one: every step of a pass
  // is idempotent, and the next pass (of this director restarted, or of a replica) finishes the work.
  process.once('disconnect', () => process.exit(0));
  // Started with no live channel (its director already gone): there is no pass to wait for.
  if (!process.connected) process.exit(0);
  // A child started ahead of its pass (prepared) that is never given one exits on its own: nothing lingers.
  const setupWaitMs = Number(process.argv[2]);
  const waiting = Number.isFinite(setupWaitMs) && setupWaitMs > 0 ? setTimeout(() => process.exit(0), setupWaitMs) : undefined;
  // A message sent as the channel closes fails here; the 'disconnect' that follows ends the process.
  process.on('error', () => undefined);
  const fail = (error: unknown): void => {
    const message = error instanceof Error ? error.message : String(error);
    // Sent, then exit: the director reads it before it sees the exit. A channel already gone just exits.
    try {
      send({ type: 'failed', message } satisfies FromChild, undefined, undefined, () => process.exit(1));
    } catch {
      process.exit(1);
    }
  };
  process.on('uncaughtException', fail);
  const channel: Channel = {
    // Nothing goes out on a closed channel: the 'disconnect' handler ends the process.
    send: (message) => void (process.connected && send(message)),
    on: (listener) => process.on('message', listener),
  };
  const stop = new AbortController();
  // The stop may come before the setup has been acted on: it is remembered either way.
  process.on('message', (message: ToChild) => {
    if (message?.type === 'stop') stop.abort();
  });
  process.once('message', (message: ToChild) => {
    clearTimeout(waiting);
    if (message?.type !== 'setup') {
      fail(new Error(`expected the pass's setup first, got ${JSON.stringify(message)?.slice(0, 100)}`));
      return;
    }
    run(channel, message.setup, stop).catch(fail);
  });
  channel.send({ type: 'ready' });
}

main();
