/**
 * The answers of the fleet's read routes, as bytes: `/api/v1/metrics` (the newest copy of every group, in the
 * Pushgateway's shape, as Buffers of about CHUNK_BYTES), `/api/v1/fleet/groups` (a JSON body) and the fleet page (an
 * HTML body). No Express here: the router (lib/http/fleet-api.ts) sends what these make, and the fleet's worker
 * thread (lib/fleet/worker.ts) makes them on its own heap and hands the bytes over. createFleetAnswers makes them
 * in the calling thread.
 */
import { type FleetCopy, type FleetQuery, type FleetView, type NodeRole, filterCopies, isStale } from '../core/fleet';
import type { Node } from '../core/node';
import type { Fleet } from '../fleet';
import { BACKGROUND, type Pacer } from '../pace';
import { type NodeLine, renderFleetPage } from './fleet-page';

/** NodeHealth tells how a node is doing, as the page shows it; health checks plug in here. */
export type NodeHealth = (node: Node, role: NodeRole) => string;

/** defaultHealth knows only what placement knows: a member is `in ring`, a node off it is `draining`. */
export const defaultHealth: NodeHealth = (_node, role) => (role === 'member' ? 'in ring' : role);

/** PAGE_ROWS is the number of rows per page of the fleet page. */
export const PAGE_ROWS = 100;
/** API_LIMIT is the number of copies per answer of /api/v1/fleet/groups when no limit is given. */
export const API_LIMIT = 1000;

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
 * MetricsAnswer is what `/api/v1/metrics` answers: the body's Buffers (shared by every reader: never written to) and
 * the nodes missing from it, or a 503 and its message.
 */
export type MetricsAnswer =
  | Readonly<{ ok: true; chunks: readonly Buffer[]; bytes: number; unlisted: string }>
  | Readonly<{ ok: false; status: 503; error: string }>;

/**
 * FleetAnswers makes the read routes' answers. Rejects only when the answers cannot be made at all (the fleet's
 * worker thread failed); the message is one line.
 */
export type FleetAnswers = Readonly<{
  metrics(): Promise<MetricsAnswer>;
  /** groups is the JSON body of `/api/v1/fleet/groups` for a parsed query, ages measured at `nowMs`. */
  groups(query: FleetQuery, nowMs: number): Promise<Buffer>;
  /** page is the fleet page's HTML for a parsed query (`limit` and `offset` already on a page boundary). */
  page(path: string, query: FleetQuery, nowMs: number): Promise<Buffer>;
}>;

/** ownedBytes is `text` in UTF-8 in a Buffer that owns its whole ArrayBuffer (never Node's shared pool): transferable. */
export function ownedBytes(text: string): Buffer {
  const bytes = Buffer.allocUnsafeSlow(Buffer.byteLength(text));
  bytes.write(text);
  return bytes;
}

/** joined copies parts into one Buffer that owns its ArrayBuffer (transferable, unlike Buffer.concat's small ones). */
function joined(parts: readonly Uint8Array[], size: number): Buffer {
  const out = Buffer.allocUnsafeSlow(size);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * serialiseMetrics renders the `/api/v1/metrics` answer as CHUNK_BYTES Buffers: each group's element exactly as its
 * node sent it (FleetGroup.json), comma-separated inside the Pushgateway's envelope. Copying bytes is all it does, and
 * it yields to the event loop between slices all the same. Each Buffer owns its ArrayBuffer, so it can be
 * transferred to another thread.
 */
export async function serialiseMetrics(copies: readonly FleetCopy[], pacer: Pacer): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  let parts: Uint8Array[] = [METRICS_HEAD];
  let size = METRICS_HEAD.length;
  for (let i = 0; i < copies.length; i++) {
    const json = (copies[i] as FleetCopy).group.json;
    if (i > 0) parts.push(COMMA);
    parts.push(json);
    size += json.length + (i > 0 ? 1 : 0);
    if (size >= CHUNK_BYTES) {
      chunks.push(joined(parts, size));
      parts = [];
      size = 0;
    }
    if (i % 256 === 255 && pacer.due()) await pacer.next();
  }
  parts.push(METRICS_TAIL);
  chunks.push(joined(parts, size + METRICS_TAIL.length));
  return chunks;
}

