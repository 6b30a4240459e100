/**
 * The director's own requests to its Pushgateways, as opposed to the pushes it proxies for clients: listing groups,
 * deleting and re-pushing a group, health checks. Every such request goes through one NodeClient, so the node
 * credentials (Authorization) and the timeout apply to all of them alike. Clients' own Authorization never passes
 * here; the proxy relays it untouched.
 */
import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';

import { type Group, groupFromApi, groupPath } from '../core/group';
import type { Node } from '../core/node';
import { readListing } from './listing';
import { createLookupFetch } from './lookup-fetch';

/** NodeClientOptions configures createNodeClient. */
export type NodeClientOptions = Readonly<{
  /** Per-request timeout. */
  timeoutMs: number;
  /** The Authorization header value the director sends to every node (`Basic ...`, `Bearer ...`); never logged. */
  authorization?: string | undefined;
  /** The HTTP client; global fetch by default. */
  fetchFn?: typeof fetch;
  /**
   * How node host names resolve (DNS discovery's resolver), when not the system's: requests then go through
   * node:http with this lookup instead of global fetch. Ignored when `fetchFn` is given.
   */
  lookup?: LookupFunction | undefined;
}>;

/** ListedGroup is a group with the exact JSON text of its element in the node's listing, to re-emit it unchanged. */
export type ListedGroup = Readonly<{ group: Group; text: string }>;

/** EachGroupOptions configures NodeClient.eachGroup. */
export type EachGroupOptions = Readonly<{
  /**
   * Called with each group's JSON text before it is parsed: true says the caller already holds that exact group from
   * an earlier listing, and `visit` is not called for it (readListing's `known`).
   */
  known?: (text: string) => boolean;
  /**
   * Called once the node starts to answer (its headers arrived), before the body is read. A Pushgateway encodes its
   * whole listing before it sends a byte, so by then the node has done the costly part of the listing.
   */
  onAnswer?: () => void;
}>;

/** HealthAnswer is the outcome of one health check: the node's status, or why there was none. */
export type HealthAnswer = Readonly<{ ok: true; status: number }> | Readonly<{ ok: false; reason: string }>;

/** NodeClient makes the director's own requests to nodes. Errors are thrown as Error with a one-line message. */
export type NodeClient = Readonly<{
  /**
   * listGroups returns every group the node holds (`GET /api/v1/metrics`). The answer is read as it streams in and
   * parsed group by group, yielding to the event loop every few milliseconds (lib/nodes/listing.ts), so a node with
   * tens of thousands of groups never holds up the pushes; it is refused whole when any part of it is malformed.
   */
  listGroups(node: Node): Promise<Group[]>;
  /** listGroupsWithText is listGroups keeping each group's JSON text too (twice the memory: for re-emitting). */
  listGroupsWithText(node: Node): Promise<ListedGroup[]>;
  /**
   * eachGroup is listGroups without the list: it calls `visit` with each group (and its JSON text) as it is read, so
   * a caller keeps only what it needs. When it rejects, the groups already visited are not a listing: discard them.
   */
  eachGroup(node: Node, visit: (group: Group, text: string) => void, options?: EachGroupOptions): Promise<void>;
  /** deleteGroup deletes one group from the node (`DELETE` on its all-@base64 path); the node answers 202 either way. */
  deleteGroup(node: Node, labels: Readonly<Record<string, string>>): Promise<void>;
  /** putGroup replaces a group on the node with a text-format body. */
  putGroup(node: Node, labels: Readonly<Record<string, string>>, body: string): Promise<void>;
  /** postGroup merges a text-format body into a group on the node: families of the same name are replaced, others kept. */
  postGroup(node: Node, labels: Readonly<Record<string, string>>, body: string): Promise<void>;
  /**
   * checkHealth asks `GET /-/healthy` and resolves with the status, or with why there was none (the socket error
   * code, or `no answer within <timeoutMs>ms`); it never rejects. It runs on node:http with kept-alive connections
   * rather than fetch: a check costs about a third of what fetch costs, which is what keeps 100 nodes' checks under
   * 1% of a core.
   */
  checkHealth(node: Node, timeoutMs: number): Promise<HealthAnswer>;
  /** request is the raw form for everything else: a node-relative path, the client's timeout and credentials applied. */
  request(node: Node, path: string, init?: RequestInit & { timeoutMs?: number }): Promise<Response>;
}>;

