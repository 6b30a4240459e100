/**
 * Readers' routes over the fleet view: `GET /api/v1/metrics` in the Pushgateway's own shape (the newest copy of every
 * group of the fleet, listed once), `GET /api/v1/fleet/groups` (every copy, where it sits, filters and pages) and the
 * fleet page at `/` and `/groups`. All read-only. The large answer, /api/v1/metrics, is the nodes' own element texts
 * copied into a few Buffers once per view, taking turns on the event loop with the other background reads; every reader is written the same
 * Buffers with back-pressure, so many readers of a large fleet cost one copy and never hold pushes.
 */
import type { ServerResponse } from 'node:http';

import { type Request, type Response, Router } from 'express';

import { type FleetCopy, type FleetQuery, type FleetView, type NodeRole, filterCopies, isStale, parseFleetQuery } from '../core/fleet';
import type { Node } from '../core/node';
import type { Fleet } from '../fleet';
import { BACKGROUND, type Pacer } from '../pace';
import { FLEET_PAGE_CSP, type NodeLine, renderFleetPage } from './fleet-page';
import { sendText } from './text';

/** NodeHealth tells how a node is doing, as the page shows it; health checks plug in here. */
export type NodeHealth = (node: Node, role: NodeRole) => string;

/** defaultHealth knows only what placement knows: a member is `in ring`, a node off it is `draining`. */
export const defaultHealth: NodeHealth = (_node, role) => (role === 'member' ? 'in ring' : role);

/** FleetRoutesOptions configures createFleetRouter. */
export type FleetRoutesOptions = Readonly<{
  fleet: Fleet;
  /** A group whose last push is older than this is marked stale. */
  staleAfterMs: number;
  /** Serve the page at `/` and `/groups`. */
  ui: boolean;
  /** @default defaultHealth */
  health?: NodeHealth;
  /** The clock, in milliseconds. @default Date.now */
  now?: () => number;
  /** Hands out slices of the event loop to rendering /api/v1/metrics. @default BACKGROUND (lib/pace.ts) */
  pacer?: Pacer;
}>;

/** Rows per page of the fleet page, and copies per answer of /api/v1/fleet/groups when no limit is given. */
const PAGE_ROWS = 100;
const API_LIMIT = 1000;
/**
 * The answer is cut into Buffers of about this size, each written to a reader's socket in one call. Small enough
 * that the writes one turn of the loop makes stay short when many readers' sockets drain at once (on loopback the
 * kernel delivers while the director writes: 1 MiB chunks held the loop tens of ms with 7 readers), large enough to
 * cost few calls.
 */
const CHUNK_BYTES = 128 * 1024;

const METRICS_HEAD = Buffer.from('{"status":"success","data":[');
const METRICS_TAIL = Buffer.from(']}');
const COMMA = Buffer.from(',');

/**
 * A serialised /api/v1/metrics answer: made once per view whoever asks; `chunks` (and their total `bytes`) set once
 * it is ready. Every reader writes the same Buffers: nothing is copied or converted per reader.
 */
type MetricsBody = { made: Promise<readonly Buffer[]>; chunks?: readonly Buffer[]; bytes?: number; oldestListedAt: number; unlisted: string };

/**
 * serialiseMetrics renders the `/api/v1/metrics` answer as CHUNK_BYTES Buffers: each group's element exactly as its
 * node sent it (FleetGroup.json), comma-separated inside the Pushgateway's envelope. Copying bytes is all it does, and
 * it yields to the event loop between slices all the same.
 */
async function serialiseMetrics(copies: readonly FleetCopy[], pacer: Pacer): Promise<readonly Buffer[]> {
  const chunks: Buffer[] = [];
  let parts: Uint8Array[] = [METRICS_HEAD];
  let size = METRICS_HEAD.length;
  for (let i = 0; i < copies.length; i++) {
    const json = (copies[i] as FleetCopy).group.json;
    if (i > 0) parts.push(COMMA);
    parts.push(json);
    size += json.length + (i > 0 ? 1 : 0);
    if (size >= CHUNK_BYTES) {
      chunks.push(Buffer.concat(parts, size));
      parts = [];
      size = 0;
    }
    if (i % 256 === 255 && pacer.due()) await pacer.next();
  }
  parts.push(METRICS_TAIL);
  chunks.push(Buffer.concat(parts, size + METRICS_TAIL.length));
  return chunks;
}

