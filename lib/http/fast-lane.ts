/**
 * The proxy's fast lane. A proxying director's load is nearly all one kind of request: a push whose head and small
 * body arrive together, plainly framed. Node's HTTP server costs more per such push than the rest of the proxy
 * together (IncomingMessage, ServerResponse and their stream machinery; measured with `npm run bench`), so in proxy
 * and auto modes the listener hands each new connection to this lane first.
 *
 * The lane takes only a strict subset of HTTP/1.1 (see readPush) and only pushes the director would proxy. At the
 * first request it does not take, for whatever reason, it gives the connection, with every byte read so far, to
 * Node's HTTP server, which answers that request and keeps the connection from then on. So every refusal,
 * redirect, scrape, chunked or large body, slow client and malformed request is answered by Node's server and the
 * push handler exactly as without the lane: the lane is never lenient and never answers a request of its own.
 */
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';

import type { Logger } from 'pino';

import type { PushMode } from '../config';
import type { FanOut } from '../fanout';
import type { DirectorMetrics } from '../metrics';
import type { Placement } from '../placement';
import { type Downstream, type Proxy, type PushRequest, type Relay, SMALL_BODY_BYTES } from './proxy';
import { followsRedirects, placePush } from './push';
import { textAnswer } from './text';
import { holdForTurn, releaseTurn } from './turn';
import { CRLF, CRLFCRLF, DIGITS, FIELD_LINE, REQUEST_LINE } from './wire';

/** FastLaneOptions configures createFastLane; the timeouts are the listener's. */
export type FastLaneOptions = Readonly<{
  placement: Placement;
  mode: PushMode;
  proxy: Proxy;
  metrics: DirectorMetrics;
  logger: Logger;
  headersTimeoutMs: number;
  keepAliveTimeoutMs: number;
  /** The fan-out DELETE, called for every DELETE placed, as the push handler does. */
  fanOut?: FanOut | undefined;
}>;

/** FastLane takes new connections; `handOff` gives one to Node's HTTP server. */
export type FastLane = Readonly<{
  accept(socket: Socket, handOff: (socket: Socket) => void): void;
  /** closeIdle closes the connections with no push in flight; the others close after their answer. */
  closeIdle(): void;
  /** closeAll closes every connection the lane holds. */
  closeAll(): void;
}>;

/** FastPush is a complete push read off a connection. */
export type FastPush = PushRequest &
  Readonly<{
    body: Buffer;
    /** Bytes the request took, head and body. */
    size: number;
    /** The client asked to close the connection after this request. */
    close: boolean;
    userAgent: string | undefined;
    authorization: boolean;
  }>;

/** Node's default limit on a request head; a longer one is Node's to refuse. */
const MAX_HEAD_BYTES = 16 * 1024;
const MAX_FIELDS = 100;
/** Pipelined bytes held while a push is in flight before the lane stops reading. */
const MAX_PENDING_BYTES = MAX_HEAD_BYTES + SMALL_BODY_BYTES;
/** Node's answer to a connection that sends no request in time. */
const REQUEST_TIMEOUT = 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n';

/**
 * readPush reads one complete push from the start of `data`, or returns undefined when the request is anything
 * else: incomplete, not a push, malformed, or framed in any way but a Content-Length of at most 64 KiB. It accepts
 * less than Node's parser does, never more.
 */