/**
 * statusMessage describes a node's unexpected answer in one line. A 401 or 403 says which settings carry the
 * director's credentials, since that is the usual cause: a Pushgateway behind basic auth.
 */
export function statusMessage(action: string, node: Node, status: number, sentCredentials: boolean): string {
  if (status === 401 || status === 403) {
    const fix = sentCredentials
      ? 'the node refused the director\'s credentials (--node.basic-auth.* or --node.authorization.*)'
      : 'the node wants credentials: set --node.basic-auth.username and --node.basic-auth.password-file, or --node.authorization.credentials-file';
    return `${action} ${node.id}: HTTP ${status}: ${fix}`;
  }
  return `${action} ${node.id}: HTTP ${status}`;
}

/** unreachableMessage says why a request to a node got no answer, in the Pushgateway's tone ("fetch failed" does not). */
function unreachableMessage(node: Node, error: unknown, timeoutMs: number): string {
  const err = error as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (err.name === 'TimeoutError' || err.name === 'AbortError') return `pushgateway ${JSON.stringify(node.id)} did not answer within ${timeoutMs}ms`;
  return `pushgateway ${JSON.stringify(node.id)} unreachable: ${err.cause?.code ?? err.cause?.message ?? err.message ?? String(error)}`;
}

/** EXCHANGE_TEXT_BYTES is how much of a small exchange's answer is kept (for an error message). */
const EXCHANGE_TEXT_BYTES = 4096;

/** RoundTripTarget is where a node:http round trip goes. */
type RoundTripTarget = Readonly<{ secure: boolean; options: http.RequestOptions }>;

/** RoundTripOutcome is a node's answer (its status and the first bytes of its text), or why there was none. */
type RoundTripOutcome =
  | Readonly<{ kind: 'answer'; status: number; text: string }>
  | Readonly<{ kind: 'timeout' }>
  | Readonly<{ kind: 'failed'; error: NodeJS.ErrnoException | { code?: undefined; message: string } }>;

/**
 * roundTrip sends one request over node:http and reads the whole answer, keeping at most `keepBytes` of its text,
 * under one deadline for the whole exchange, body included. It never rejects: every way it can end is an outcome.
 */
function roundTrip(target: RoundTripTarget, body: string | undefined, timeoutMs: number, keepBytes: number): Promise<RoundTripOutcome> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (outcome: RoundTripOutcome): void => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      resolve(outcome);
    };
    const req = (target.secure ? https : http).request(target.options, (res) => {
      let text = '';
      if (keepBytes > 0) {
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (text.length < keepBytes) text += chunk.slice(0, keepBytes - text.length);
        });
      } else {
        res.resume();
      }
      res.on('end', () => finish({ kind: 'answer', status: res.statusCode ?? 0, text }));
      res.on('error', (error: NodeJS.ErrnoException) => finish({ kind: 'failed', error }));
    });
    const deadline = setTimeout(() => {
      finish({ kind: 'timeout' });
      req.destroy();
    }, timeoutMs);
    req.on('error', (error: NodeJS.ErrnoException) => finish({ kind: 'failed', error }));
    req.on('close', () => finish({ kind: 'failed', error: { message: 'connection closed before the answer ended' } }));
    req.end(body);
  });
}

/** rearming passes a body's chunks through, calling `arm` as each arrives. */
async function* rearming(body: AsyncIterable<Uint8Array>, arm: () => void): AsyncGenerator<Uint8Array> {
  for await (const chunk of body) {
    arm();
    yield chunk;
  }
}

/**
 * The Fetch standard's "bad ports", which fetch refuses without connecting ("bad port"): a Pushgateway on 6666 or
 * 10080 passed its checks (node:http) and took pushes, but could never be listed, reconciled or deleted from.
 */