/** metricsRefusal is the 503 a view gets when there is no node, or none could be listed; undefined when it can be served. */
export function metricsRefusal(view: FleetView): string | undefined {
  if (view.nodes.length === 0) return 'no pushgateway nodes available';
  const failed = view.nodes.filter((line) => !line.reachable).map((line) => `${line.node.id} (${line.error ?? 'unreachable'})`);
  return failed.length === view.nodes.length ? `no pushgateway could be listed: ${failed.join(', ')}` : undefined;
}

/** unlistedOf names the nodes missing from a view's /api/v1/metrics, for its `X-Pgw-Director-Unlisted` header. */
export function unlistedOf(view: FleetView): string {
  // The Pushgateway's shape has no place for a partial answer: a header names the nodes missing from it.
  return view.nodes.filter((line) => !line.reachable).map((line) => line.node.id).join(', ');
}

/** oldestListingOf is when a view's oldest listing started. */
export function oldestListingOf(view: FleetView): number {
  return Math.min(...view.nodes.map((line) => line.listedAt));
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

/** groupsBody is the JSON text of `/api/v1/fleet/groups` over a view. */
export function groupsBody(view: FleetView, query: FleetQuery, nowMs: number, staleAfterMs: number, health: NodeHealth): string {
  const selected = selectCopies(view, query, nowMs, staleAfterMs);
  const page = selected.slice(query.offset, query.offset + query.limit);
  return JSON.stringify({
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
}

/** pageHtml is the fleet page over a view. */
export function pageHtml(view: FleetView, path: string, query: FleetQuery, nowMs: number, staleAfterMs: number, health: NodeHealth): string {
  const selected = selectCopies(view, query, nowMs, staleAfterMs);
  const nodes: NodeLine[] = view.nodes.map((line) => ({ ...line, health: health(line.node, line.role) }));
  return renderFleetPage({
    path,
    nowMs,
    staleAfterMs,
    nodes,
    groups: view.newest.length,
    copies: view.copies.length,
    query,
    total: selected.length,
    rows: selected.slice(query.offset, query.offset + query.limit),
  });
}

/** FleetAnswersOptions configures createFleetAnswers. */
export type FleetAnswersOptions = Readonly<{
  fleet: Fleet;
  /** A group whose last push is older than this is marked stale. */
  staleAfterMs: number;
  /** @default defaultHealth */
  health?: NodeHealth;
  /** Hands out slices of the event loop to rendering /api/v1/metrics. @default BACKGROUND (lib/pace.ts) */
  pacer?: Pacer;
}>;

/**
 * A serialised /api/v1/metrics answer: made once per view whoever asks; `chunks` (and their total `bytes`) set once
 * it is ready. Every reader writes the same Buffers: nothing is copied or converted per reader.
 */
type MetricsBody = { made: Promise<readonly Buffer[]>; chunks?: readonly Buffer[]; bytes?: number; oldestListedAt: number; unlisted: string };

/**
 * createFleetAnswers makes the answers in this thread, over `fleet`: the /api/v1/metrics body once per view, the last
 * one made served while the next view's is made (as long as its listings are younger than the fleet's maxStaleMs).
 */
export function createFleetAnswers(options: FleetAnswersOptions): FleetAnswers {
  const { fleet, staleAfterMs } = options;
  const health = options.health ?? defaultHealth;
  const pacer = options.pacer ?? BACKGROUND;
  const metricsBodies = new WeakMap<FleetView, MetricsBody>();
  // The last answer made, served while the next view's answer is being serialised (as long as it is not too old).
  let lastReady: MetricsBody | undefined;

  const metrics = async (): Promise<MetricsAnswer> => {
    const view = await fleet.read();
    const refusal = metricsRefusal(view);
    if (refusal !== undefined) return { ok: false, status: 503, error: refusal };
    let body = metricsBodies.get(view);
    if (body === undefined) {
      const made = serialiseMetrics(view.newest, pacer);
      const created: MetricsBody = { made, oldestListedAt: oldestListingOf(view), unlisted: unlistedOf(view) };
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
    return { ok: true, chunks, bytes: ready.bytes ?? chunks.reduce((sum, chunk) => sum + chunk.length, 0), unlisted: ready.unlisted };
  };

  return Object.freeze({
    metrics,
    groups: async (query: FleetQuery, nowMs: number) => Buffer.from(groupsBody(await fleet.read(), query, nowMs, staleAfterMs, health)),
    page: async (path: string, query: FleetQuery, nowMs: number) => Buffer.from(pageHtml(await fleet.read(), path, query, nowMs, staleAfterMs, health)),
  });
}
