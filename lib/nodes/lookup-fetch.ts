/**
 * A `fetch` for NodeClient whose connections resolve host names with a given `lookup` (DNS discovery's resolver),
 * which global fetch cannot take without undici's dispatcher. It runs on node:http and node:https, so TLS still
 * verifies the node's certificate against its name, and answers with a standard Response.
 */
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { Readable } from 'node:stream';

/** NO_BODY lists statuses whose Response must have a null body. */
const NO_BODY: ReadonlySet<number> = new Set([204, 205, 304]);

/**
 * createLookupFetch returns a fetch-compatible function for NodeClient: string or URL input, `method`, `headers`,
 * a string or byte `body`, and `signal`. Keep-alive connections are pooled per node; `close` ends them.
 */
export function createLookupFetch(lookup: LookupFunction): typeof fetch & { close(): void } {
  const agents = { http: new http.Agent({ keepAlive: true, lookup }), https: new https.Agent({ keepAlive: true, lookup }) };

  const lookupFetch = (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    if (input instanceof Request) return Promise.reject(new TypeError('lookup fetch takes a URL, not a Request'));
    const url = new URL(input);
    const secure = url.protocol === 'https:';
    const headers: Record<string, string> = {};
    new Headers(init.headers).forEach((value, name) => {
      headers[name] = value;
    });
    const body = init.body;
    if (body !== undefined && body !== null && typeof body !== 'string' && !(body instanceof Uint8Array)) {
      return Promise.reject(new TypeError('lookup fetch takes a string or byte body'));
    }
    return new Promise<Response>((resolve, reject) => {
      const req = (secure ? https : http).request(
        url,
        { method: init.method ?? 'GET', headers, agent: secure ? agents.https : agents.http, ...(init.signal ? { signal: init.signal } : {}) },
        (res) => {
          const responseHeaders = new Headers();
          for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) responseHeaders.append(res.rawHeaders[i] as string, res.rawHeaders[i + 1] as string);
          const status = res.statusCode ?? 502;
          const empty = NO_BODY.has(status) || init.method === 'HEAD';
          if (empty) res.resume();
          try {
            resolve(new Response(empty ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), { status, statusText: res.statusMessage ?? '', headers: responseHeaders }));
          } catch (error) {
            res.destroy();
            reject(error instanceof Error ? error : new Error(String(error)));
          }
        },
      );
      req.on('error', reject);
      req.end(body ?? undefined);
    });
  };
  return Object.assign(lookupFetch, {
    close() {
      agents.http.destroy();
      agents.https.destroy();
    },
  });
}
