/**
 * The compatibility mode's proxy: forwards a push to its owner node and relays the answer, for clients that cannot
 * follow a 307 (Python, Node, Ruby, anything sending Authorization). Bodies stream both ways; nothing is buffered
 * whole. A push is never retried on another node: the group would then live on two nodes.
 *
 * Both lanes of the listener forward through `open`: pushes that Node's HTTP server read come through `forward`,
 * which streams their bodies; the fast lane (fast-lane.ts) calls `open` with a whole small body and answers the
 * client itself through a Downstream of its own.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { LookupFunction } from 'node:net';

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
  /** How node host names resolve (DNS discovery's resolver). @default dns.lookup */
  lookup?: LookupFunction;
}>;

/**
 * PushRequest is a push as the director received it, from either lane: Node's IncomingMessage or the fast lane's
 * own reading of a connection. `rawHeaders` alternates names and values, as received.
 */
export type PushRequest = Readonly<{
  method: string;
  target: string;
  rawHeaders: readonly string[];
  /** The Connection header's value, repeated fields joined with ", " as Node joins them. */
  connection: string | undefined;
  remoteAddress: string;
  encrypted: boolean;
}>;

/**
 * Downstream is the client side of one proxied push: where the node's answer, or the director's own error answer,
 * goes. `headers` alternates names and values.
 */
export type Downstream = Readonly<{
  start(status: number, statusMessage: string, headers: readonly string[]): void;
  /** write relays a body chunk; false asks the node's side to wait for `onDrain`. */
  write(chunk: Buffer): boolean;
  onDrain(resume: () => void): void;
  end(): void;
  /** refuse answers with the director's own one-line error and closes the connection afterwards. */
  refuse(status: number, message: string): void;
  /** destroy cuts the connection: the node failed in the middle of its answer. */
  destroy(): void;
}>;

/**
 * Relay is one push in flight. Its body goes out whole through `send`, or streamed through `write`s and `end`;
 * `cancel` stops it when the client went away.
 */
export type Relay = Readonly<{
  send(body: Buffer | undefined): void;
  /** write streams a body chunk; false asks the caller to wait for the node's connection to drain. */
  write(chunk: Buffer): boolean;
  /** The node's connection, to wait for its 'drain'. */
  upstream: NodeJS.EventEmitter;
  end(): void;
  /** refuse abandons the push and answers the client with an error of the director's own. */
  refuse(status: number, message: string, outcome: 'rejected' | 'upstream_error'): void;
  cancel(): void;
}>;

/** Proxy forwards pushes. `close` ends its keep-alive pools. */
export type Proxy = Readonly<{
  /** forward proxies a push received by Node's HTTP server, streaming its body. */
  forward(req: IncomingMessage, res: ServerResponse, node: Node): void;
  /** open starts a push with the node; the body follows through the returned relay. */
  open(push: PushRequest, node: Node, down: Downstream, chunked: boolean): Relay;
  maxBodyBytes: number;
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
const FORWARDED = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host']);

/** connectionTokens returns the fields a Connection header names, beyond the hop-by-hop ones dropped anyway. */
function connectionTokens(value: string | undefined): Set<string> | undefined {
  if (value === undefined) return undefined;
  const lower = value.toLowerCase();
  if (lower === 'keep-alive' || lower === 'close') return undefined;
  return new Set(value.split(',').map((token) => token.trim().toLowerCase()));
}

/**
 * requestHead renders the request head for the node: the end-to-end headers as received, Host set to the node,
 * X-Forwarded-* added, and the body's framing (Content-Length as received, or chunked).
 */
function requestHead(push: PushRequest, path: string, host: string, chunked: boolean): string {
  const raw = push.rawHeaders;
  const listed = connectionTokens(push.connection);
  let head = `${push.method} ${path} HTTP/1.1\r\nHost: ${host}\r\n`;
  let prior: string | undefined;
  let originalHost: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    const lower = name.toLowerCase();
    if (lower === 'host') originalHost ??= value;
    else if (lower === 'x-forwarded-for') prior = prior === undefined ? value : `${prior}, ${value}`;
    if (DROPPED.has(lower) || FORWARDED.has(lower) || lower.startsWith('proxy-') || listed?.has(lower) === true) continue;
    head += `${name}: ${value}\r\n`;
  }
  head += `X-Forwarded-For: ${prior === undefined ? push.remoteAddress : `${prior}, ${push.remoteAddress}`}\r\n`;
  head += `X-Forwarded-Proto: ${push.encrypted ? 'https' : 'http'}\r\n`;
  if (originalHost !== undefined) head += `X-Forwarded-Host: ${originalHost}\r\n`;
  if (chunked) head += 'Transfer-Encoding: chunked\r\n';
  return `${head}\r\n`;
}

