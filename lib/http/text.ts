/**
 * Plain-text answers in the Pushgateway's manner (Go's http.Error): one line, a newline, nosniff.
 */
import type { ServerResponse } from 'node:http';

/** textAnswer returns the body and headers of a one-line plain-text answer; both listener lanes send it. */
export function textAnswer(message: string): { body: string; headers: Record<string, string> } {
  const body = `${message}\n`;
  return {
    body,
    headers: {
      'Content-Type': 'text/plain; charset=utf-8',
      'X-Content-Type-Options': 'nosniff',
      'Content-Length': String(Buffer.byteLength(body)),
    },
  };
}

/** sendText answers with a one-line plain-text body, unless the response has already started. */
export function sendText(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const { body, headers } = textAnswer(message);
  res.writeHead(status, headers);
  res.end(body);
}
