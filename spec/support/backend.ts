/**
 * Real node:http backends standing in for Pushgateways in integration specs: they record what reached them and
 * answer as told.
 */
import { createHash } from 'node:crypto';
import http, { type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Received is one request as a backend saw it. */
export type Received = Readonly<{
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  bytes: number;
  sha256: string;
  body: string;
}>;

/** Backend is a running recording server. */
export type Backend = Readonly<{
  url: string;
  port: number;
  received: Received[];
  server: Server;
  close(): Promise<void>;
}>;

/** Responder answers one recorded request; the default answers 200 with an empty body. */
export type Responder = (req: http.IncomingMessage, res: http.ServerResponse, received: Received) => void;

/** startBackend starts a recording backend on a free loopback port. */
export async function startBackend(respond?: Responder): Promise<Backend> {
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    const hash = createHash('sha256');
    let bytes = 0;
    const head: Buffer[] = [];
    req.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
      if (bytes <= 4096) head.push(chunk);
    });
    req.on('end', () => {
      const entry: Received = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        bytes,
        sha256: hash.digest('hex'),
        body: Buffer.concat(head).toString('utf8'),
      };
      received.push(entry);
      if (respond) respond(req, res, entry);
      else {
        res.writeHead(200, { 'Content-Length': 0 });
        res.end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    received,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
