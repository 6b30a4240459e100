/**
 * Readers' routes over the fleet view: `GET /api/v1/metrics` in the Pushgateway's own shape (the newest copy of every
 * group of the fleet, listed once), `GET /api/v1/fleet/groups` (every copy, where it sits, filters and pages) and the
 * fleet page at `/` and `/groups`. All read-only. The answers are made by a FleetAnswers (lib/http/fleet-answers.ts):
 * in the director, on the fleet's own worker thread (lib/fleet/thread.ts), so that listing and building a large fleet
 * never pause pushes. This router only parses queries and writes the bytes it gets: /api/v1/metrics is the same
 * Buffers for every reader, written with back-pressure and taking turns on the event loop.
 */
import type { ServerResponse } from 'node:http';

import { type Request, type Response, Router } from 'express';

import { parseFleetQuery } from '../core/fleet';
import { BACKGROUND, type Pacer } from '../pace';
import { API_LIMIT, type FleetAnswers, PAGE_ROWS } from './fleet-answers';
import { FLEET_PAGE_CSP } from './fleet-page';
import { sendText } from './text';

export { type NodeHealth, defaultHealth } from './fleet-answers';

/** FleetRoutesOptions configures createFleetRouter. */
export type FleetRoutesOptions = Readonly<{
  /** Makes the answers: createFleetAnswers (this thread) or createFleetThread (the fleet's worker thread). */
  answers: FleetAnswers;
  /** Serve the page at `/` and `/groups`. */
  ui: boolean;
  /** The clock, in milliseconds. @default Date.now */
  now?: () => number;
  /** Hands out slices of the event loop to writing /api/v1/metrics. @default BACKGROUND (lib/pace.ts) */
  pacer?: Pacer;
}>;

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

function apiError(res: Response, status: number, errorType: string, error: string): void {
  res.status(status).json({ status: 'error', errorType, error });
}

/** unavailable is why answers could not be made (the fleet's worker failed), in one line. */
function unavailable(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** createFleetRouter returns the routes; mount it on the app before its 404. */
export function createFleetRouter(options: FleetRoutesOptions): Router {
  const { answers } = options;
  const now = options.now ?? Date.now;
  const pacer = options.pacer ?? BACKGROUND;
  const router = Router();

  router.get('/api/v1/metrics', async (_req, res) => {
    let answer;
    try {
      answer = await answers.metrics();
    } catch (error) {
      return apiError(res, 503, 'unavailable', unavailable(error));
    }
    if (!answer.ok) return apiError(res, answer.status, 'unavailable', answer.error);
    res.status(200);
    res.setHeader('Content-Type', 'application/json');
    res.setHeader('Cache-Control', 'no-cache, no-store, must-revalidate');
    res.setHeader('Content-Length', String(answer.bytes));
    if (answer.unlisted !== '') res.setHeader('X-Pgw-Director-Unlisted', answer.unlisted);
    await writeChunks(res, answer.chunks, pacer);
  });

  router.get('/api/v1/fleet/groups', async (req, res) => {
    const parsed = parseFleetQuery(req.query, API_LIMIT);
    if (!parsed.ok) return apiError(res, 400, 'bad_data', parsed.message);
    let body: Buffer;
    try {
      body = await answers.groups(parsed.query, now());
    } catch (error) {
      return apiError(res, 503, 'unavailable', unavailable(error));
    }
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    res.send(body);
  });

  if (!options.ui) return router;

  const page = async (req: Request, res: Response): Promise<void> => {
    const parsed = parseFleetQuery(req.query, PAGE_ROWS);
    if (!parsed.ok) return sendText(res, 400, parsed.message);
    const query = { ...parsed.query, limit: PAGE_ROWS, offset: parsed.query.offset - (parsed.query.offset % PAGE_ROWS) };
    let html: Buffer;
    try {
      html = await answers.page(req.path, query, now());
    } catch (error) {
      return sendText(res, 503, unavailable(error));
    }
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
