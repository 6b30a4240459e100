/**
 * The compatibility mode's proxy: forwards a push to its owner node and relays the answer, for clients that cannot
 * follow a 307 (Python, Node, Ruby, anything sending Authorization). Bodies stream both ways; nothing is buffered
 * whole. A push is never sent to another node after any byte of it may have reached its own: the group could then
 * live on two nodes. Only a push its owner provably did not receive (the connection failed before the request was
 * written) is handed off to the node that owns the group once the owner has left the ring.
 *
 * Upstream, the proxy speaks HTTP/1.1 through undici (the client the Node.js project maintains): one Pool per node,
 * through the `dispatch` API, so llhttp decides what a valid answer is and a node connection goes back to the pool
 * only after its answer was read completely. Whatever llhttp refuses is a 502 naming the node, and none of that
 * answer reaches the client.
 *
 * Pushes to one node may share its connections: up to --proxy.pipelining of them (default 1, see DEFAULT_PIPELINING)
 * are written one after another on a connection, each answered in turn (HTTP/1.1 pipelining), and the pushes written to a node within one turn of the
 * event loop go out in one write (lib/http/turn.ts). So that no push waits on another's client, an answer a client
 * does not take is held, within bounds, or dropped, never paused on its connection; and a push given up on (its
 * client left, or its node was late) stays on its connection and its answer is dropped as it comes, rather than
 * closing the connection under the others. When a connection closes, undici sends the pushes its node had not begun
 * to answer again, on a new connection to the same node: a push is idempotent on a Pushgateway (PUT and POST replace
 * what they name, DELETE deletes). A streamed body is written alone, and nothing is pipelined behind it until its
 * answer begins.
 *
 * Both lanes of the listener forward through `open`: pushes that Node's HTTP server read come through `forward`,
 * which streams their bodies and forwards one push at a time per client connection; the fast lane (fast-lane.ts)
 * calls `open` with a whole small body, one push at a time too, and answers the client through a Downstream of its
 * own.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { LookupFunction } from 'node:net';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';

import type { Logger } from 'pino';
import { type Dispatcher, Pool, buildConnector } from 'undici';

import type { Node } from '../core/node';
import type { DirectorMetrics } from '../metrics';
import { sendText } from './text';
import { holdForTurn } from './turn';

/** ProxyOptions configures createProxy. */
export type ProxyOptions = Readonly<{
  /**
   * How long to wait for a node's response headers (504 after it), and how long a client may take to accept each
   * part of its answer (disconnected after it).
   */
  timeoutMs: number;
  /** Largest body forwarded, in bytes; 0 means no limit. */
  maxBodyBytes: number;
  /** How node host names resolve (DNS discovery's resolver). @default dns.lookup */
  lookup?: LookupFunction;
  /** Most connections to one node; pushes beyond wait for one. @default 64 */
  maxConnections?: number;
  /** Most pushes in flight on one node connection, written one after another (HTTP/1.1 pipelining). @default 1 */
  pipelining?: number;
  /**
   * onConnectFailure hears of every connection to a node that failed before any byte of a push was written to it
   * (refused, unreachable, connect timeout, TLS handshake): a passive health check. Called synchronously; it must
   * not throw, and must not block. @default none
   */
  onConnectFailure?: (node: Node, error: Error) => void;
  /**
   * successor returns the node that owns a key hash once the nodes whose ids are in `excluded` have left the ring
   * (the next distinct node clockwise), or undefined when there is none. With it, a push whose owner provably did
   * not receive it is handed off there; without it, that push gets a 502. @default none
   */
  successor?: (keyHash: number, excluded: ReadonlySet<string>) => Node | undefined;
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
 * PushBody is a push's body: held whole (a Buffer, or undefined for none), or a stream with its declared length
 * (undefined: sent chunked). Only a body held whole can be handed off to another node.
 */
export type PushBody = Buffer | undefined | Readonly<{ stream: Readable; length: number | undefined }>;

/**
 * Downstream is the client side of one proxied push: where the node's answer, or the director's own error answer,
 * goes. `headers` alternates names and values.
 */
export type Downstream = Readonly<{
  start(status: number, statusMessage: string, headers: readonly string[]): void;
  /** write relays a body chunk; false: the client has not taken what was written yet (see `onDrain`). */
  write(chunk: Buffer): boolean;
  /** onDrain calls `resume` once, when the client has taken what was written. */
  onDrain(resume: () => void): void;
  end(): void;
  /** refuse answers with the director's own one-line error and closes the connection afterwards. */
  refuse(status: number, message: string): void;
  /**
   * fail: the node failed after its answer's head arrived. While none of the answer was written to the client
   * yet, this answers like `refuse`; after that all that is left is to cut the connection.
   */
  fail(status: number, message: string): void;
  /** destroy cuts the connection: the client stopped reading. */
  destroy(): void;
}>;

/** Relay is one push in flight: `refuse` abandons it with an answer of the director's own, `cancel` without one. */
export type Relay = Readonly<{
  /** refuse abandons the push and answers the client with an error of the director's own. */
  refuse(status: number, message: string, outcome: 'rejected' | 'upstream_error'): void;
  /** cancel: the client went away. An answer already under way is read to its end and dropped. */
  cancel(): void;
}>;

/** Proxy forwards pushes. `close` ends its connection pools. */
export type Proxy = Readonly<{
  /**
   * forward proxies a push received by Node's HTTP server, streaming its body. Pushes of one client connection are
   * forwarded one at a time, in order: the next once the answer to the previous is complete.
   */
  forward(req: IncomingMessage, res: ServerResponse, node: Node, keyHash?: number): void;
  /**
   * open forwards a push to `node` and relays the answer to `down`. `keyHash` is the push's position on the ring,
   * needed only to hand it off when the owner cannot be reached.
   */
  open(push: PushRequest, node: Node, down: Downstream, body: PushBody, keyHash?: number): Relay;
  /** awaitWritable calls `next` once `socket` has drained, or destroys it after the proxy timeout. */
  awaitWritable(socket: Socket, next: () => void): void;
  maxBodyBytes: number;
  close(): Promise<void>;
}>;

/** DEFAULT_MAX_CONNECTIONS is the default bound on connections to one node. */
export const DEFAULT_MAX_CONNECTIONS = 64;

/**
 * DEFAULT_PIPELINING is the default bound on pushes in flight on one node connection: one. An HTTP/1.1 answer carries
 * nothing that ties it to its request, so on a connection shared by pipelined pushes of different clients a node's
 * surplus answer (two answers in one write, a body longer than its length) is taken as the next client's, and every
 * push behind one whose answer does not come waits for --proxy.timeout
 * (spec/integration/proxy-pipelining-hostile.spec.ts). More is for nodes trusted with both.
 */
export const DEFAULT_PIPELINING = 1;

/** A body up to this size is gathered and sent with the head in one write; larger ones stream. */
export const SMALL_BODY_BYTES = 64 * 1024;

/** The most of an answer read and dropped after its client went away; beyond it the node connection is closed. */
const MAX_DISCARD_BYTES = 1024 * 1024;

/**
 * The most of an answer held for a client that is not taking it; beyond it the client is disconnected. A
 * Pushgateway answers a push with a few bytes at most.
 */
const MAX_HELD_BYTES = 256 * 1024;

/** Pushes of one client connection waiting in Node's lane before the director stops reading that connection. */
const MAX_WAITING = 32;

// RFC 9110 7.6.1 hop-by-hop fields, plus Expect (the director answers 100 Continue itself), Host (set to the node's)
// and Content-Length (undici frames the body it is given). Lower-case, as Node hands header names over.
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
  'content-length',
]);
const FORWARDED = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host']);
// From a node's answer: the hop-by-hop fields. Its Content-Length stays: the fast lane frames by it.
const DROPPED_IN_ANSWER = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authenticate', 'proxy-connection']);

