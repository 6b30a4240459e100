/**
 * The compatibility mode's proxy: forwards a push to its owner node and relays the answer, for clients that cannot
 * follow a 307 (Python, Node, Ruby, anything sending Authorization). Bodies stream both ways; nothing is buffered
 * whole. A push is never retried on another node: the group would then live on two nodes.
 */
import http, { type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import https from 'node:https';

import type { Logger } from 'pino';

import type { Node } from '../core/node';
import type { DirectorMetrics } from '../metrics';
import { sendText } from './text';

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

/** forwardHeaders copies the end-to-end request headers and adds X-Forwarded-*. */
function forwardHeaders(req: IncomingMessage): OutgoingHttpHeaders {
  const listed = connectionTokens(req.headers.connection);
  const out: OutgoingHttpHeaders = {};
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const lower = name.toLowerCase();
    if (DROPPED.has(lower) || lower.startsWith('proxy-') || listed?.has(lower) === true) continue;
    if (lower === 'x-forwarded-for' || lower === 'x-forwarded-proto' || lower === 'x-forwarded-host') continue;
    const existing = out[name];
    out[name] = existing === undefined ? (raw[i + 1]) : `${String(existing)}, ${raw[i + 1] as string}`;
  }
  const client = req.socket.remoteAddress ?? '';
  const prior = req.headers['x-forwarded-for'];
  out['X-Forwarded-For'] = prior === undefined ? client : `${String(prior)}, ${client}`;
  out['X-Forwarded-Proto'] = 'encrypted' in req.socket && req.socket.encrypted === true ? 'https' : 'http';
  if (req.headers.host !== undefined) out['X-Forwarded-Host'] = req.headers.host;
  return out;
}

/** responseHeaders copies the node's end-to-end response headers. */
function responseHeaders(headers: IncomingHttpHeaders, rawHeaders: readonly string[]): OutgoingHttpHeaders {
  const listed = connectionTokens(headers.connection);
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

/** createProxy returns a proxy with one keep-alive pool per node. */
export function createProxy(options: ProxyOptions, metrics: DirectorMetrics, logger: Logger): Proxy {
  const agentOptions = { keepAlive: true, maxFreeSockets: options.maxFreeSockets ?? 64, scheduling: 'lifo' as const };
  const httpAgent = new http.Agent(agentOptions);
  const httpsAgent = new https.Agent(agentOptions);
  const targets = new Map<string, Readonly<{ url: URL; prefix: string }>>();

  const targetOf = (node: Node): Readonly<{ url: URL; prefix: string }> => {
    let target = targets.get(node.url);
    if (target === undefined) {
      const url = new URL(node.url);
      target = { url, prefix: url.pathname === '/' ? '' : url.pathname };
      targets.set(node.url, target);
    }
    return target;
  };

  const forward = (req: IncomingMessage, res: ServerResponse, node: Node): void => {
    const method = req.method ?? '';
    const declared = req.headers['content-length'];
    if (options.maxBodyBytes > 0 && declared !== undefined && Number(declared) > options.maxBodyBytes) {
      metrics.countPush(method, 'rejected', node.id);
      res.setHeader('Connection', 'close');
      sendText(res, 413, `push body of ${declared} bytes exceeds --proxy.max-body of ${options.maxBodyBytes} bytes`);
      return;
    }

    const { url, prefix } = targetOf(node);
    const started = process.hrtime.bigint();
    let settled = false;
    const upstream = (url.protocol === 'https:' ? https : http).request({
      agent: url.protocol === 'https:' ? httpsAgent : httpAgent,
      protocol: url.protocol,
      hostname: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname,
      port: url.port,
      method,
      path: prefix + (req.url ?? ''),
      headers: { ...forwardHeaders(req), Host: url.host },
    });

    const fail = (status: number, message: string): void => {
      if (settled) return;
      settled = true;
      metrics.countPush(method, 'upstream_error', node.id);
      logger.error({ method, url: req.url, node: node.id, status }, message);
      upstream.destroy();
      res.setHeader('Connection', 'close');
      sendText(res, status, message);
    };

    const timer = setTimeout(() => {
      fail(504, `pushgateway ${JSON.stringify(node.id)} did not answer within ${options.timeoutMs}ms`);
    }, options.timeoutMs);

    upstream.on('response', (answer) => {
      clearTimeout(timer);
      if (settled) {
        answer.resume();
        return;
      }
      settled = true;
      metrics.observeUpstream(node.id, Number(process.hrtime.bigint() - started) / 1e9);
      metrics.countPush(method, 'proxied', node.id);
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, responseHeaders(answer.headers, answer.rawHeaders));
      answer.pipe(res);
      answer.on('error', () => res.destroy());
    });
    upstream.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (settled) {
        res.destroy();
        return;
      }
      fail(502, `pushgateway ${JSON.stringify(node.id)} unreachable: ${describeError(error)}`);
    });

    // The client went away before the answer was complete: abort the upstream request.
    res.on('close', () => {
      clearTimeout(timer);
      if (!res.writableFinished) upstream.destroy();
    });

    if (options.maxBodyBytes > 0) {
      let received = 0;
      req.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > options.maxBodyBytes) {
          req.unpipe(upstream);
          clearTimeout(timer);
          if (!settled) {
            settled = true;
            upstream.destroy();
            metrics.countPush(method, 'rejected', node.id);
            res.setHeader('Connection', 'close');
            sendText(res, 413, `push body exceeds --proxy.max-body of ${options.maxBodyBytes} bytes`);
          }
        }
      });
    }
    req.pipe(upstream);
  };

  return Object.freeze({
    forward,
    close() {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  });
}
