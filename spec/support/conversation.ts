/**
 * A raw client connection for specs that must speak, and see, exact bytes.
 */
import net from 'node:net';

import { until } from './wait';

/** Response is one HTTP/1.1 response read off a raw connection. */
export type Response = { status: number; head: string; headers: Map<string, string>; body: string };

/**
 * Conversation is a raw client connection: it writes bytes as told and parses the responses as they come
 * (Content-Length or chunked bodies), so a spec can speak exactly the bytes it means.
 */
export class Conversation {
  readonly socket: net.Socket;
  readonly responses: Response[] = [];
  closed = false;
  /** Every byte received, as latin1. */
  received = '';
  private buffer = '';

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.setNoDelay(true);
    this.socket.on('data', (chunk: Buffer) => {
      this.buffer += chunk.toString('latin1');
      this.received += chunk.toString('latin1');
      this.parse();
    });
    this.socket.on('close', () => (this.closed = true));
    this.socket.on('error', () => undefined);
  }

  write(text: string): void {
    this.socket.write(Buffer.from(text, 'latin1'));
  }

  async waitFor(count: number, timeoutMs = 5000): Promise<Response[]> {
    await until(() => this.responses.length >= count, `${count} responses, got ${this.responses.length}`, timeoutMs);
    return this.responses;
  }

  close(): void {
    this.socket.destroy();
  }

  private parse(): void {
    for (;;) {
      const end = this.buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = this.buffer.slice(0, end);
      const lines = head.split('\r\n');
      const headers = new Map<string, string>();
      for (const line of lines.slice(1)) headers.set(line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim());
      let rest = this.buffer.slice(end + 4);
      let body = '';
      if (headers.get('transfer-encoding') === 'chunked') {
        for (;;) {
          const eol = rest.indexOf('\r\n');
          if (eol < 0) return;
          const size = parseInt(rest.slice(0, eol), 16);
          if (rest.length < eol + 2 + size + 2) return;
          body += rest.slice(eol + 2, eol + 2 + size);
          rest = rest.slice(eol + 2 + size + 2);
          if (size === 0) break;
        }
      } else {
        const length = Number(headers.get('content-length') ?? 0);
        if (rest.length < length) return;
        body = rest.slice(0, length);
        rest = rest.slice(length);
      }
      this.buffer = rest;
      const status = Number(lines[0]?.split(' ')[1]);
      // An interim 100 Continue is not the answer.
      if (status >= 200) this.responses.push({ status, head, headers, body });
    }
  }
}