/** connectionTokens returns the fields a Connection header names, beyond the hop-by-hop ones dropped anyway. */
function connectionTokens(value: string | undefined): Set<string> | undefined {
  if (value === undefined) return undefined;
  const lower = value.toLowerCase();
  if (lower === 'keep-alive' || lower === 'close') return undefined;
  return new Set(value.split(',').map((token) => token.trim().toLowerCase()));
}

/**
 * requestHeaders returns the headers for the node, names and values alternating: the end-to-end headers as
 * received, Host set to the node, X-Forwarded-* added. undici adds the body's framing.
 */
function requestHeaders(push: PushRequest, host: string, length: number | undefined): string[] {
  const raw = push.rawHeaders;
  const listed = connectionTokens(push.connection);
  const out = ['host', host];
  let prior: string | undefined;
  let originalHost: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    const lower = name.toLowerCase();
    if (lower === 'host') originalHost ??= value;
    else if (lower === 'x-forwarded-for') prior = prior === undefined ? value : `${prior}, ${value}`;
    if (DROPPED.has(lower) || FORWARDED.has(lower) || lower.startsWith('proxy-') || listed?.has(lower) === true) continue;
    out.push(name, value);
  }
  out.push('X-Forwarded-For', prior === undefined ? push.remoteAddress : `${prior}, ${push.remoteAddress}`);
  out.push('X-Forwarded-Proto', push.encrypted ? 'https' : 'http');
  if (originalHost !== undefined) out.push('X-Forwarded-Host', originalHost);
  if (length !== undefined) out.push('content-length', String(length));
  return out;
}