export function readPush(data: Buffer, remoteAddress: string): FastPush | undefined {
  const end = data.indexOf(CRLFCRLF);
  if (end < 0 || end > MAX_HEAD_BYTES) return undefined;
  // The head up to the last header line's CRLF.
  const text = data.toString('latin1', 0, end + 2);
  REQUEST_LINE.lastIndex = 0;
  const requestLine = REQUEST_LINE.exec(text);
  if (requestLine === null) return undefined;

  const rawHeaders: string[] = [];
  let length = 0;
  let sawLength = false;
  let host = false;
  let close = false;
  let connection: string | undefined;
  let userAgent: string | undefined;
  let authorization = false;
  FIELD_LINE.lastIndex = REQUEST_LINE.lastIndex;
  while (FIELD_LINE.lastIndex < text.length) {
    const field = FIELD_LINE.exec(text);
    if (field === null || rawHeaders.length === 2 * MAX_FIELDS) return undefined;
    const name = field[1] as string;
    const value = field[2] as string;
    switch (name.toLowerCase()) {
      case 'content-length':
        if (sawLength || !DIGITS.test(value)) return undefined;
        sawLength = true;
        length = Number(value);
        break;
      case 'transfer-encoding':
      case 'expect':
      case 'upgrade':
        return undefined;
      case 'host':
        if (host) return undefined;
        host = true;
        break;
      case 'connection':
        connection = connection === undefined ? value : `${connection}, ${value}`;
        for (const token of value.toLowerCase().split(',')) if (token.trim() === 'close') close = true;
        break;
      case 'user-agent':
        if (userAgent !== undefined) return undefined;
        userAgent = value;
        break;
      case 'authorization':
        authorization = true;
        break;
    }
    rawHeaders.push(name, value);
  }
  const size = end + 4 + length;
  if (!host || length > SMALL_BODY_BYTES || data.length < size) return undefined;
  return {
    method: requestLine[1] as string,
    target: requestLine[2] as string,
    rawHeaders,
    connection,
    remoteAddress,
    encrypted: false,
    body: data.subarray(end + 4, size),
    size,
    close,
    userAgent,
    authorization,
  };
}

let dateSecond = 0;
let dateText = '';
/** httpDate is the Date header's value, made once a second. */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

/** IN_FLIGHT stands for a push being opened. */
const IN_FLIGHT: Relay = Object.freeze({ refuse: () => undefined, cancel: () => undefined });

/** One connection in the lane. */
class Connection implements Downstream {
  private pending: Buffer | undefined;
  private relay: Relay | undefined;
  /** The head of the node's answer, kept until the first body bytes or the end, to go out in one write. */
  private head: string | undefined;
  private chunked = false;
  private closeAfter = false;
  /** When an idle connection is closed: headers timeout on a new connection, keep-alive timeout after an answer. */
  private deadline: number;
  /** True until the first bytes arrive. */
  private fresh = true;
  /** An answer is complete but the client has not taken it yet: the next push waits. */
  private draining = false;
  /** The client's address, read once when the connection arrives: every push of the connection forwards it. */
  private readonly remoteAddress: string;

