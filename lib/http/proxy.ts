/**
 * The compatibility mode's proxy: forwards a push to its owner node and relays the answer, for clients that cannot
 * follow a 307 (Python, Node, Ruby, anything sending Authorization). Bodies stream both ways; nothing is buffered
 * whole. A push is never retried on another node: the group would then live on two nodes.
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';

import type { Logger } from 'pino';

import type { Node } from '../core/node';
import type { DirectorMetrics } from '../metrics';
import { sendText } from './text';
import { type ResponseHead, UpstreamPool } from './upstream';

/** ProxyOptions configures createProxy. */
export type ProxyOptions = Readonly<{
  /** How long to wait for the node's response headers. */
  timeoutMs: number;
  /** Largest body forwarded, in bytes; 0 means no limit. */
  maxBodyBytes: number;
  /** Idle keep-alive connections kept per node. @default 64 */
  maxFreeSockets?: number;
}>;

/** Proxy forwards pushes. `close` ends its keep-alive pools. */
export type Proxy = Readonly<{
  forward(req: IncomingMessage, res: ServerResponse, node: Node): void;
  close(): void;
}>;

// RFC 9110 7.6.1 hop-by-hop fields, plus Expect (the director answers 100 Continue itself) and Host (set to the
// node's). Lower-case, as Node hands header names over.
const DROPPED = new Set([
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-authorization',
  'proxy-authenticate',
  'proxy-connection',
  'expect',
  'host',
]);

function connectionTokens(value: string | undefined): Set<string> | undefined {
  if (value === undefined) return undefined;
  return new Set(value.split(',').map((token) => token.trim().toLowerCase()));
}

/**
 * requestHead renders the request head for the node: the end-to-end headers as received, Host set to the node,
 * X-Forwarded-* added, and the body's framing (Content-Length as received, or chunked).
 */
function requestHead(req: IncomingMessage, path: string, host: string, chunked: boolean): string {
  const listed = connectionTokens(req.headers.connection);
  let head = `${req.method ?? 'GET'} ${path} HTTP/1.1\r\nHost: ${host}\r\n`;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const lower = name.toLowerCase();
    if (DROPPED.has(lower) || lower.startsWith('proxy-') || listed?.has(lower) === true) continue;
    if (lower === 'x-forwarded-for' || lower === 'x-forwarded-proto' || lower === 'x-forwarded-host') continue;
    head += `${name}: ${raw[i + 1] as string}\r\n`;
  }
  const client = req.socket.remoteAddress ?? '';
  const prior = req.headers['x-forwarded-for'];
  head += `X-Forwarded-For: ${prior === undefined ? client : `${String(prior)}, ${client}`}\r\n`;
  head += `X-Forwarded-Proto: ${'encrypted' in req.socket && req.socket.encrypted === true ? 'https' : 'http'}\r\n`;
  if (req.headers.host !== undefined) head += `X-Forwarded-Host: ${req.headers.host}\r\n`;
  if (chunked) head += 'Transfer-Encoding: chunked\r\n';
  return `${head}\r\n`;
}

/** responseHeaders copies the node's end-to-end response headers. */
function responseHeaders(head: ResponseHead): OutgoingHttpHeaders {
  const rawHeaders = head.rawHeaders;
  const listed = connectionTokens(head.connection);
  const out: OutgoingHttpHeaders = {};
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    const lower = name.toLowerCase();
    if (DROPPED.has(lower) || listed?.has(lower) === true) continue;
    const existing = out[name];
    const value = rawHeaders[i + 1] as string;
    out[name] = existing === undefined ? value : Array.isArray(existing) ? [...existing, value] : [String(existing), value];
  }
  return out;
}

function describeError(error: NodeJS.ErrnoException): string {
  return error.code ?? error.message;
}

/** A body up to this size is gathered and sent with the head in one write; larger ones stream. */
const SMALL_BODY_BYTES = 64 * 1024;

type Target = Readonly<{ pool: UpstreamPool; prefix: string; host: string }>;

