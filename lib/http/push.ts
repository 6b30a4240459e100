/**
 * The push handler: a lean `(req, res)` for `/metrics/...` that runs ahead of Express. It decodes the grouping key,
 * finds the owner on the current ring and answers 307 with a Location on it, or hands the push to the proxy.
 * Every answer that is not a redirect or a relayed response is one plain-text line in the Pushgateway's words.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

import type { Logger } from 'pino';

import type { PushMode } from '../config';
import { FALLBACK } from '../core/fast-key';
import { parseGroupingKey } from '../core/grouping-key';
import type { Node } from '../core/node';
import type { FanOut } from '../fanout';
import type { DirectorMetrics } from '../metrics';
import type { Placement } from '../placement';
import { type Proxy, SMALL_BODY_BYTES } from './proxy';
import { sendText } from './text';

/** PushHandlerDeps are what the push handler needs; `proxy` is required unless the mode is `redirect`. */
export type PushHandlerDeps = Readonly<{
  placement: Placement;
  mode: PushMode;
  proxy: Proxy | undefined;
  metrics: DirectorMetrics;
  logger: Logger;
  /** Deletes a DELETEd group on every other node and records its tombstone; the owner's answer stays the client's. */
  fanOut?: FanOut | undefined;
}>;

/** PushHandler handles one push; `expectingContinue` is true when the client waits for 100 Continue. */
export type PushHandler = (req: IncomingMessage, res: ServerResponse, expectingContinue?: boolean) => void;

const PUSH_METHODS = 'PUT, POST, DELETE';
// Anything that is not a visible ASCII character gets percent-encoded in a Location, and so do `\` and `#`: a
// WHATWG URL parser (browsers, Node's fetch, Go's url.Parse for `#`) reads `\` as `/` and so resolves `\..\`
// segments, and drops everything from `#` on, so the client would reach another group, or another path, on the node.
// eslint-disable-next-line no-control-regex
const UNSAFE_IN_LOCATION = /[^\x21-\x7e]|[\\#]/;

/**
 * MAX_TARGET_BYTES bounds a push's path and query. The Pushgateway has no bound of its own below Go's 1 MiB of
 * headers, but no grouping key needs 8 KiB, and a Location that long breaks clients and proxies on the way back.
 */
export const MAX_TARGET_BYTES = 8192;

/**
 * followsRedirects tells whether a client is known to re-send a push with its body after a 307 (Go, curl): by its
 * User-Agent, and only without credentials, which those clients drop on the way to another host.
 */
export function followsRedirects(userAgent: string | undefined, hasAuthorization: boolean): boolean {
  if (userAgent === undefined || hasAuthorization) return false;
  return userAgent.startsWith('Go-http-client/') || userAgent.startsWith('curl/');
}

/**
 * Placed is where a push goes: its owner node and the push's position on the ring (`hash`, to find the successor
 * should the owner be unreachable), or a refusal in the Pushgateway's words.
 */
export type Placed =
  | Readonly<{ ok: true; node: Node; hash: number }>
  | Readonly<{ ok: false; status: number; message: string; close?: boolean; allow?: string }>;

/**
 * placePush finds the owner of a push from its method and request target, exactly as the Pushgateway would read
 * the grouping key. Both lanes of the listener call it, so they can only agree.
 */
export function placePush(placement: Placement, method: string, target: string): Placed {
  if (target.length > MAX_TARGET_BYTES) {
    return { ok: false, status: 414, message: `push path of ${target.length} bytes is longer than ${MAX_TARGET_BYTES} bytes`, close: true };
  }
  const query = target.indexOf('?');
  const rawPath = query < 0 ? target : target.slice(0, query);
  const isPush = method === 'PUT' || method === 'POST' || method === 'DELETE';

  // Plain paths, nearly all pushes, skip building a GroupingKey; the rest, and every refusal, take the full parse.
  const fast = isPush ? placement.fastHash(rawPath) : FALLBACK;
  let hash: number;
  if (fast !== FALLBACK) {
    hash = fast;
  } else {
    const parsed = parseGroupingKey(rawPath);
    if (!parsed.ok && parsed.status === 404) return parsed;
    if (!isPush) {
      return { ok: false, status: 405, message: `method ${method} not allowed on push paths (use PUT, POST or DELETE)`, allow: PUSH_METHODS };
    }
    if (!parsed.ok) return parsed;
    hash = placement.hash(parsed.key, parsed.path);
  }
  const node = placement.ring.lookup(hash);
  if (node === undefined) return { ok: false, status: 503, message: placement.unavailableMessage() };
  return { ok: true, node, hash };
}

/** locationFor returns the Location of a push on a node: the node URL, then the target exactly as received. */
export function locationFor(node: Node, target: string): string {
  if (!UNSAFE_IN_LOCATION.test(target)) return node.url + target;
  let safe = '';
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i);
    safe += c > 0x20 && c < 0x7f && c !== 0x5c && c !== 0x23 ? target[i] : `%${c.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return node.url + safe;
}

function hasPendingBody(req: IncomingMessage): boolean {
  if (req.complete) return false;
  const length = req.headers['content-length'];
  if (length !== undefined) return Number(length) > SMALL_BODY_BYTES;
  return req.headers['transfer-encoding'] !== undefined;
}

/** createPushHandler returns the handler for push paths. */
export function createPushHandler(deps: PushHandlerDeps): PushHandler {
  const { placement, mode, proxy, metrics, logger, fanOut } = deps;
  if (mode !== 'redirect' && proxy === undefined) throw new Error(`mode ${mode} needs a proxy`);
  const debug = logger.isLevelEnabled('debug');

  const reject = (req: IncomingMessage, res: ServerResponse, status: number, message: string): void => {
    metrics.countPush(req.method ?? '', status === 503 ? 'unavailable' : 'rejected', '');
    logger.warn({ method: req.method, url: req.url, status, reason: message }, 'push rejected');
    sendText(res, status, message);
  };

  return (req, res, expectingContinue = false) => {
    const target = req.url ?? '';
    const method = req.method ?? '';
    const placed = placePush(placement, method, target);
    if (!placed.ok) {
      if (placed.close === true) res.setHeader('Connection', 'close');
      if (placed.allow !== undefined) res.setHeader('Allow', placed.allow);
      return reject(req, res, placed.status, placed.message);
    }
    const { node, hash } = placed;
    if (method === 'DELETE') void fanOut?.deleted(target, node);

    if (mode === 'redirect' || (mode === 'auto' && followsRedirects(req.headers['user-agent'], req.headers.authorization !== undefined))) {
      const headers: Record<string, string> = { Location: locationFor(node, target), 'Content-Length': '0' };
      // The client holds its body back until 100 Continue, which it will not get: it may send the body anyway or
      // not at all, so the connection cannot be reused safely. A large or open-ended body still on its way would
      // have to be read and thrown away to reuse the connection: closing it is cheaper, and a client that never
      // sends the body it announced cannot hold the connection.
      if (expectingContinue || hasPendingBody(req)) headers['Connection'] = 'close';
      res.writeHead(307, headers);
      res.end();
      metrics.countPush(method, 'redirected', node.id);
      if (debug) logger.debug({ method, url: target, node: node.id }, 'push redirected');
      return;
    }
    if (expectingContinue) res.writeContinue();
    if (debug) logger.debug({ method, url: target, node: node.id, lane: 'node' }, 'push proxied');
    (proxy as Proxy).forward(req, res, node, hash);
  };
}
