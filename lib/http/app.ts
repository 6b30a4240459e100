/**
 * The Express app: health, readiness, the director's own metrics, ring inspection and every error answer that is
 * not a push's. It never listens; lib/http/server.ts composes it with the push handler.
 */
import express, { type ErrorRequestHandler, type Express, type RequestHandler } from 'express';
import type { Logger } from 'pino';
import { pinoHttp } from 'pino-http';

import { parseGroupingKey, toDisplayLabels } from '../core/grouping-key';
import { canonicalKey } from '../core/key-hash';
import type { DirectorMetrics } from '../metrics';
import type { Placement } from '../placement';
import { sendText } from './text';

/** AppDeps are what the app reads; it changes none of them. `routers` are mounted after the built-in routes. */
export type AppDeps = Readonly<{ placement: Placement; metrics: DirectorMetrics; logger: Logger; routers?: readonly RequestHandler[] }>;

/** describeRing renders the ring for /api/v1/ring and the `ring` command. */
export function describeRing(placement: Placement): Record<string, unknown> {
  const ring = placement.ring;
  const shares = ring.shares();
  return {
    members: ring.nodes.map((node, i) => ({ id: node.id, url: node.url, share: shares[i] ?? 0 })),
    vnodes: ring.vnodes,
    points: ring.points,
    hash_key: placement.hashKey,
    last_change: placement.changedAt.toISOString(),
    ...(placement.pendingReason === undefined ? {} : { pending: placement.pendingReason }),
  };
}

/** describeLookup renders the placement of one push path for /api/v1/lookup and the `lookup` command. */
export function describeLookup(
  placement: Placement,
  path: string,
): { ok: true; body: Record<string, unknown> } | { ok: false; status: number; message: string } {
  const rawPath = path.split('?', 1)[0] ?? '';
  // Node hands request targets over one byte per code unit; a path typed by a person is text: make it bytes.
  const parsed = parseGroupingKey(Buffer.from(rawPath, 'utf8').toString('latin1'));
  if (!parsed.ok) return parsed;
  const hash = placement.hash(parsed.key, parsed.path);
  const node = placement.ring.lookup(hash);
  return {
    ok: true,
    body: {
      path,
      labels: toDisplayLabels(parsed.key),
      canonical_key: canonicalKey(parsed.key),
      hash_key: placement.hashKey,
      hash,
      node: node === undefined ? null : { id: node.id, url: node.url },
    },
  };
}

/** createApp returns the Express app for everything that is not a push. */
export function createApp(deps: AppDeps): Express {
  const { placement, metrics, logger } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(
    pinoHttp({
      logger,
      customLogLevel: (_req, res, error) => {
        if (error !== undefined || res.statusCode >= 500) return 'error';
        if (res.statusCode >= 400) return 'warn';
        return 'debug';
      },
    }),
  );

  app.get('/-/healthy', (_req, res) => sendText(res, 200, 'OK'));
  app.get('/-/ready', (_req, res) => {
    if (placement.ring.points > 0) return sendText(res, 200, 'OK');
    return sendText(res, 503, placement.unavailableMessage());
  });
  app.get('/metrics', async (_req, res) => {
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  app.get('/api/v1/ring', (_req, res) => {
    res.json({ status: 'success', data: describeRing(placement) });
  });
  app.get('/api/v1/lookup', (req, res) => {
    const path = req.query['path'];
    if (typeof path !== 'string' || path === '') {
      res.status(400).json({ status: 'error', errorType: 'bad_data', error: 'query parameter "path" is required' });
      return;
    }
    const result = describeLookup(placement, path);
    if (!result.ok) {
      res.status(400).json({ status: 'error', errorType: 'bad_data', error: result.message });
      return;
    }
    res.json({ status: 'success', data: result.body });
  });

  for (const router of deps.routers ?? []) app.use(router);

  app.use((_req, res) => sendText(res, 404, '404 page not found'));
  const onError: ErrorRequestHandler = (error: { status?: number; statusCode?: number; expose?: boolean; message?: string }, req, res, _next) => {
    const status = error.status ?? error.statusCode ?? 500;
    if (status >= 500) req.log.error({ err: error }, 'request failed');
    if (res.headersSent) {
      res.destroy();
      return;
    }
    sendText(res, status, status < 500 && error.expose === true ? String(error.message).toLowerCase() : 'internal server error');
  };
  app.use(onError);
  return app;
}