const FETCH_BAD_PORTS: ReadonlySet<number> = new Set([
  1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103, 104, 109, 110, 111, 113,
  115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556,
  563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667,
  6668, 6669, 6679, 6697, 10080,
]);

/** createAnyPortFetch is global fetch, except for a URL on one of fetch's bad ports, which goes through node:http. */
function createAnyPortFetch(): typeof fetch {
  let viaHttp: typeof fetch | undefined;
  return (input, init) => {
    const url = new URL(input instanceof Request ? input.url : input);
    if (!FETCH_BAD_PORTS.has(Number(url.port))) return fetch(input, init);
    viaHttp ??= createLookupFetch(dns.lookup);
    return viaHttp(input, init);
  };
}

/** createNodeClient returns a NodeClient. */
export function createNodeClient(options: NodeClientOptions): NodeClient {
  const fetchFn = options.fetchFn ?? (options.lookup === undefined ? createAnyPortFetch() : createLookupFetch(options.lookup));
  const fail = (action: string, node: Node, status: number): string => statusMessage(action, node, status, options.authorization !== undefined);

  const request = async (node: Node, path: string, init: RequestInit & { timeoutMs?: number } = {}): Promise<Response> => {
    const { timeoutMs, ...rest } = init;
    const headers = new Headers(rest.headers);
    if (options.authorization !== undefined) headers.set('Authorization', options.authorization);
    const limitMs = timeoutMs ?? options.timeoutMs;
    try {
      return await fetchFn(`${node.url}${path}`, { ...rest, headers, signal: rest.signal ?? AbortSignal.timeout(limitMs) });
    } catch (error) {
      throw new Error(unreachableMessage(node, error, limitMs));
    }
  };

  // Keep-alive connections, the client's own, not Node's globals: any number for the small exchanges (deletes and
  // re-pushes), one idle connection per node for the health checks, which is all they need.
  const lookup = options.lookup === undefined ? {} : { lookup: options.lookup };
  const exchangeAgents = { http: new http.Agent({ keepAlive: true, ...lookup }), https: new https.Agent({ keepAlive: true, ...lookup }) };
  const checkAgents = {
    http: new http.Agent({ keepAlive: true, maxSockets: 1, ...lookup }),
    https: new https.Agent({ keepAlive: true, maxSockets: 1, ...lookup }),
  };

  /** targetOf makes node:http request options for `path` on a node, with the director's credentials. */
  const targetOf = (url: URL, method: string, agents: typeof exchangeAgents, body?: string): RoundTripTarget => {
    const secure = url.protocol === 'https:';
    const headers: Record<string, string | number> = {};
    if (options.authorization !== undefined) headers['Authorization'] = options.authorization;
    if (body !== undefined) {
      headers['Content-Type'] = 'text/plain; version=0.0.4; charset=utf-8';
      headers['Content-Length'] = Buffer.byteLength(body);
    }
    return {
      secure,
      options: {
        method,
        hostname: url.hostname.replace(/^\[|\]$/g, ''),
        port: url.port === '' ? (secure ? 443 : 80) : Number(url.port),
        path: `${url.pathname}${url.search}`,
        headers,
        agent: secure ? agents.https : agents.http,
      },
    };
  };

  /**
   * exchange makes a request whose answer is small and read here in full (at most EXCHANGE_TEXT_BYTES of its text is
   * kept), under one timer for the whole exchange. It runs on node:http rather than fetch: a pass makes tens of
   * thousands of these, and each fetch costs several times the CPU and garbage (web streams, signals, a Response).
   */
  const exchange = async (node: Node, path: string, method: string, body?: string): Promise<{ status: number; text: string }> => {
    let url: URL;
    try {
      url = new URL(`${node.url}${path}`);
    } catch (error) {
      throw new Error(`pushgateway ${JSON.stringify(node.id)}: ${(error as Error).message}`);
    }
    const outcome = await roundTrip(targetOf(url, method, exchangeAgents, body), body, options.timeoutMs, EXCHANGE_TEXT_BYTES);
    switch (outcome.kind) {
      case 'answer':
        return outcome;
      case 'timeout':
        throw new Error(unreachableMessage(node, { name: 'TimeoutError' }, options.timeoutMs));
      default:
        throw new Error(unreachableMessage(node, { cause: outcome.error }, options.timeoutMs));
    }
  };

  const eachGroup = async (node: Node, keep: (group: Group, text: string) => void, eachOptions: EachGroupOptions = {}): Promise<void> => {
    // The timeout bounds the wait for the headers and then each wait for more of the body, not the whole answer:
    // a node with tens of thousands of groups sends tens of MiB, which may take longer than one timeout to read.
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(new DOMException('timeout', 'TimeoutError')), options.timeoutMs);
    };
    try {
      arm();
      const response = await request(node, '/api/v1/metrics', { signal: controller.signal });
      eachOptions.onAnswer?.();
      if (!response.ok) {
        await response.body?.cancel();
        throw new Error(fail('listing', node, response.status));
      }
      if (response.body === null) throw new Error(`listing ${node.id}: no data array`);
      await readListing(
        rearming(response.body, arm),
        (raw, text) => {
          const group = groupFromApi(raw);
          if (group === undefined) throw new Error('a group without labels');
          keep(group, text);
        },
        eachOptions.known === undefined ? {} : { known: eachOptions.known },
      );
    } catch (error) {
      if (controller.signal.aborted) throw new Error(`listing ${node.id}: no answer within ${options.timeoutMs} ms`);
      const message = (error as Error).message;
      throw new Error(message.startsWith('listing ') || message.startsWith('pushgateway ') ? message : `listing ${node.id}: ${message}`);
    } finally {
      clearTimeout(timer);
    }
  };

  const listGroups = async (node: Node): Promise<Group[]> => {
    const groups: Group[] = [];
    await eachGroup(node, (group) => groups.push(group));
    return groups;
  };

  const listGroupsWithText = async (node: Node): Promise<ListedGroup[]> => {
    const groups: ListedGroup[] = [];
    await eachGroup(node, (group, text) => groups.push({ group, text }));
    return groups;
  };

  const deleteGroup = async (node: Node, labels: Readonly<Record<string, string>>): Promise<void> => {
    const { status } = await exchange(node, groupPath(labels), 'DELETE');
    if (status !== 202 && status !== 200) throw new Error(fail('deleting from', node, status));
  };

  const sendGroup = async (method: 'PUT' | 'POST', node: Node, labels: Readonly<Record<string, string>>, body: string): Promise<void> => {
    const { status, text } = await exchange(node, groupPath(labels), method, body);
    if (status !== 200 && status !== 202) throw new Error(`${fail('pushing to', node, status)} ${text.trim()}`.trim());
  };

  const putGroup = (node: Node, labels: Readonly<Record<string, string>>, body: string): Promise<void> => sendGroup('PUT', node, labels, body);
  const postGroup = (node: Node, labels: Readonly<Record<string, string>>, body: string): Promise<void> => sendGroup('POST', node, labels, body);

  // Request options per node URL, built once: a check is sent every few seconds for the life of the process.
  const checkTargets = new Map<string, RoundTripTarget>();
  const checkTarget = (node: Node): RoundTripTarget => {
    let target = checkTargets.get(node.url);
    if (target === undefined) {
      target = targetOf(new URL(`${node.url}/-/healthy`), 'GET', checkAgents);
      if (checkTargets.size > 10_000) checkTargets.clear(); // discovery churn: never grow without bound
      checkTargets.set(node.url, target);
    }
    return target;
  };

  // The deadline covers the whole answer, body included: a node that trickles a body forever fails its check.
  const checkHealth = async (node: Node, timeoutMs: number): Promise<HealthAnswer> => {
    const outcome = await roundTrip(checkTarget(node), undefined, timeoutMs, 0);
    switch (outcome.kind) {
      case 'answer':
        return { ok: true, status: outcome.status };
      case 'timeout':
        return { ok: false, reason: `no answer within ${timeoutMs}ms` };
      default:
        return { ok: false, reason: outcome.error.code ?? outcome.error.message };
    }
  };

  return Object.freeze({ listGroups, listGroupsWithText, eachGroup, deleteGroup, putGroup, postGroup, checkHealth, request });
}