/** createProxy returns a proxy with one keep-alive pool per node. */
export function createProxy(options: ProxyOptions, metrics: DirectorMetrics, logger: Logger): Proxy {
  const targets = new Map<string, Target>();

  const targetOf = (node: Node): Target => {
    let target = targets.get(node.url);
    if (target === undefined) {
      const url = new URL(node.url);
      const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
      const secure = url.protocol === 'https:';
      const port = Number(url.port === '' ? (secure ? 443 : 80) : url.port);
      target = {
        pool: new UpstreamPool(hostname, port, secure, options.maxFreeSockets ?? 64),
        prefix: url.pathname === '/' ? '' : url.pathname,
        host: url.host,
      };
      targets.set(node.url, target);
    }
    return target;
  };

  const forward = (req: IncomingMessage, res: ServerResponse, node: Node): void => {
    const method = req.method ?? '';
    const declared = req.headers['content-length'];
    const length = declared === undefined ? undefined : Number(declared);
    if (options.maxBodyBytes > 0 && length !== undefined && length > options.maxBodyBytes) {
      metrics.countPush(method, 'rejected', node.id);
      res.setHeader('Connection', 'close');
      sendText(res, 413, `push body of ${declared} bytes exceeds --proxy.max-body of ${options.maxBodyBytes} bytes`);
      return;
    }

    const target = targetOf(node);
    const chunked = length === undefined && req.headers['transfer-encoding'] !== undefined;
    const started = process.hrtime.bigint();
    let settled = false;

    const fail = (status: number, message: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      exchange.abort();
      metrics.countPush(method, 'upstream_error', node.id);
      logger.error({ method, url: req.url, node: node.id, status }, message);
      res.setHeader('Connection', 'close');
      sendText(res, status, message);
      req.resume();
    };

    const exchange = target.pool.request(method, requestHead(req, target.prefix + (req.url ?? ''), target.host, chunked), chunked, {
      onHead(head) {
        clearTimeout(timer);
        if (settled) return;
        settled = true;
        metrics.observeUpstream(node.id, Number(process.hrtime.bigint() - started) / 1e9);
        metrics.countPush(method, 'proxied', node.id);
        res.writeHead(head.status, head.statusMessage, responseHeaders(head));
      },
      onData(chunk) {
        if (!res.write(chunk)) {
          exchange.socket.pause();
          res.once('drain', () => exchange.socket.resume());
        }
      },
      onEnd() {
        res.end();
      },
      onError(error, headStarted) {
        if (headStarted || settled) {
          res.destroy();
          return;
        }
        fail(502, `pushgateway ${JSON.stringify(node.id)} unreachable: ${describeError(error)}`);
      },
    });

    const timer = setTimeout(() => {
      fail(504, `pushgateway ${JSON.stringify(node.id)} did not answer within ${options.timeoutMs}ms`);
    }, options.timeoutMs);

    // The client went away before the answer was complete: abort the upstream request.
    res.on('close', () => {
      clearTimeout(timer);
      if (!res.writableFinished) exchange.abort();
    });

    if (length === undefined && !chunked) {
      exchange.send(undefined);
      req.resume();
      return;
    }
    if (length !== undefined && length <= SMALL_BODY_BYTES) {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => exchange.send(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
      return;
    }
    let received = 0;
    req.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (options.maxBodyBytes > 0 && received > options.maxBodyBytes) {
        if (!settled) {
          metrics.countPush(method, 'rejected', node.id);
          settled = true;
          clearTimeout(timer);
          exchange.abort();
          res.setHeader('Connection', 'close');
          sendText(res, 413, `push body exceeds --proxy.max-body of ${options.maxBodyBytes} bytes`);
        }
        req.pause();
        return;
      }
      if (!exchange.write(chunk)) {
        req.pause();
        exchange.socket.once('drain', () => req.resume());
      }
    });
    req.on('end', () => exchange.end());
  };

  return Object.freeze({
    forward,
    close() {
      for (const target of targets.values()) target.pool.close();
    },
  });
}
