/**
 * The listener: push paths go straight to the lean push handler, everything else to the Express app. Timeouts are
 * set on purpose (see SERVER_TIMEOUTS): a slow or silent client cannot hold a connection forever.
 */
import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';

import { isPushPath } from '../core/grouping-key';
import type { PushHandler } from './push';

/**
 * SERVER_TIMEOUTS are the listener's timeouts. Headers must arrive within 10s (slowloris), a whole request within
 * 5 minutes (a large proxied push on a slow link), and an idle keep-alive connection is closed after 65s, longer
 * than the 60s idle timeout common in load balancers, so the director is not the side that races them.
 */
export const SERVER_TIMEOUTS = Object.freeze({ headersTimeoutMs: 10_000, requestTimeoutMs: 300_000, keepAliveTimeoutMs: 65_000 });

/** ServerTimeouts are the listener's timeouts, in milliseconds. */
export type ServerTimeouts = Readonly<{ headersTimeoutMs: number; requestTimeoutMs: number; keepAliveTimeoutMs: number }>;

/** ListenerDeps are the two handlers the listener routes between. */
export type ListenerDeps = Readonly<{
  push: PushHandler;
  app: (req: IncomingMessage, res: ServerResponse) => void;
}>;

/** createServer returns the director's http.Server, not yet listening. */
export function createServer(deps: ListenerDeps, timeouts: ServerTimeouts = SERVER_TIMEOUTS): Server {
  const { push, app } = deps;
  const server = http.createServer(
    {
      headersTimeout: timeouts.headersTimeoutMs,
      requestTimeout: timeouts.requestTimeoutMs,
      keepAliveTimeout: timeouts.keepAliveTimeoutMs,
      // Node checks the two timeouts above on this interval (30s by default): check often enough to honour them.
      connectionsCheckingInterval: Math.min(1000, timeouts.headersTimeoutMs / 4),
    },
    (req, res) => {
      if (isPushPath(req.url ?? '')) push(req, res);
      else app(req, res);
    },
  );
  // With a listener here Node does not send 100 Continue by itself, so a push can be redirected before its body is
  // sent: that is what lets `curl -L -T -` (a body streamed from stdin, which curl cannot rewind) work.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    if (isPushPath(req.url ?? '')) {
      push(req, res, true);
      return;
    }
    res.writeContinue();
    app(req, res);
  });
  return server;
}