/**
 * writeChunks writes a body with back-pressure, taking turns on the event loop through `pacer`; stops when the client
 * went away. On loopback (or any link whose socket buffer is large) the kernel takes a chunk at once and `drain`
 * follows on the same turn (Node's response corks each write until the next tick): without the pacer one reader took
 * megabytes in a single turn, and seven readers together held the loop for 50-130 ms (CPU profiles of
 * `npm run bench fleet`: the socket writes themselves).
 */
async function writeChunks(res: ServerResponse, chunks: readonly Buffer[], pacer: Pacer): Promise<void> {
  for (const chunk of chunks) {
    if (res.destroyed) return;
    if (!res.write(chunk)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.on('drain', done);
        res.on('close', done);
      });
    }
    if (pacer.due()) await pacer.next();
  }
  res.end();
}

function unlisted(view: FleetView): string[] {
  return view.nodes.filter((line) => !line.reachable).map((line) => `${line.node.id} (${line.error ?? 'unreachable'})`);
}

function apiError(res: Response, status: number, errorType: string, error: string): void {
  res.status(status).json({ status: 'error', errorType, error });
}

function badQuery(res: Response, query: Request['query'], defaultLimit: number): FleetQuery | undefined {
  const parsed = parseFleetQuery(query, defaultLimit);
  if (!parsed.ok) {
    apiError(res, 400, 'bad_data', parsed.message);
    return undefined;
  }
  return parsed.query;
}

function selectCopies(view: FleetView, query: FleetQuery, nowMs: number, staleAfterMs: number): readonly FleetCopy[] {
  const unfiltered = query.job === undefined && query.node === undefined && !query.misplaced && !query.stale && Object.keys(query.labels).length === 0;
  if (unfiltered) return view.copies;
  return filterCopies(view.copies, {
    ...(query.job === undefined ? {} : { job: query.job }),
    labels: query.labels,
    ...(query.node === undefined ? {} : { node: query.node }),
    misplaced: query.misplaced,
    ...(query.stale ? { stale: { nowMs, staleAfterMs } } : {}),
  });
}

