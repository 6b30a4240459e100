/**
 * The entry point of the fleet's worker thread (started by lib/fleet/thread.ts, one per director, for as long as it
 * runs). It lists the nodes, builds the fleet view and makes every answer of the read routes (lib/fleet.ts,
 * lib/http/fleet-answers.ts) on its own heap, garbage collector and event loop: listing 3 x 14 MiB, cutting and
 * parsing it, sorting 30,000 copies and copying 43 MiB of answer made the push thread's collector pause it for
 * 100-170 ms at a time. It answers each read with bytes it transfers to the main thread (lib/fleet/protocol.ts).
 */
import type { LookupFunction } from 'node:net';
import { getPriority, setPriority } from 'node:os';
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';

import type { FleetView } from '../core/fleet';
import type { Node } from '../core/node';
import { createFleet } from '../fleet';
import { type NodeHealth, defaultHealth, groupsBody, metricsRefusal, oldestListingOf, ownedBytes, pageHtml, serialiseMetrics, unlistedOf } from '../http/fleet-answers';
import { createNodeClient } from '../nodes/client';
import { BACKGROUND } from '../pace';
import { Placement } from '../placement';
import type { Facts, FleetAnswer, FleetRequest, FleetSetup, FromFleetWorker, LookupAnswer, ToFleetWorker } from './protocol';
import { lookupThrough } from '../threads/lookup';

/**
 * How much nicer than the process the fleet's thread runs (Linux nice steps). Less than the reconciliation worker's
 * 10: readers wait on this thread (a page is made here), and at 10 a busy push thread and a busy machine left it so
 * little CPU that the first read after start took 19 s instead of 3 (`npm run bench fleet`, replayed listings, load
 * average 5); at 5 the push thread still wins the CPU when both want it.
 */
const NICER = 5;

/** A /api/v1/metrics body being made or made: sent to the main thread once, then named by its id. */
type Body = { id: number; made: Promise<Buffer[]>; ready: boolean; sent: boolean; oldestListedAt: number; unlisted: string };

/** createLookup resolves node names through the main thread's lookup (DNS discovery's resolver and its last good answers). */
function createLookup(port: MessagePort): { lookup: LookupFunction; settle(answer: LookupAnswer): void } {
  let next = 0;
  const waiting = new Map<number, (answer: LookupAnswer) => void>();
  const lookup = lookupThrough(
    (hostname, family) =>
      new Promise((resolve) => {
        const id = next++;
        waiting.set(id, resolve);
        const ask: FromFleetWorker = { type: 'lookup', id, hostname, family };
        port.postMessage(ask);
      }),
  );
  const settle = (answer: LookupAnswer): void => {
    const done = waiting.get(answer.id);
    waiting.delete(answer.id);
    done?.(answer);
  };
  return { lookup, settle };
}