/** The lengths of the names in DROPPED_IN_ANSWER: a name of any other length is kept without lower-casing it. */
const DROPPED_IN_ANSWER_LENGTHS = new Set([...DROPPED_IN_ANSWER].map((name) => name.length));

/** responseHeaders returns the node's end-to-end response headers, names and values alternating. */
function responseHeaders(raw: readonly Buffer[]): string[] {
  const out: string[] = [];
  let connection: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as Buffer).toString('latin1');
    const value = (raw[i + 1] as Buffer).toString('latin1');
    if (DROPPED_IN_ANSWER_LENGTHS.has(name.length)) {
      const lower = name.toLowerCase();
      if (lower === 'connection') connection = connection === undefined ? value : `${connection}, ${value}`;
      if (DROPPED_IN_ANSWER.has(lower)) continue;
    }
    out.push(name, value);
  }
  // Fields the node's Connection header names are hop-by-hop too (RFC 9110 7.6.1).
  const listed = connectionTokens(connection);
  if (listed === undefined) return out;
  const kept: string[] = [];
  for (let i = 0; i < out.length; i += 2) {
    if (!listed.has((out[i] as string).toLowerCase())) kept.push(out[i] as string, out[i + 1] as string);
  }
  return kept;
}

/** Error codes of undici's own making that say nothing about the node. */
const NOT_NODE_FAILURES = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_ABORTED', 'UND_ERR_DESTROYED', 'UND_ERR_CLOSED', 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', 'UND_ERR_NOT_SUPPORTED']);

/**
 * failureMessage is the client's 502 line for a failed exchange with a node, in the Pushgateway's tone: what went
 * wrong, with the node's name and the system's error code where there is one.
 */
function failureMessage(node: Node, error: Error & { code?: string }): string {
  const name = JSON.stringify(node.id);
  if (error.name === 'HTTPParserError') {
    // llhttp's reason, e.g. "Response does not match the HTTP/1.1 protocol (Missing expected CR after header value)".
    const reason = /\((.*)\)$/.exec(error.message)?.[1] ?? error.message;
    return `pushgateway ${name} sent a malformed answer: ${reason.toLowerCase()}`;
  }
  switch (error.code) {
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
      return `pushgateway ${name} sent a malformed answer: body length does not match content-length`;
    case 'UND_ERR_SOCKET':
      // undici's words for a 101 or a 100 nobody asked for, and for a connection closed in the middle of an answer.
      if (error.message === 'bad upgrade' || error.message === 'bad response') {
        return `pushgateway ${name} sent a malformed answer: unexpected ${error.message === 'bad upgrade' ? '101' : '1xx'} status`;
      }
      return `pushgateway ${name} closed the connection before its answer was complete`;
    case 'UND_ERR_CONNECT_TIMEOUT':
      return `pushgateway ${name} unreachable: connect timeout`;
    case 'UND_ERR_BODY_TIMEOUT':
      return `pushgateway ${name} stopped sending its answer`;
    case 'UND_ERR_HEADERS_TIMEOUT':
      return `pushgateway ${name} did not answer in time`;
    case undefined:
      return `pushgateway ${name} unreachable: ${error.message}`;
    default:
      return `pushgateway ${name} unreachable: ${error.code}`;
  }
}