/** createFleetRouter returns the routes; mount it on the app before its 404. */
export function createFleetRouter(options: FleetRoutesOptions): Router {
  const { fleet, staleAfterMs } = options;
  const health = options.health ?? defaultHealth;
  const now = options.now ?? Date.now;
  const pacer = options.pacer ?? BACKGROUND;
  const router = Router();
  const metricsBodies = new WeakMap<FleetView, MetricsBody>();
  // The last answer made, served while the next view's answer is being serialised (as long as it is not too old).
  let lastReady: MetricsBody | undefined;

  router.get('/api/v1/metrics', async (_req, res) => {
    const view = await fleet.read();
    if (view.nodes.length === 0) return apiError(res, 503, 'unavailable', 'no pushgateway nodes available');
    const failed = unlisted(view);
    if (failed.length === view.nodes.length) {
      return apiError(res, 503, 'unavailable', `no pushgateway could be listed: ${failed.join(', ')}`);
    }
    let body = metricsBodies.get(view);
    if (body === undefined) {
      const made = serialiseMetrics(view.newest, pacer);
      const created: MetricsBody = {
        made,
        oldestListedAt: Math.min(...view.nodes.map((line) => line.listedAt)),
        // The Pushgateway's shape has no place for a partial answer: a header names the nodes missing from it.
        unlisted: view.nodes.filter((l) => !l.reachable).map((l) => l.node.id).join(', '),
      };
      void made.then((chunks) => {
        created.chunks = chunks;
        created.bytes = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
        if (lastReady === undefined || created.oldestListedAt >= lastReady.oldestListedAt) lastReady = created;
      });
      metricsBodies.set(view, created);
      body = created;
    }
    const fallback = lastReady;
    const ready =
      body.chunks === undefined && fallback?.chunks !== undefined && Date.now() - fallback.oldestListedAt < fleet.maxStaleMs ? fallback : body;
    const chunks = ready.chunks ?? (await ready.made);
    const bytes = ready.bytes ?? chunks.reduce((sum, chunk) => sum + chunk.length, 0);
    res.status(200);
    res.setHeader('Content-Type', 'application/json');
    res.setHeader('Cache-Control', 'no-cache, no-store, must-revalidate');
    res.setHeader('Content-Length', String(bytes));
    if (ready.unlisted !== '') res.setHeader('X-Pgw-Director-Unlisted', ready.unlisted);
    await writeChunks(res, chunks, pacer);
  });

  router.get('/api/v1/fleet/groups', async (req, res) => {
    const query = badQuery(res, req.query, API_LIMIT);
    if (query === undefined) return;
    const view = await fleet.read();
    const nowMs = now();
    const selected = selectCopies(view, query, nowMs, staleAfterMs);
    const page = selected.slice(query.offset, query.offset + query.limit);
    res.setHeader('Cache-Control', 'no-store');
    res.json({
      status: 'success',
      data: {
        nodes: view.nodes.map((line) => ({
          id: line.node.id,
          url: line.node.url,
          role: line.role,
          health: health(line.node, line.role),
          share: line.share,
          reachable: line.reachable,
          ...(line.error === undefined ? {} : { error: line.error }),
          listed_at: new Date(line.listedAt).toISOString(),
          groups: line.groups,
          misplaced: line.misplaced,
        })),
        groups_total: view.newest.length,
        copies_total: view.copies.length,
        stale_after_seconds: staleAfterMs / 1000,
        total: selected.length,
        offset: query.offset,
        limit: query.limit,
        copies: page.map((copy) => ({
          labels: copy.group.labels,
          job: copy.job,
          node: copy.node.id,
          owner: copy.owner?.id ?? null,
          misplaced: copy.misplaced,
          last_push_successful: copy.group.lastPushSuccessful,
          push_time_seconds: copy.group.pushTime,
          push_time: copy.group.pushTime > 0 ? new Date(copy.group.pushTime * 1000).toISOString() : null,
          age_seconds: copy.group.pushTime > 0 ? Math.max(0, nowMs / 1000 - copy.group.pushTime) : null,
          stale: isStale(copy.group, nowMs, staleAfterMs),
        })),
      },
    });
  });

  if (!options.ui) return router;

  const page = async (req: Request, res: Response): Promise<void> => {
    const parsed = parseFleetQuery(req.query, PAGE_ROWS);
    if (!parsed.ok) return sendText(res, 400, parsed.message);
    const query = { ...parsed.query, limit: PAGE_ROWS, offset: parsed.query.offset - (parsed.query.offset % PAGE_ROWS) };
    const view = await fleet.read();
    const nowMs = now();
    const selected = selectCopies(view, query, nowMs, staleAfterMs);
    const nodes: NodeLine[] = view.nodes.map((line) => ({ ...line, health: health(line.node, line.role) }));
    const html = renderFleetPage({
      path: req.path,
      nowMs,
      staleAfterMs,
      nodes,
      groups: view.newest.length,
      copies: view.copies.length,
      query,
      total: selected.length,
      rows: selected.slice(query.offset, query.offset + PAGE_ROWS),
    });
    res.status(200);
    res.setHeader('Content-Type', 'text/html; charset=utf-8');
    res.setHeader('Content-Security-Policy', FLEET_PAGE_CSP);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('Cache-Control', 'no-store');
    res.end(html);
  };
  router.get('/', page);
  router.get('/groups', page);
  return router;
}
