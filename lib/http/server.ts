/**
 * The listener: push paths go straight to the lean push handler, everything else to the Express app. When the
 * director proxies, new connections go to the fast lane first, which hands them to Node's HTTP server at the first
 * request it does not take. Timeouts are set on purpose (see SERVER_TIMEOUTS) and bound a client that is slow to
 * send. They do not bound a client that is slow to read: Node's server has no write timeout. For proxied pushes the
 * proxy disconnects a client that takes none of its answer within --proxy.timeout (proxy.ts awaitWritable); the
 * director's own short answers (redirects, errors, the API) rely on the kernel's socket buffers and the keep-alive
 * timeout.
 */
import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

import { isPushPath } from '../core/grouping-key';
import type { FastLane } from './fast-lane';
import type { PushHandler } from './push';

/**
 * SERVER_TIMEOUTS are the listener's timeouts. Headers must arrive within 10s (slowloris), a whole request within
 * 5 minutes (a large proxied push on a slow link), and an idle keep-alive connection is closed after 65s, longer
 * than the 60s idle timeout common in load balancers, so the director is not the side that races them.
 */
export const SERVER_TIMEOUTS = Object.freeze({ headersTimeoutMs: 10_000, requestTimeoutMs: 300_000, keepAliveTimeoutMs: 65_000 });

/** ServerTimeouts are the listener's timeouts, in milliseconds. */
export type ServerTimeouts = Readonly<{ headersTimeoutMs: number; requestTimeoutMs: number; keepAliveTimeoutMs: number }>;

/** ListenerDeps are the handlers the listener routes between; `fastLane` takes new connections first. */
export type ListenerDeps = Readonly<{
  push: PushHandler;
  app: (req: IncomingMessage, res: ServerResponse) => void;
  fastLane?: FastLane;
}>;

/**
 * DirectorServer is Node's HTTP server with an optional fast lane in front: the lane takes each new connection,
 * and Node's own connection handler gets those the lane gives up. Closing idle connections closes the lane's too,
 * so `close()` behaves as Node's does.
 */
class DirectorServer extends http.Server {
  constructor(
    options: http.ServerOptions,
    listener: http.RequestListener,
    private readonly fastLane: FastLane | undefined,
  ) {
    super(options, listener);
    if (fastLane === undefined) return;
    const handlers = this.listeners('connection') as ((socket: Socket) => void)[];
    this.removeAllListeners('connection');
    const handOff = (socket: Socket): void => {
      for (const handler of handlers) handler.call(this, socket);
    };
    this.on('connection', (socket: Socket) => fastLane.accept(socket, handOff));
  }

  override closeIdleConnections(): void {
    super.closeIdleConnections();
    this.fastLane?.closeIdle();
  }

  override closeAllConnections(): void {
    super.closeAllConnections();
    this.fastLane?.closeAll();
  }
}

/** createServer returns the director's http.Server, not yet listening. */
export function createServer(deps: ListenerDeps, timeouts: ServerTimeouts = SERVER_TIMEOUTS): Server {
  const { push, app, fastLane } = deps;
  const server = new DirectorServer(
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
    fastLane,
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