/**
 * unframed tells why an answer's framing is refused although llhttp takes it: a Transfer-Encoding other than
 * chunked alone, which makes the body run until the node closes the connection (RFC 9112 6.3). A Pushgateway never
 * sends one; relaying it would hand the client whatever the node writes next.
 */
function unframed(raw: readonly Buffer[]): string | undefined {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as Buffer;
    if (name.length !== 17 || name.toString('latin1').toLowerCase() !== 'transfer-encoding') continue;
    const value = (raw[i + 1] as Buffer).toString('latin1').trim().toLowerCase();
    if (value !== 'chunked') return `unsupported transfer-encoding ${JSON.stringify(value)}`;
  }
  return undefined;
}

/** MALFORMED_REASON matches what RFC 9112 allows in a reason phrase: HTAB, SP, VCHAR and obs-text. */
// eslint-disable-next-line no-control-regex
const MALFORMED_REASON = /[^\t\x20-\x7e\x80-\xff]/;

/**
 * Target is one node's pool, and with pipelining the connections it opened (held for the turn when a push is written
 * to one).
 */
type Target = Readonly<{ pool: Pool; prefix: string; host: string; sockets: Set<Socket> }>;

/**
 * nodeDownstream answers through Node's ServerResponse; after an error answer, the rest of the body is dropped.
 */
function nodeDownstream(req: IncomingMessage, res: ServerResponse, answered: () => void): Downstream {
  // The head waits for the first body bytes or the end, so a node failing right after its head still gets a 502.
  let head: (() => void) | undefined;
  const flush = (): void => {
    head?.();
    head = undefined;
  };
  const refuse = (status: number, message: string): void => {
    if (!res.headersSent) res.setHeader('Connection', 'close');
    sendText(res, status, message);
    req.resume();
    answered();
  };
  return {
    start(status, statusMessage, headers) {
      head = () => res.writeHead(status, statusMessage, headers as string[]);
    },
    write(chunk) {
      flush();
      return res.write(chunk);
    },
    onDrain: (resume) => res.once('drain', resume),
    end() {
      flush();
      res.end();
      answered();
    },
    refuse,
    fail(status, message) {
      if (head === undefined) {
        res.destroy();
        return;
      }
      head = undefined;
      refuse(status, message);
    },
    destroy: () => res.destroy(),
  };
}

/** Line is the queue of proxied pushes of one client connection in Node's lane. */
type Line = { busy: boolean; paused: boolean; readonly waiting: (() => void)[] };

/** tracked keeps the connections `connect` opens in `sockets`, each until it closes. */
function tracked(connect: buildConnector.connector, sockets: Set<Socket>): buildConnector.connector {
  return (opts, done) =>
    connect(opts, (...connected) => {
      // On failure undici's connector may pass the error alone.
      const socket = connected[1] ?? undefined;
      if (socket !== undefined) {
        sockets.add(socket);
        socket.once('close', () => sockets.delete(socket));
      }
      done(...connected);
    });
}