/** responseHeaders returns the node's end-to-end response headers, names and values alternating. */
function responseHeaders(head: ResponseHead): string[] {
  const rawHeaders = head.rawHeaders;
  const listed = connectionTokens(head.connection);
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    const lower = name.toLowerCase();
    if (DROPPED.has(lower) || listed?.has(lower) === true) continue;
    out.push(name, rawHeaders[i + 1] as string);
  }
  return out;
}

function describeError(error: NodeJS.ErrnoException): string {
  return error.code ?? error.message;
}

/** A body up to this size is gathered and sent with the head in one write; larger ones stream. */
export const SMALL_BODY_BYTES = 64 * 1024;

type Target = Readonly<{ pool: UpstreamPool; prefix: string; host: string }>;

/** nodeDownstream answers through Node's ServerResponse; after an error answer, the rest of the body is dropped. */
function nodeDownstream(req: IncomingMessage, res: ServerResponse): Downstream {
  return {
    start: (status, statusMessage, headers) => res.writeHead(status, statusMessage, headers as string[]),
    write: (chunk) => res.write(chunk),
    onDrain: (resume) => res.once('drain', resume),
    end: () => res.end(),
    refuse(status, message) {
      if (!res.headersSent) res.setHeader('Connection', 'close');
      sendText(res, status, message);
      req.resume();
    },
    destroy: () => res.destroy(),
  };
}

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
        pool: new UpstreamPool(hostname, port, secure, options.maxFreeSockets ?? 64, options.lookup),
        prefix: url.pathname === '/' ? '' : url.pathname,
        host: url.host,
      };
      targets.set(node.url, target);
    }
    return target;
  };

  const open = (push: PushRequest, node: Node, down: Downstream, chunked: boolean): Relay => {
    const { method } = push;
    const target = targetOf(node);
    const started = performance.now();
    let settled = false;

    const refuse = (status: number, message: string, outcome: 'rejected' | 'upstream_error'): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      exchange.abort();
      metrics.countPush(method, outcome, node.id);
      if (outcome === 'upstream_error') logger.error({ method, url: push.target, node: node.id, status }, message);
      down.refuse(status, message);
    };

    const exchange = target.pool.request(method, requestHead(push, target.prefix + push.target, target.host, chunked), chunked, {
      onHead(head) {
        clearTimeout(timer);
        if (settled) return;
        settled = true;
        metrics.observeUpstream(node.id, (performance.now() - started) / 1e3);
        metrics.countPush(method, 'proxied', node.id);
        down.start(head.status, head.statusMessage, responseHeaders(head));
      },
      onData(chunk) {
        if (!down.write(chunk)) {
          exchange.socket.pause();
          down.onDrain(() => exchange.socket.resume());
        }
      },
      onEnd() {
        down.end();
      },
      onError(error, headStarted) {
        if (headStarted || settled) {
          down.destroy();
          return;
        }
        refuse(502, `pushgateway ${JSON.stringify(node.id)} unreachable: ${describeError(error)}`, 'upstream_error');
      },
    });

    const timer = setTimeout(() => {
      refuse(504, `pushgateway ${JSON.stringify(node.id)} did not answer within ${options.timeoutMs}ms`, 'upstream_error');
    }, options.timeoutMs);

    return {
      write: (chunk) => exchange.write(chunk),
      upstream: exchange.socket,
      end: () => exchange.end(),
      send: (body) => exchange.send(body),
      refuse,
      cancel() {
        clearTimeout(timer);
        exchange.abort();
      },
    };
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

    const chunked = length === undefined && req.headers['transfer-encoding'] !== undefined;
    const push: PushRequest = {
      method,
      target: req.url ?? '',
      rawHeaders: req.rawHeaders,
      connection: req.headers.connection,
      remoteAddress: req.socket.remoteAddress ?? '',
      encrypted: 'encrypted' in req.socket && req.socket.encrypted === true,
    };
    const relay = open(push, node, nodeDownstream(req, res), chunked);

    // The client went away before the answer was complete: abort the upstream request.
    res.on('close', () => {
      if (!res.writableFinished) relay.cancel();
    });

    if (length === undefined && !chunked) {
      relay.send(undefined);
      req.resume();
      return;
    }
    if (length !== undefined && length <= SMALL_BODY_BYTES) {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => relay.send(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
      return;
    }
    let received = 0;
    req.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (options.maxBodyBytes > 0 && received > options.maxBodyBytes) {
        relay.refuse(413, `push body exceeds --proxy.max-body of ${options.maxBodyBytes} bytes`, 'rejected');
        req.pause();
        return;
      }
      if (!relay.write(chunk)) {
        req.pause();
        relay.upstream.once('drain', () => req.resume());
      }
    });
    req.on('end', () => relay.end());
  };

  return Object.freeze({
    forward,
    open,
    maxBodyBytes: options.maxBodyBytes,
    close() {
      for (const target of targets.values()) target.pool.close();
    },
  });
}
