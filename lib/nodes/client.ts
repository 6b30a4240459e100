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

/** HealthAnswer is the outcome of one health check: the node's status, or why there was none. */
export type HealthAnswer = Readonly<{ ok: true; status: number }> | Readonly<{ ok: false; reason: string }>;

/** NodeClient makes the director's own requests to nodes. Errors are thrown as Error with a one-line message. */
export type NodeClient = Readonly<{
  /** listGroups returns every group the node holds (`GET /api/v1/metrics`). */
  listGroups(node: Node): Promise<Group[]>;
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
    return fetchFn(`${node.url}${path}`, { ...rest, headers, signal: AbortSignal.timeout(timeoutMs ?? options.timeoutMs) });
  };

  const listGroups = async (node: Node): Promise<Group[]> => {
    const response = await request(node, '/api/v1/metrics');
    if (!response.ok) {
      await response.arrayBuffer();
      throw new Error(fail('listing', node, response.status));
    }
    const doc = (await response.json()) as { data?: unknown };
    if (!Array.isArray(doc.data)) throw new Error(`listing ${node.id}: no data array`);
    const groups: Group[] = [];
    for (const raw of doc.data) {
      const group = groupFromApi(raw);
      if (group === undefined) throw new Error(`listing ${node.id}: a group without labels`);
      groups.push(group);
    }
    return groups;
  };

  const deleteGroup = async (node: Node, labels: Readonly<Record<string, string>>): Promise<void> => {
    const response = await request(node, groupPath(labels), { method: 'DELETE' });
    await response.arrayBuffer();
    if (response.status !== 202 && response.status !== 200) throw new Error(fail('deleting from', node, response.status));
  };

  const sendGroup = async (method: 'PUT' | 'POST', node: Node, labels: Readonly<Record<string, string>>, body: string): Promise<void> => {
    const response = await request(node, groupPath(labels), {
      method,
      body,
      headers: { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' },
    });
    const text = await response.text();
    if (response.status !== 200 && response.status !== 202) throw new Error(`${fail('pushing to', node, response.status)} ${text.trim()}`.trim());
  };

  const putGroup = (node: Node, labels: Readonly<Record<string, string>>, body: string): Promise<void> => sendGroup('PUT', node, labels, body);
  const postGroup = (node: Node, labels: Readonly<Record<string, string>>, body: string): Promise<void> => sendGroup('POST', node, labels, body);

  // One idle connection per node is all the checks need; the agents are the client's own, not Node's globals.
  const lookup = options.lookup === undefined ? {} : { lookup: options.lookup };
  const agents = {
    'http:': new http.Agent({ keepAlive: true, maxSockets: 1, ...lookup }),
    'https:': new https.Agent({ keepAlive: true, maxSockets: 1, ...lookup }),
  };

  // Request options per node URL, built once: a check is sent every few seconds for the life of the process.
  const checkTargets = new Map<string, { secure: boolean; options: http.RequestOptions }>();
  const checkTarget = (node: Node): { secure: boolean; options: http.RequestOptions } => {
    let target = checkTargets.get(node.url);
    if (target === undefined) {
      const url = new URL(`${node.url}/-/healthy`);
      const secure = url.protocol === 'https:';
      const headers: Record<string, string> = options.authorization === undefined ? {} : { Authorization: options.authorization };
      target = {
        secure,
        options: {
          method: 'GET',
          hostname: url.hostname.replace(/^\[|\]$/g, ''),
          port: url.port === '' ? (secure ? 443 : 80) : Number(url.port),
          path: url.pathname,
          headers,
          agent: agents[secure ? 'https:' : 'http:'],
        },
      };
      if (checkTargets.size > 10_000) checkTargets.clear(); // discovery churn: never grow without bound
      checkTargets.set(node.url, target);
    }
    return target;
  };

  const checkHealth = (node: Node, timeoutMs: number): Promise<HealthAnswer> =>
    new Promise((resolve) => {
      const { secure, options: requestOptions } = checkTarget(node);
      let done = false;
      const finish = (answer: HealthAnswer): void => {
        if (done) return;
        done = true;
        clearTimeout(deadline);
        resolve(answer);
      };
      const req = (secure ? https : http).request(requestOptions, (res) => {
        res.resume();
        res.on('end', () => finish({ ok: true, status: res.statusCode ?? 0 }));
        res.on('error', (error: NodeJS.ErrnoException) => finish({ ok: false, reason: error.code ?? error.message }));
      });
      // The deadline covers the whole answer, body included: a node that trickles a body forever fails its check.
      const deadline = setTimeout(() => {
        finish({ ok: false, reason: `no answer within ${timeoutMs}ms` });
        req.destroy();
      }, timeoutMs);
      req.on('error', (error: NodeJS.ErrnoException) => finish({ ok: false, reason: error.code ?? error.message }));
      req.on('close', () => finish({ ok: false, reason: 'connection closed before the answer ended' }));
      req.end();
    });

  return Object.freeze({ listGroups, deleteGroup, putGroup, postGroup, checkHealth, request });
}
