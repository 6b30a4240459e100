/**
 * Plain-text answers in the Pushgateway's manner (Go's http.Error): one line, a newline, nosniff.
 */
import type { ServerResponse } from 'node:http';

/** sendText answers with a one-line plain-text body, unless the response has already started. */
export function sendText(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = `${message}\n`;
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'X-Content-Type-Options': 'nosniff',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}