  constructor(
    private readonly lane: Lane,
    readonly socket: Socket,
    private readonly handOff: (socket: Socket) => void,
  ) {
    this.deadline = performance.now() + lane.options.headersTimeoutMs;
    this.remoteAddress = socket.remoteAddress ?? '';
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onClose);
    socket.on('error', this.onError);
  }

  private readonly onData = (chunk: Buffer): void => {
    this.fresh = false;
    const data = this.pending === undefined ? chunk : Buffer.concat([this.pending, chunk]);
    this.pending = data;
    if (this.relay !== undefined || this.draining) {
      // Pipelined: it waits for the push in flight, and for the client to take its answer.
      if (data.length > MAX_PENDING_BYTES) this.socket.pause();
      return;
    }
    this.next();
  };

  /** next takes the next request from the bytes read, or hands the connection over. */
  private next(): void {
    const data = this.pending;
    if (data === undefined || data.length === 0) {
      this.pending = undefined;
      return;
    }
    const push = readPush(data, this.remoteAddress);
    if (push === undefined) return this.giveUp();
    const { options } = this.lane;
    if (options.mode === 'auto' && followsRedirects(push.userAgent, push.authorization)) return this.giveUp();
    if (options.proxy.maxBodyBytes > 0 && push.body.length > options.proxy.maxBodyBytes) return this.giveUp();
    const placed = placePush(options.placement, push.method, push.target);
    if (!placed.ok) return this.giveUp();
    if (push.method === 'DELETE') void options.fanOut?.deleted(push.target, placed.node);

    this.pending = data.length > push.size ? data.subarray(push.size) : undefined;
    this.closeAfter ||= push.close;
    options.metrics.countFastLane();
    if (this.lane.debug) options.logger.debug({ method: push.method, url: push.target, node: placed.node.id, lane: 'fast' }, 'push proxied');
    // The proxy may answer before open returns (a push it cannot even send): finish() then clears the placeholder.
    this.relay = IN_FLIGHT;
    const relay = options.proxy.open(push, placed.node, this, push.body.length > 0 ? push.body : undefined, placed.hash);
    if (this.relay === IN_FLIGHT) this.relay = relay;
  }

  /** giveUp hands the connection, and what it read, to Node's HTTP server. */
  private giveUp(): void {
    this.lane.connections.delete(this);
    const { socket } = this;
    socket.off('data', this.onData);
    socket.off('end', this.onEnd);
    socket.off('close', this.onClose);
    socket.off('error', this.onError);
    releaseTurn(socket);
    // Paused, the bytes put back wait for Node's server; resumed once it listens, they reach its parser first.
    socket.pause();
    if (this.pending !== undefined) socket.unshift(this.pending);
    this.pending = undefined;
    this.handOff(socket);
    socket.resume();
  }

  private readonly onEnd = (): void => {
    // The client sends nothing more. A FIN cannot tell a half-close from a client that went away, and both Node's
    // server (httpAllowHalfOpen is false: it destroys the requests in flight and ends the socket) and nginx (a
    // client's early close ends the upstream request) take it as gone: so does the lane. A push in flight is
    // cancelled, pipelined requests not yet forwarded are dropped, and what was written is flushed before closing.
    this.pending = undefined;
    this.lane.connections.delete(this);
    this.relay?.cancel();
    this.relay = undefined;
    this.socket.destroySoon();
  };

  private readonly onClose = (): void => {
    this.lane.connections.delete(this);
    // The client went away before its answer was complete: abort the upstream request.
    this.relay?.cancel();
    this.relay = undefined;
  };

  private readonly onError = (): void => undefined;

  // Downstream: the node's answer goes out as Node's server would write it.

  start(status: number, statusMessage: string, headers: readonly string[]): void {
    let head = `HTTP/1.1 ${status} ${statusMessage}\r\n`;
    let date = false;
    let length = false;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i] as string;
      if (name.length === 4 && name.toLowerCase() === 'date') date = true;
      else if (name.length === 14 && name.toLowerCase() === 'content-length') length = true;
      head += `${name}: ${headers[i + 1] as string}\r\n`;
    }
    if (!date) head += `Date: ${httpDate()}\r\n`;
    head += this.closeAfter ? 'Connection: close\r\n' : this.lane.keepAliveHeaders;
    this.chunked = !length && status !== 204 && status !== 304;
    if (this.chunked) head += 'Transfer-Encoding: chunked\r\n';
    this.head = `${head}\r\n`;
  }

  write(chunk: Buffer): boolean {
    const framed = this.chunked ? [Buffer.from(`${chunk.length.toString(16)}\r\n`, 'latin1'), chunk, CRLF] : [chunk];
    if (this.head !== undefined) {
      // The head and the first bytes of the body in one write.
      framed.unshift(Buffer.from(this.head, 'latin1'));
      this.head = undefined;
    }
    holdForTurn(this.socket);
    return this.socket.write(framed.length === 1 ? chunk : Buffer.concat(framed));
  }

  onDrain(resume: () => void): void {
    this.socket.once('drain', resume);
  }

  end(): void {
    const rest = (this.head ?? '') + (this.chunked ? '0\r\n\r\n' : '');
    if (rest !== '') {
      holdForTurn(this.socket);
      this.socket.write(rest, 'latin1');
    }
    this.head = undefined;
    this.finish();
  }

  refuse(status: number, message: string): void {
    const { body, headers } = textAnswer(message);
    let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'unknown'}\r\n`;
    for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
    this.socket.write(`${head}Date: ${httpDate()}\r\nConnection: close\r\n\r\n${body}`);
    this.closeAfter = true;
    this.finish();
  }

  fail(status: number, message: string): void {
    if (this.head === undefined) {
      this.destroy();
      return;
    }
    // None of the node's answer went out yet: the client gets an answer of the director's own instead.
    this.head = undefined;
    this.refuse(status, message);
  }

  destroy(): void {
    this.relay = undefined;
    this.socket.destroy();
  }

  /**
   * finish ends one push: the connection closes, or, once the client has taken the answer (within the proxy
   * timeout, else it is disconnected), takes the next pipelined request or waits for one. Until then the lane does
   * not read from the client: a client that reads nothing cannot make the director buffer answers for it.
   */
  private finish(): void {
    this.relay = undefined;
    if (this.closeAfter) {
      this.lane.connections.delete(this);
      this.socket.destroySoon();
      return;
    }
    if (this.socket.writableNeedDrain) {
      this.draining = true;
      this.socket.pause();
      this.lane.options.proxy.awaitWritable(this.socket, () => {
        this.draining = false;
        this.takeNext();
      });
      return;
    }
    this.takeNext();
  }

  private takeNext(): void {
    if (this.closeAfter) {
      this.lane.connections.delete(this);
      this.socket.destroySoon();
      return;
    }
    this.deadline = performance.now() + this.lane.options.keepAliveTimeoutMs;
    if (this.socket.isPaused()) this.socket.resume();
    if (this.pending === undefined) return;
    // A pipelined push goes two turns later: undici puts the node connection back in the pool on the next turn (a
    // setImmediate of its own, scheduled after this one), and it is then free for this push.
    this.draining = true;
    setImmediate(() =>
      setImmediate(() => {
        this.draining = false;
        if (!this.socket.destroyed) this.next();
      }),
    );
  }

  /** expire closes an idle connection past its deadline, as Node's server would. */
  expire(now: number): void {
    if (this.relay !== undefined || this.draining || now < this.deadline) return;
    this.lane.connections.delete(this);
    if (this.fresh) {
      this.socket.end(REQUEST_TIMEOUT, 'latin1');
      this.socket.destroySoon();
    } else {
      this.socket.destroy();
    }
  }

  /** shutDown closes the connection now if it is idle, else after its answer. */
  shutDown(): void {
    if (this.relay === undefined && !this.draining) {
      this.lane.connections.delete(this);
      // An answer written in this turn is still held (see holdForTurn): it goes out before the connection closes.
      releaseTurn(this.socket);
      this.socket.destroy();
    } else {
      this.closeAfter = true;
    }
  }
}

class Lane implements FastLane {
  readonly connections = new Set<Connection>();
  readonly debug: boolean;
  readonly keepAliveHeaders: string;
  private sweep: NodeJS.Timeout | undefined;

  constructor(readonly options: FastLaneOptions) {
    this.debug = options.logger.isLevelEnabled('debug');
    this.keepAliveHeaders = `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(options.keepAliveTimeoutMs / 1000)}\r\n`;
  }

  accept(socket: Socket, handOff: (socket: Socket) => void): void {
    this.connections.add(new Connection(this, socket, handOff));
    if (this.sweep === undefined) {
      // Deadlines are checked on an interval, as Node's server checks its own, instead of a timer per connection.
      const every = Math.min(1000, this.options.headersTimeoutMs / 4);
      this.sweep = setInterval(() => {
        const now = performance.now();
        for (const connection of this.connections) connection.expire(now);
        if (this.connections.size === 0) {
          clearInterval(this.sweep);
          this.sweep = undefined;
        }
      }, every);
      this.sweep.unref();
    }
  }

  closeIdle(): void {
    for (const connection of this.connections) connection.shutDown();
  }

  closeAll(): void {
    for (const connection of this.connections) connection.socket.destroy();
    this.connections.clear();
  }
}

/** createFastLane returns the lane for a proxying listener. */
export function createFastLane(options: FastLaneOptions): FastLane {
  return new Lane(options);
}