/** createProxy returns a proxy with one connection pool per node. */
export function createProxy(options: ProxyOptions, metrics: DirectorMetrics, logger: Logger): Proxy {
  const targets = new Map<string, Target>();
  const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const pipelining = options.pipelining ?? DEFAULT_PIPELINING;
  const { timeoutMs } = options;

  const targetOf = (node: Node): Target => {
    let target = targets.get(node.url);
    if (target === undefined) {
      const url = new URL(node.url);
      const sockets = new Set<Socket>();
      // Half the time for the connection, so a refused or silent owner leaves time to hand the push off.
      const connectOptions = { timeout: Math.max(1, Math.floor(timeoutMs / 2)), ...(options.lookup === undefined ? {} : { lookup: options.lookup }) };
      target = {
        pool: new Pool(url.origin, {
          connections: maxConnections,
          pipelining,
          // The proxy's own timer bounds a push's wait for its answer's head, from the moment it arrives; this one
          // closes a connection whose first push has had no answer for as long since it became first. The pushes
          // behind it are then sent again on a new connection.
          headersTimeout: timeoutMs,
          // A node that stops sending in the middle of its answer.
          bodyTimeout: timeoutMs,
          // With one push per connection there is nothing to write together: `sockets` then stays empty.
          connect: pipelining === 1 ? connectOptions : tracked(buildConnector(connectOptions), sockets),
        }),
        prefix: url.pathname === '/' ? '' : url.pathname,
        host: url.host,
        sockets,
      };
      targets.set(node.url, target);
    }
    return target;
  };

  /** awaitWritable runs `next` once the client socket has room again; a client that reads nothing is cut off. */
  const awaitWritable = (socket: Socket, next: () => void): void => {
    if (!socket.writableNeedDrain || socket.destroyed) {
      next();
      return;
    }
    const go = (): void => {
      clearTimeout(timer);
      socket.off('close', gone);
      next();
    };
    const gone = (): void => {
      clearTimeout(timer);
      socket.off('drain', go);
    };
    const timer = setTimeout(() => {
      socket.off('drain', go);
      socket.destroy();
    }, timeoutMs);
    socket.once('drain', go);
    socket.once('close', gone);
  };

  const open = (push: PushRequest, node: Node, down: Downstream, body: PushBody, keyHash?: number): Relay =>
    new Forwarding(push, node, down, body, keyHash);

  /** Forwarding is one push: one or more attempts (more only when a refused owner hands it off), one answer. */
  class Forwarding implements Relay {
    private readonly started = performance.now();
    private readonly timer: NodeJS.Timeout;
    /** The client has its answer's head, or an error of the director's own. */
    private settled = false;
    /** Nothing more is relayed to the client. */
    private finished = false;
    /** The client went away during the answer: the rest is read and dropped. */
    private discarding = false;
    private discarded = 0;
    private drainTimer: NodeJS.Timeout | undefined;
    /** Bytes of the answer written to a client that has not taken them yet. */
    private held = 0;
    private attempt: Attempt;
    private owners: Set<string> | undefined;

    constructor(
      private readonly push: PushRequest,
      private node: Node,
      private readonly down: Downstream,
      private readonly body: PushBody,
      private readonly keyHash: number | undefined,
    ) {
      this.timer = setTimeout(() => {
        this.refuse(504, `pushgateway ${JSON.stringify(this.node.id)} did not answer within ${timeoutMs}ms`, 'upstream_error');
      }, timeoutMs);
      this.attempt = new Attempt(this);
      this.dispatch(this.attempt);
    }

    /** dispatch sends the push to `this.node`; undici may report back before it returns. */
    private dispatch(attempt: Attempt): void {
      const target = targetOf(this.node);
      const { body } = this;
      const streamed = body !== undefined && !Buffer.isBuffer(body);
      attempt.sockets = target.sockets;
      target.pool.dispatch(
        {
          method: this.push.method,
          path: target.prefix + this.push.target,
          headers: requestHeaders(this.push, target.host, streamed ? body.length : undefined),
          body: streamed ? body.stream : (body ?? null),
          // Every push is idempotent on a Pushgateway (PUT and POST replace what they name, DELETE deletes): undici
          // pipelines only requests it may send again, and sends again only those the node had not begun to answer
          // when their connection closed, on a new connection to the same node.
          idempotent: true,
          // Nothing is pipelined behind a streamed body until the node has answered it: a large push does not hold
          // small ones back.
          blocking: streamed,
        },
        attempt,
      );
    }

    refuse(status: number, message: string, outcome: 'rejected' | 'upstream_error'): void {
      if (this.settled) return;
      this.settled = true;
      this.finished = true;
      clearTimeout(this.timer);
      // A push written and not yet answered stays on its connection (see withdraw); a malformed answer's closes it.
      if (this.attempt.answering) this.attempt.abort();
      else this.withdraw();
      metrics.countPush(this.push.method, outcome, this.node.id);
      if (outcome === 'upstream_error') logger.error({ method: this.push.method, url: this.push.target, node: this.node.id, status }, message);
      this.down.refuse(status, message);
    }

    cancel(): void {
      clearTimeout(this.timer);
      clearTimeout(this.drainTimer);
      if (this.finished) return;
      this.finished = true;
      this.withdraw();
    }

    /**
     * withdraw gives up on the push without disturbing those pipelined with it. One not yet written is dropped
     * before it is. One written stays on its connection, and its answer is read and dropped as it comes: aborting it
     * would close the connection, and undici would then send again every push on it, one whose answer had begun
     * included. A streamed body is alone on its connection, and is aborted.
     */
    private withdraw(): void {
      if (this.attempt.connected && !this.streamed) this.discarding = true;
      else this.attempt.abort();
    }

    private get streamed(): boolean {
      return this.body !== undefined && !Buffer.isBuffer(this.body);
    }

    // What the attempt in flight reports. A stale attempt (one handed off) is never heard from again.

    head(attempt: Attempt, status: number, raw: Buffer[], statusMessage: string): void {
      if (attempt !== this.attempt || this.finished) return;
      const malformed = MALFORMED_REASON.test(statusMessage) ? 'invalid reason phrase' : unframed(raw);
      if (malformed !== undefined) {
        this.refuse(502, `pushgateway ${JSON.stringify(this.node.id)} sent a malformed answer: ${malformed}`, 'upstream_error');
        return;
      }
      clearTimeout(this.timer);
      this.settled = true;
      metrics.observeUpstream(this.node.id, (performance.now() - this.started) / 1e3);
      metrics.countPush(this.push.method, this.owners === undefined ? 'proxied' : 'handed_off', this.node.id);
      this.down.start(status, statusMessage, responseHeaders(raw));
    }

    data(attempt: Attempt, chunk: Buffer): void {
      if (attempt !== this.attempt) return;
      if (this.discarding) {
        this.discarded += chunk.length;
        // Its answer has begun: it is first on its connection, and nothing behind it has had an answer yet.
        if (this.discarded > MAX_DISCARD_BYTES) attempt.abort();
        return;
      }
      if (this.finished) return;
      if (this.down.write(chunk) && this.drainTimer === undefined) return;
      // The client is not taking its answer as fast as the node sends it. The node's connection is not paused for
      // it (the pushes pipelined behind this answer would wait): the director holds at most MAX_HELD_BYTES for the
      // client and gives it --proxy.timeout to take them. Past either it is disconnected, and the rest of the answer
      // is read and dropped.
      this.held += chunk.length;
      if (this.held > MAX_HELD_BYTES) {
        this.letGo();
        return;
      }
      if (this.drainTimer === undefined) {
        this.drainTimer = setTimeout(() => this.letGo(), timeoutMs);
        this.down.onDrain(() => {
          clearTimeout(this.drainTimer);
          this.drainTimer = undefined;
          this.held = 0;
        });
      }
    }

    /** letGo disconnects a client that is not taking its answer; the rest of it is read and dropped. */
    private letGo(): void {
      this.down.destroy();
      this.cancel();
    }

    complete(attempt: Attempt): void {
      if (attempt !== this.attempt || this.finished) return;
      this.finished = true;
      this.down.end();
    }

    failed(attempt: Attempt, error: Error & { code?: string }): void {
      if (attempt !== this.attempt || this.finished) return;
      const failedNode = this.node;
      const unsent = !attempt.connected && (error.code === undefined || !NOT_NODE_FAILURES.has(error.code));
      if (unsent) {
        try {
          options.onConnectFailure?.(failedNode, error);
        } catch (hookError) {
          logger.error({ err: hookError }, 'onConnectFailure threw');
        }
        const next = this.successor();
        if (next !== undefined) {
          logger.info(
            { method: this.push.method, url: this.push.target, node: failedNode.id, to: next.id, reason: failureMessage(failedNode, error) },
            'push handed off: its owner did not receive it',
          );
          this.node = next;
          this.attempt = new Attempt(this);
          this.dispatch(this.attempt);
          return;
        }
      }
      const message = failureMessage(failedNode, error);
      if (this.settled) {
        // The node's head arrived already: a 502 if none of the answer went out, else a cut connection.
        this.finished = true;
        logger.error({ method: this.push.method, url: this.push.target, node: failedNode.id, status: 502 }, message);
        this.down.fail(502, message);
        return;
      }
      this.refuse(502, message, 'upstream_error');
    }

    /** successor finds where a push goes when its owner, and every node it was handed to, did not receive it. */
    private successor(): Node | undefined {
      if (options.successor === undefined || this.keyHash === undefined) return undefined;
      // A streamed body was consumed by the failed attempt, or is being: only a body held whole can go again.
      if (this.body !== undefined && !Buffer.isBuffer(this.body)) return undefined;
      this.owners ??= new Set();
      this.owners.add(this.node.id);
      const next = options.successor(this.keyHash, this.owners);
      return next === undefined || this.owners.has(next.id) ? undefined : next;
    }
  }

  /**
   * Attempt is one dispatch to one node, through undici's handler interface: `onConnect` comes right before the
   * request is written, so an error before it proves the node received nothing of this push.
   */
  class Attempt implements Dispatcher.DispatchHandler {
    connected = false;
    /** The node's answer has begun (its head arrived) and is not complete. */
    answering = false;
    /** The connections of the node it goes to. */
    sockets: ReadonlySet<Socket> = new Set();
    private abortRequest: ((error?: Error) => void) | undefined;
    private aborted = false;

    constructor(private readonly forwarding: Forwarding) {}

    abort(): void {
      this.aborted = true;
      this.abortRequest?.();
    }

    onConnect(abort: (error?: Error) => void): void {
      this.abortRequest = abort;
      // Cancelled while it waited for a connection: abort before a byte is written.
      if (this.aborted) {
        // Withdrawn before it was written: undici drops a request whose onConnect throws, without writing it and
        // without closing the connection (its abort would close it, and the pushes pipelined on it would be sent again).
        throw new Error('the push was withdrawn');
      }
      this.connected = true;
      // The pushes undici writes to this node in this turn (at once, or on a turn of its own for a connection that
      // was idle) go out in one write, whichever connections it picks.
      for (const socket of this.sockets) holdForTurn(socket);
    }

    onHeaders(status: number, raw: Buffer[], _resume: () => void, statusMessage: string): boolean {
      // An interim 1xx answer (llhttp refuses 101 and undici a 100 the request did not ask for): the real one follows.
      if (status < 200) return true;
      this.answering = true;
      this.forwarding.head(this, status, raw, statusMessage);
      return true;
    }

    onData(chunk: Buffer): boolean {
      // Never paused: other pushes may wait behind this answer on its connection (see Forwarding.data).
      this.forwarding.data(this, chunk);
      return true;
    }

    onComplete(): void {
      this.answering = false;
      this.forwarding.complete(this);
    }

    onError(error: Error): void {
      this.answering = false;
      this.forwarding.failed(this, error);
    }
  }

  const lines = new WeakMap<Socket, Line>();

  /** forward queues a push behind the one in flight on its client connection, if any. */
  const forward = (req: IncomingMessage, res: ServerResponse, node: Node, keyHash?: number): void => {
    const method = req.method ?? '';
    const declared = req.headers['content-length'];
    const length = declared === undefined ? undefined : Number(declared);
    if (options.maxBodyBytes > 0 && length !== undefined && length > options.maxBodyBytes) {
      metrics.countPush(method, 'rejected', node.id);
      res.setHeader('Connection', 'close');
      sendText(res, 413, `push body of ${declared} bytes exceeds --proxy.max-body of ${options.maxBodyBytes} bytes`);
      return;
    }
    const { socket } = req;
    let line = lines.get(socket);
    if (line === undefined) {
      line = { busy: false, paused: false, waiting: [] };
      lines.set(socket, line);
      socket.once('close', () => lines.delete(socket));
    }
    const start = (): void => {
      if (socket.destroyed) {
        // The client is gone: nothing that waits behind this push will be answered either.
        line.waiting.length = 0;
        return;
      }
      // The next push goes once this answer is complete and handed to the socket (`res` closes). A client that
      // does not take it within --proxy.timeout of the node's last byte is disconnected.
      let done = false;
      const answered = (): void => {
        if (done) return;
        done = true;
        if (res.writableFinished || socket.destroyed) {
          finishLine(socket, line);
          return;
        }
        const timer = setTimeout(() => socket.destroy(), timeoutMs);
        res.once('close', () => {
          clearTimeout(timer);
          finishLine(socket, line);
        });
      };
      res.once('close', answered);
      if (line.paused && !req.complete) {
        // This push's body is still on the wire: read on (a later push pauses the connection again).
        line.paused = false;
        socket.resume();
      }
      startForward(req, res, node, method, length, keyHash, answered);
    };
    if (!line.busy) {
      line.busy = true;
      start();
      return;
    }
    line.waiting.push(start);
    // Node's server keeps parsing what the client pipelines: stop reading it while enough pushes wait.
    if (line.waiting.length >= MAX_WAITING && !line.paused) {
      line.paused = true;
      socket.pause();
    }
  };

  /** finishLine starts the next push of a client connection once the client has taken the answers so far. */
  const finishLine = (socket: Socket, line: Line): void => {
    awaitWritable(socket, () => {
      const next = line.waiting.shift();
      if (line.paused && line.waiting.length < MAX_WAITING / 2) {
        line.paused = false;
        socket.resume();
      }
      if (next === undefined) line.busy = false;
      // Two turns later: undici puts the node connection back in the pool on a turn of its own, and it is then
      // free for this push.
      else setImmediate(() => setImmediate(next));
    });
  };

  const startForward = (
    req: IncomingMessage,
    res: ServerResponse,
    node: Node,
    method: string,
    length: number | undefined,
    keyHash: number | undefined,
    answered: () => void,
  ): void => {
    const chunked = length === undefined && req.headers['transfer-encoding'] !== undefined;
    const push: PushRequest = {
      method,
      target: req.url ?? '',
      rawHeaders: req.rawHeaders,
      connection: req.headers.connection,
      remoteAddress: req.socket.remoteAddress ?? '',
      encrypted: 'encrypted' in req.socket && req.socket.encrypted === true,
    };
    const down = nodeDownstream(req, res, answered);

    if (length === undefined && !chunked) {
      const relay = open(push, node, down, undefined, keyHash);
      cancelOnClose(res, relay);
      req.resume();
      return;
    }
    if (length !== undefined && length <= SMALL_BODY_BYTES) {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        if (res.destroyed) return;
        const body = chunks.length === 0 ? undefined : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
        cancelOnClose(res, open(push, node, down, body, keyHash));
      });
      return;
    }
    // A large or chunked body streams, within --proxy.max-body.
    let received = 0;
    const stream = new Readable({ read: () => req.resume() });
    req.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (options.maxBodyBytes > 0 && received > options.maxBodyBytes) {
        req.pause();
        relay.refuse(413, `push body exceeds --proxy.max-body of ${options.maxBodyBytes} bytes`, 'rejected');
        return;
      }
      if (!stream.push(chunk)) req.pause();
    });
    req.on('end', () => stream.push(null));
    req.on('aborted', () => stream.destroy(new Error('the client went away')));
    const relay = open(push, node, down, { stream, length }, keyHash);
    cancelOnClose(res, relay);
  };

  /** cancelOnClose cancels the push when its client goes away before the answer was complete. */
  const cancelOnClose = (res: ServerResponse, relay: Relay): void => {
    if (res.destroyed && !res.writableFinished) relay.cancel();
    else
      res.on('close', () => {
        if (!res.writableFinished) relay.cancel();
      });
  };

  return Object.freeze({
    forward,
    open,
    awaitWritable,
    maxBodyBytes: options.maxBodyBytes,
    async close() {
      await Promise.all([...targets.values()].map((target) => target.pool.destroy()));
    },
  });
}
