/**
 * A lean HTTP/1.1 client for the proxy: one keep-alive pool of raw sockets per node. Node's http.ClientRequest
 * costs several times what the whole server side of a push costs (measured with `npm run bench`), so the proxy
 * writes the request head itself and reads the answer with the small response parser below. It speaks exactly what
 * a Pushgateway needs: one request at a time per connection, Content-Length or chunked bodies both ways.
 */
import net from 'node:net';
import tls from 'node:tls';

/**
 * ResponseHead is a parsed status line and header block; `rawHeaders` alternates names and values, `connection` is
 * the Connection header's value, if any.
 */
export type ResponseHead = Readonly<{
  status: number;
  statusMessage: string;
  rawHeaders: readonly string[];
  connection: string | undefined;
  keepAlive: boolean;
}>;

/** ExchangeHandlers receive one response: its head, then its body in chunks, then the end or an error. */
export type ExchangeHandlers = {
  onHead(head: ResponseHead): void;
  onData(chunk: Buffer): void;
  onEnd(): void;
  /** `started` is true once the head arrived. */
  onError(error: NodeJS.ErrnoException, started: boolean): void;
};

const CRLFCRLF = Buffer.from('\r\n\r\n');
const READ_BUFFER_BYTES = 16 * 1024;

/**
 * FIELD_LINE matches one header line at `lastIndex` (it is sticky): an RFC 9110 token, a colon, and a value of
 * visible characters, spaces, tabs and obs-text, without the whitespace around it. Nothing else passes: no bare CR
 * or LF, no NUL, no obs-fold, no space before the colon. Callers set `lastIndex` and exec in one synchronous loop.
 */
