/**
 * The Express app: health, readiness, the director's own metrics, ring inspection and every error answer that is
 * not a push's. It never listens; lib/http/server.ts composes it with the push handler.
 */
import express, { type ErrorRequestHandler, type Express, type RequestHandler } from 'express';
import type { Logger } from 'pino';
import { pinoHttp } from 'pino-http';

import { describeLookup, describeRing } from '../inspect';
import type { DirectorMetrics } from '../metrics';
import type { Placement } from '../placement';
import { sendText } from './text';

/** AppDeps are what the app reads; it changes none of them. `routers` are mounted after the built-in routes. */
export type AppDeps = Readonly<{ placement: Placement; metrics: DirectorMetrics; logger: Logger; routers?: readonly RequestHandler[] }>;

/** createApp returns the Express app for everything that is not a push. */
export function createApp(deps: AppDeps): Express {
  const { placement, metrics, logger } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(
    pinoHttp({
      logger,
      // A probe polling /-/ready while the ring is empty, or a scanner walking unknown paths, must not flood the
      // log: their answers are expected and say it all. Errors of the director's own making stay at error.
      customLogLevel: (req, res, error) => {
        if (error !== undefined) return 'error';
        if (res.statusCode === 503 && req.url === '/-/ready') return 'debug';
        if (res.statusCode >= 500) return 'error';
        if (res.statusCode === 404 || res.statusCode === 405) return 'debug';
        if (res.statusCode >= 400) return 'info';
        return 'debug';
      },
      // A 5xx the app answered on purpose (an empty ring's 503) is no exception: pino-http would invent an Error
      // with a stack for it. Keep real errors, which the error handler below also logs.
      customErrorObject: (_req, res, error, value: Record<string, unknown>) => {
        if (error.message !== `failed with status code ${res.statusCode}`) return value;
        return Object.fromEntries(Object.entries(value).filter(([key]) => key !== 'err'));
      },
      // A request is logged by what identifies it, not by every header a client (or a scanner) chose to send.
      serializers: {
        req: (req: { id?: unknown; method?: string; url?: string; remoteAddress?: string }) => ({
          id: req.id,
          method: req.method,
          url: req.url,
          remoteAddress: req.remoteAddress,
        }),
        res: (res: { statusCode?: number }) => ({ statusCode: res.statusCode }),
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
    if (Array.isArray(path)) {
      res.status(400).json({ status: 'error', errorType: 'bad_data', error: 'query parameter "path" must be given once' });
      return;
    }
    if (typeof path !== 'string' || path === '') {
      res.status(400).json({ status: 'error', errorType: 'bad_data', error: 'query parameter "path" is required' });
      return;
    }
    const result = describeLookup(placement, path);
    if (!result.ok) {
      res.status(result.status).json({ status: 'error', errorType: 'bad_data', error: result.message });
      return;
    }
    res.json({ status: 'success', data: result.view });
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