function run(port: MessagePort, setup: FleetSetup): void {
  if (process.platform === 'linux') {
    // Linux keeps a nice value per thread, and priority 0 names the calling thread: listing and building yield the
    // CPU to the main thread (pushes) when both want it.
    try {
      setPriority(0, Math.min(19, getPriority(0) + NICER));
    } catch {
      // not allowed or not supported: the thread runs at the process's priority
    }
  }
  const placement = new Placement({ vnodes: setup.vnodes, hashKey: setup.hashKey });
  let down: readonly Node[] = [];
  const lookups = createLookup(port);
  const client = createNodeClient({
    timeoutMs: setup.client.timeoutMs,
    authorization: setup.client.authorization,
    ...(setup.client.lookupOnMain ? { lookup: lookups.lookup } : {}),
  });
  const fleet = createFleet({
    placement,
    client,
    drain: setup.drain,
    down: () => down,
    ...(setup.cacheMs === undefined ? {} : { cacheMs: setup.cacheMs }),
    ...(setup.maxStaleMs === undefined ? {} : { maxStaleMs: setup.maxStaleMs }),
    onListing: (node, outcome) => port.postMessage({ type: 'listed', node: node.id, outcome } satisfies FromFleetWorker),
  });
  const bodies = new WeakMap<FleetView, Body>();
  let nextBody = 1;
  // The newest body made (sent or not): reads are served it while the current view's body is made. Not the newest
  // body sent: a reader polling past the cache finds a new view at every read, whose body is never ready yet, and was
  // served the same old body for a whole minute while newer ones were made and never sent.
  let lastMade: Body | undefined;

  /** learn takes the main thread's facts: the ring (rebuilt only when its members changed) and the nodes down. */
  const learn = (facts: Facts): NodeHealth => {
    placement.update(facts.members);
    down = facts.down;
    const table = new Map(facts.health);
    return (node, role) => table.get(`${role} ${node.id}`) ?? defaultHealth(node, role);
  };

  const answer = (message: FleetAnswer, transfer: ArrayBuffer[] = []): void => port.postMessage(message, transfer);

  /** send answers with `body`: named by id if the main thread has it, else its Buffers, transferred. */
  const send = async (id: number, body: Body): Promise<void> => {
    const chunks = await body.made;
    if (body.sent) return answer({ type: 'answer', id, kind: 'metrics', body: body.id, made: undefined });
    body.sent = true;
    const buffers = chunks.map((chunk) => chunk.buffer as ArrayBuffer);
    const bytes = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
    // Transferred: the main thread owns the bytes from here, and this thread keeps nothing of them.
    chunks.length = 0;
    answer(
      { type: 'answer', id, kind: 'metrics', body: body.id, made: { id: body.id, chunks: buffers, bytes, unlisted: body.unlisted, oldestListedAt: body.oldestListedAt } },
      buffers,
    );
  };

  const metrics = async (id: number): Promise<void> => {
    const view = await fleet.read();
    const refusal = metricsRefusal(view);
    if (refusal !== undefined) return answer({ type: 'answer', id, kind: 'refused', error: refusal });
    let body = bodies.get(view);
    if (body === undefined) {
      const made: Body = { id: nextBody++, made: serialiseMetrics(view.newest, BACKGROUND), ready: false, sent: false, oldestListedAt: oldestListingOf(view), unlisted: unlistedOf(view) };
      void made.made.then(() => {
        made.ready = true;
        if (lastMade === undefined || made.oldestListedAt >= lastMade.oldestListedAt) lastMade = made;
      });
      bodies.set(view, made);
      body = made;
    }
    if (!body.ready && lastMade !== undefined && Date.now() - lastMade.oldestListedAt < fleet.maxStaleMs) return send(id, lastMade);
    return send(id, body);
  };

  const handle = async (request: FleetRequest): Promise<void> => {
    const health = learn(request.facts);
    switch (request.type) {
      case 'metrics':
        return metrics(request.id);
      case 'groups': {
        const bytes = ownedBytes(groupsBody(await fleet.read(), request.query, request.nowMs, setup.staleAfterMs, health));
        return answer({ type: 'answer', id: request.id, kind: 'bytes', bytes: bytes.buffer as ArrayBuffer }, [bytes.buffer as ArrayBuffer]);
      }
      case 'page': {
        const bytes = ownedBytes(pageHtml(await fleet.read(), request.path, request.query, request.nowMs, setup.staleAfterMs, health));
        return answer({ type: 'answer', id: request.id, kind: 'bytes', bytes: bytes.buffer as ArrayBuffer }, [bytes.buffer as ArrayBuffer]);
      }
    }
  };

  port.on('message', (message: ToFleetWorker) => {
    if (message.type === 'lookup') return lookups.settle(message);
    if (message.type === 'ping') return port.postMessage({ type: 'pong' } satisfies FromFleetWorker);
    handle(message).catch((error: unknown) => answer({ type: 'answer', id: message.id, kind: 'failed', error: `the fleet view failed: ${(error as Error).message}` }));
  });
}

if (parentPort !== null) run(parentPort, workerData as FleetSetup);