// eslint-disable-next-line no-control-regex
export const FIELD_LINE = /([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*?)[ \t]*\r\n/y;
// eslint-disable-next-line no-control-regex
const STATUS_LINE = /HTTP\/1\.([01]) ([1-9]\d\d)(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?\r\n/y;
/** DIGITS is a Content-Length's value: decimal digits only, no sign or space, within a safe integer. */
export const DIGITS = /^\d{1,15}$/;

class ProtocolError extends Error {
  code = 'EPROTO';
}

/**
 * ResponseParser reads one HTTP/1.1 response from a byte stream. `feed` returns true when the response is complete.
 */
class ResponseParser {
  private state: 'head' | 'length' | 'chunk-size' | 'chunk-data' | 'chunk-crlf' | 'trailers' | 'close' | 'done' = 'head';
  private pending: Buffer | undefined;
  private remaining = 0;
  keepAlive = true;

  constructor(
    private readonly method: string,
    private readonly handlers: ExchangeHandlers,
  ) {}

  feed(chunk: Buffer): boolean {
    let data = this.pending === undefined ? chunk : Buffer.concat([this.pending, chunk]);
    this.pending = undefined;
    while (data.length > 0 && this.state !== 'done') {
      switch (this.state) {
        case 'head': {
          const end = data.indexOf(CRLFCRLF);
          if (end < 0) {
            if (data.length > 64 * 1024) throw new ProtocolError('response head over 64 KiB');
            this.pending = Buffer.from(data);
            return false;
          }
          const consumed = this.readHead(data.toString('latin1', 0, end + 2));
          data = data.subarray(end + 4);
          if (!consumed) continue; // an interim 1xx answer: the real one follows
          break;
        }
        case 'length':
          data = this.takeBody(data);
          if (this.remaining === 0) this.state = 'done';
          break;
        case 'close':
          this.handlers.onData(Buffer.from(data));
          return false;
        case 'chunk-size':
        case 'chunk-crlf':
        case 'trailers': {
          const eol = data.indexOf('\r\n');
          if (eol < 0) {
            this.pending = Buffer.from(data);
            return false;
          }
          const line = data.toString('latin1', 0, eol);
          data = data.subarray(eol + 2);
          if (this.state === 'chunk-crlf') {
            if (line !== '') throw new ProtocolError('malformed chunk');
            this.state = 'chunk-size';
          } else if (this.state === 'trailers') {
            if (line === '') this.state = 'done';
          } else {
            const size = parseInt(line.split(';', 1)[0] as string, 16);
            if (!Number.isFinite(size) || size < 0) throw new ProtocolError('malformed chunk size');
            this.remaining = size;
            this.state = size === 0 ? 'trailers' : 'chunk-data';
          }
          break;
        }
        case 'chunk-data':
          data = this.takeBody(data);
          if (this.remaining === 0) this.state = 'chunk-crlf';
          break;
      }
    }
    if (this.state === 'done') {
      // One request at a time: bytes past the response mean the connection cannot be trusted again.
      if (data.length > 0) this.keepAlive = false;
      this.handlers.onEnd();
      return true;
    }
    return false;
  }

  /** takeBody hands up to `remaining` body bytes to onData (a copy: reads arrive in a reused buffer); returns the rest. */
  private takeBody(data: Buffer): Buffer {
    const take = Math.min(this.remaining, data.length);
    this.handlers.onData(Buffer.from(data.subarray(0, take)));
    this.remaining -= take;
    return data.subarray(take);
  }

  /** closed tells the parser the connection ended; true when that completes a read-until-close body. */
  closed(): boolean {
    if (this.state === 'close') {
      this.state = 'done';
      this.handlers.onEnd();
      return true;
    }
    return this.state === 'done';
  }

  get started(): boolean {
    return this.state !== 'head';
  }

  /** readHead reads a status line and header block; `text` ends with the last header line's CRLF. */
  private readHead(text: string): boolean {
    STATUS_LINE.lastIndex = 0;
    const statusLine = STATUS_LINE.exec(text);
    if (!statusLine) throw new ProtocolError('malformed status line');
    const status = Number(statusLine[2]);
    if (status >= 100 && status < 200 && status !== 101) return false;
    const rawHeaders: string[] = [];
    let length: number | undefined;
    let chunked = false;
    let keepAlive = statusLine[1] === '1';
    let connection: string | undefined;
    FIELD_LINE.lastIndex = STATUS_LINE.lastIndex;
    while (FIELD_LINE.lastIndex < text.length) {
      // Only well-formed fields are relayed: a stray CR, LF or NUL in a node's answer must not reach the client.
      const field = FIELD_LINE.exec(text);
      if (field === null) throw new ProtocolError('malformed header line');
      const name = field[1] as string;
      const value = field[2] as string;
      rawHeaders.push(name, value);
      // Only names as long as the three read here are lower-cased.
      switch (name.length === 10 || name.length === 14 || name.length === 17 ? name.toLowerCase() : '') {
        case 'content-length':
          if (!DIGITS.test(value) || (length !== undefined && length !== Number(value))) throw new ProtocolError('malformed Content-Length');
          length = Number(value);
          break;
        case 'transfer-encoding':
          chunked = value.toLowerCase().endsWith('chunked');
          break;
        case 'connection': {
          connection = value;
          const tokens = value.toLowerCase();
          if (tokens.includes('close')) keepAlive = false;
          else if (tokens.includes('keep-alive')) keepAlive = true;
          break;
        }
      }
    }
    this.keepAlive = keepAlive;
    this.handlers.onHead({ status, statusMessage: statusLine[3] ?? '', rawHeaders, connection, keepAlive });
    if (this.method === 'HEAD' || status === 204 || status === 304) this.state = 'done';
    else if (chunked) this.state = 'chunk-size';
    else if (length !== undefined) {
      this.remaining = length;
      this.state = length === 0 ? 'done' : 'length';
    } else {
      this.keepAlive = false;
      this.state = 'close';
    }
    return true;
  }
}

/** Exchange is one request in flight: its body goes out through `send` (all at once) or `write`s and `end`. */
export type Exchange = Readonly<{
  /** send writes the head and the whole body (possibly empty) in one go, and ends the request. */
  send(body: Buffer | undefined): void;
  /** write streams one body chunk (the head goes out first); false asks the caller to wait for 'drain'. */
  write(chunk: Buffer): boolean;
  end(): void;
  abort(): void;
  /** The connection, to wait for 'drain'. */
  socket: net.Socket;
}>;

/** Reader receives what happens on a connection while an exchange uses it. */
type Reader = Readonly<{
  data(chunk: Buffer): void;
  end(): void;
  error(error: NodeJS.ErrnoException): void;
}>;

/** Link is one keep-alive connection: its socket and who reads it now (nobody while it is idle). */
type Link = { readonly socket: net.Socket; reader: Reader | undefined };

/** UpstreamPool keeps idle keep-alive connections to one node. */
export class UpstreamPool {
  private readonly idle: Link[] = [];
  private closed = false;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly secure: boolean,
    private readonly maxIdle = 64,
    private readonly lookup: net.LookupFunction | undefined = undefined,
  ) {}

  /**
   * connect opens a connection. Its listeners stay for its whole life and pass events to the exchange using it;
   * while it is idle, anything from the node (bytes, an end, an error) just drops it from the pool.
   */
  private connect(): Link {
    let socket: net.Socket;
    if (this.secure) {
      // TLS sockets take no `onread`: their reads arrive as 'data' events.
      socket = tls.connect({
        host: this.host,
        port: this.port,
        servername: net.isIP(this.host) === 0 ? this.host : undefined,
        ...(this.lookup === undefined ? {} : { lookup: this.lookup }),
      });
      socket.on('data', (chunk: Buffer) => (link.reader === undefined ? this.drop(link) : link.reader.data(chunk)));
    } else {
      // `onread` hands each read to us in one reused buffer, without a stream 'data' event per read: the cheapest
      // way Node offers to read a socket. The bytes are only valid during the callback; the parser copies what it
      // keeps.
      const onread = {
        buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES),
        callback: (bytes: number, buffer: Uint8Array): boolean => {
          if (link.reader === undefined) this.drop(link);
          else link.reader.data(Buffer.from(buffer.buffer, buffer.byteOffset, bytes));
          return true;
        },
      };
      socket = net.connect({ host: this.host, port: this.port, onread, ...(this.lookup === undefined ? {} : { lookup: this.lookup }) });
    }
    const link: Link = { socket, reader: undefined };
    socket.setNoDelay(true);
    const ended = (): void => (link.reader === undefined ? this.drop(link) : link.reader.end());
    socket.on('end', ended);
    socket.on('close', ended);
    socket.on('error', (error: NodeJS.ErrnoException) => (link.reader === undefined ? this.drop(link) : link.reader.error(error)));
    return link;
  }

  private drop(link: Link): void {
    link.socket.destroy();
    const at = this.idle.indexOf(link);
    if (at >= 0) this.idle.splice(at, 1);
  }

  private acquire(): Link {
    for (;;) {
      const link = this.idle.pop();
      if (link === undefined) return this.connect();
      if (!link.socket.destroyed && link.socket.writable) return link;
    }
  }

  private release(link: Link): void {
    if (this.closed || this.idle.length >= this.maxIdle || link.socket.destroyed) {
      link.socket.destroy();
      return;
    }
    this.idle.push(link);
  }

  /**
   * request sends a request head (`head` ends with the blank line) and returns the exchange; the body follows
   * through `write` and `end`. With `chunked`, body chunks are framed here.
   */
  request(method: string, head: string, chunked: boolean, handlers: ExchangeHandlers): Exchange {
    const link = this.acquire();
    const { socket } = link;
    const parser = new ResponseParser(method, handlers);
    let finished = false;
    const fail = (error: NodeJS.ErrnoException): void => {
      if (finished) return;
      finished = true;
      link.reader = undefined;
      socket.destroy();
      handlers.onError(error, parser.started);
    };
    const done = (): void => {
      finished = true;
      link.reader = undefined;
      // A node may answer before the body is all sent (an early 4xx): that connection is not reusable.
      if (parser.keepAlive && requestEnded) this.release(link);
      else socket.destroy();
    };
    link.reader = {
      data(chunk) {
        try {
          if (parser.feed(chunk)) done();
        } catch (error) {
          fail(error as NodeJS.ErrnoException);
        }
      },
      end() {
        if (parser.closed()) done();
        else fail(Object.assign(new Error('connection closed before the response was complete'), { code: 'ECONNRESET' }));
      },
      error: fail,
    };

    let requestEnded = false;
    let headSent = false;
    // Batch what is written in one tick into one writev.
    const batch = (): void => {
      if (socket.writableCorked === 0) {
        socket.cork();
        process.nextTick(() => socket.uncork());
      }
      if (!headSent) {
        headSent = true;
        socket.write(head, 'latin1');
      }
    };
    return {
      socket,
      send(body: Buffer | undefined): void {
        // The node may have answered, or failed, before the body was all here.
        if (finished || requestEnded) return;
        if (!headSent && !chunked) {
          // Head and body in one buffer, one write: cheaper than a writev of the two.
          headSent = true;
          requestEnded = true;
          const size = Buffer.byteLength(head, 'latin1');
          const whole = Buffer.allocUnsafe(size + (body?.length ?? 0));
          whole.write(head, 0, 'latin1');
          body?.copy(whole, size);
          socket.write(whole);
          return;
        }
        batch();
        if (body !== undefined && body.length > 0) {
          if (chunked) socket.write(`${body.length.toString(16)}\r\n`, 'latin1');
          socket.write(body);
          if (chunked) socket.write('\r\n', 'latin1');
        }
        this.end();
      },
      write(chunk: Buffer): boolean {
        if (finished || chunk.length === 0) return true;
        batch();
        if (!chunked) return socket.write(chunk);
        socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
        socket.write(chunk);
        return socket.write('\r\n', 'latin1');
      },
      end(): void {
        if (finished || requestEnded) return;
        batch();
        requestEnded = true;
        if (chunked) socket.write('0\r\n\r\n', 'latin1');
      },
      abort(): void {
        if (finished) return;
        finished = true;
        link.reader = undefined;
        socket.destroy();
      },
    };
  }

  /** close drops every idle connection and stops pooling. */
  close(): void {
    this.closed = true;
    for (const link of this.idle.splice(0)) link.socket.destroy();
  }
}
