/**
 * A Consul HTTP API double: the part of Consul the director uses, over real HTTP, with Consul's documented semantics
 * (api-docs/health.mdx, features/blocking.mdx, agent/service.mdx, agent/check.mdx, api-structure.mdx):
 * - GET /v1/health/service/:service with `passing`, `tag`, `dc`, and blocking queries: with `index` at or past the
 *   current X-Consul-Index the request holds until the index moves or `wait` (default 5m, at most 10m) expires,
 *   plus up to wait/16 of jitter; every answer carries X-Consul-Index.
 * - PUT /v1/agent/service/register and /v1/agent/service/deregister/:id; HTTP checks really run: 2xx passing,
 *   429 warning, anything else critical; a new check starts critical.
 * - The KV store (api-docs/kv.mdx): GET /v1/kv/:key with `recurse` and `keys` (404 when nothing matches), entries as
 *   `[{Key, Value (base64), Flags, CreateIndex, ModifyIndex, LockIndex, Session}]`, X-Consul-Index on every read and
 *   blocking reads (`index`, `wait`) that return when a matching key changes; PUT /v1/kv/:key (the body is the
 *   value) with `flags` and `cas` (0: only if absent; N: only if ModifyIndex is N), answering `true`/`false`;
 *   DELETE /v1/kv/:key with `recurse` or `cas`, answering `true`/`false`. Keys arrive percent-encoded, as the npm
 *   client sends them, and are decoded as Consul's HTTP server does. Every write takes the next raft index.
 * - ACLs: when tokens are set, a request without a valid X-Consul-Token gets 403; `kvReadOnly` tokens may read KV but
 *   get 403 on writes (a token without key:write).
 * Faults for specs: `down` (connections refused), `slow`, `garbage` (200 with a body that is not JSON), `error`
 * (500), `object` (valid JSON that is not the documented array), `instant` (blocking queries answer at once, index
 * unchanged), and `resetIndex` (the index goes backwards).
 */
import { EventEmitter } from 'node:events';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';

import { RestartableListener } from './restartable';

type Status = 'passing' | 'warning' | 'critical';

/** ServiceEntry is one registered service instance, as the double stores it. */
export type ServiceEntry = {
  id: string;
  name: string;
  address: string;
  port: number;
  tags: string[];
  meta: Record<string, string>;
  node: string;
  nodeAddress: string;
  status: Status;
  check?: { http: string; intervalMs: number; timeoutMs: number; headers: Record<string, string[]>; timer?: NodeJS.Timeout };
};

/** KvEntry is one key of the double's KV store. */
export type KvEntry = { value: Buffer; flags: number; createIndex: number; modifyIndex: number };

/** Fault is how the double misbehaves, if at all. */
export type Fault = 'none' | 'slow' | 'garbage' | 'object' | 'error' | 'instant';

function parseDurationMs(text: string | undefined, fallback: number): number {
  if (text === undefined || text === '') return fallback;
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text);
  if (!match) return fallback;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] ?? 's'] ?? 1000;
  return Number(match[1]) * unit;
}

function lowerKeys(value: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (value !== null && typeof value === 'object') {
    for (const [key, child] of Object.entries(value as Record<string, unknown>)) out[key.toLowerCase().replace(/_/g, '')] = child;
  }
  return out;
}

/**
 * ConsulDouble is a running double; change its state and watch the director follow. It emits `check` (service id, HTTP status or 0 for no answer) each time it has run an HTTP check.
 */
export class ConsulDouble extends EventEmitter {
  index = 1;
  fault: Fault = 'none';
  slowMs = 2000;
  /** Valid ACL tokens; undefined means ACLs are off. */
  tokens: Set<string> | undefined;
  readonly services = new Map<string, ServiceEntry>();
  readonly kv = new Map<string, KvEntry>();
  /** Tokens that may read the KV store but not write it. */
  readonly kvReadOnly = new Set<string>();
  /** The raft index of the last KV write. */
  kvIndex = 1;
  private kvWaiters = new Set<() => void>();
  readonly requests: { method: string; path: string; query: URLSearchParams; token: string | undefined; at: number }[] = [];
  private readonly listener = new RestartableListener((req, res) => this.handle(req, res));
  private waiters = new Set<() => void>();

  get port(): number {
    return this.listener.port;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** start listens on a free port, or on the port it had before `down`. */
  async start(): Promise<this> {
    await this.listener.start();
    return this;
  }

  /** down stops answering: the port refuses connections until `up`. */
  down(): Promise<void> {
    return this.listener.down();
  }

  /** up listens again on the same port. */
  async up(): Promise<void> {
    await this.listener.start();
  }

  async stop(): Promise<void> {
    for (const entry of this.services.values()) clearInterval(entry.check?.timer);
    this.wake();
    for (const wake of [...this.kvWaiters]) wake();
    await this.listener.down();
  }

  /** bump records a change: the index moves and blocked queries return. */
  bump(): void {
    this.index++;
    this.wake();
  }

  /** resetIndex makes the index go backwards, as after a snapshot restore. */
  resetIndex(to = 1): void {
    this.index = to;
    this.wake();
  }

  private wake(): void {
    for (const wake of [...this.waiters]) wake();
  }

  /** add registers (or replaces) a service instance directly, as a Consul agent elsewhere would. */
  add(entry: Partial<ServiceEntry> & { id: string; port: number }): void {
    const previous = this.services.get(entry.id);
    if (previous?.check?.timer) clearInterval(previous.check.timer);
    this.services.set(entry.id, {
      name: 'pushgateway',
      address: '127.0.0.1',
      tags: [],
      meta: {},
      node: 'node-1',
      nodeAddress: '127.0.0.1',
      status: 'passing',
      ...entry,
    });
    this.bump();
  }

  remove(id: string): void {
    const entry = this.services.get(id);
    if (entry?.check?.timer) clearInterval(entry.check.timer);
    if (this.services.delete(id)) this.bump();
  }

  setStatus(id: string, status: Status): void {
    const entry = this.services.get(id);
    if (entry && entry.status !== status) {
      entry.status = status;
      this.bump();
    }
  }

  /** healthRequests counts the health queries for a service. */
  healthRequests(service = 'pushgateway'): number {
    return this.requests.filter((r) => r.path === `/v1/health/service/${service}`).length;
  }

  private authorized(token: string | undefined): boolean {
    return this.tokens === undefined || (token !== undefined && this.tokens.has(token));
  }

  private send(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
    res.writeHead(status, { 'Content-Type': status === 200 ? 'application/json' : 'text/plain; charset=utf-8', ...headers });
    res.end(body);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://consul');
    const headerToken = req.headers['x-consul-token'];
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const token = typeof headerToken === 'string' ? headerToken : bearer;
    this.requests.push({ method: req.method ?? '', path: url.pathname, query: url.searchParams, token, at: Date.now() });

    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      if (!this.authorized(token)) {
        this.send(res, 403, token === undefined ? 'Permission denied' : 'ACL not found');
        return;
      }
      if (url.pathname.startsWith('/v1/kv/') && req.method !== 'GET' && token !== undefined && this.kvReadOnly.has(token)) {
        this.send(res, 403, 'Permission denied');
        return;
      }
      const raw = Buffer.concat(chunks);
      const run = (): void =>
        url.pathname.startsWith('/v1/kv/') ? this.kvRoute(req.method ?? '', url, raw, res) : this.route(req.method ?? '', url, raw.toString('utf8'), res);
      if (this.fault === 'slow') setTimeout(run, this.slowMs);
      else run();
    });
  }

  private route(method: string, url: URL, body: string, res: ServerResponse): void {
    const health = /^\/v1\/health\/service\/([^/]+)$/.exec(url.pathname);
    if (method === 'GET' && health) return this.health(decodeURIComponent(health[1] as string), url.searchParams, res);
    if (method === 'PUT' && url.pathname === '/v1/agent/service/register') return this.register(body, res);
    const deregister = /^\/v1\/agent\/service\/deregister\/([^/]+)$/.exec(url.pathname);
    if (method === 'PUT' && deregister) {
      const id = decodeURIComponent(deregister[1] as string);
      if (!this.services.has(id)) return this.send(res, 404, `Unknown service ID "${id}". Ensure that the service ID is passed, not the service name.`);
      this.remove(id);
      return this.send(res, 200, '');
    }
    this.send(res, 404, 'Not Found');
  }

  private health(service: string, query: URLSearchParams, res: ServerResponse): void {
    if (this.fault === 'error') return this.send(res, 500, 'rpc error making call: No cluster leader');
    const asked = Number(query.get('index') ?? '0');
    const waitMs = Math.min(parseDurationMs(query.get('wait') ?? undefined, 300_000), 600_000);
    const answer = (): void => {
      if (res.writableEnded) return;
      if (this.fault === 'garbage') return this.send(res, 200, '{"this is": not json', { 'X-Consul-Index': String(this.index) });
      if (this.fault === 'object') return this.send(res, 200, '{"not":"an array"}', { 'X-Consul-Index': String(this.index) });
      const passing = query.has('passing') && query.get('passing') !== 'false';
      const tag = query.get('tag');
      const entries = [...this.services.values()]
        .filter((e) => e.name === service)
        .filter((e) => !passing || e.status === 'passing')
        .filter((e) => tag === null || e.tags.includes(tag))
        .map((e) => ({
          Node: { ID: `${e.node}-id`, Node: e.node, Address: e.nodeAddress, Datacenter: query.get('dc') ?? 'dc1', TaggedAddresses: null, Meta: {} },
          Service: { ID: e.id, Service: e.name, Tags: e.tags, Address: e.address, Meta: e.meta, Port: e.port, Weights: { Passing: 1, Warning: 1 } },
          Checks: [
            { Node: e.node, CheckID: 'serfHealth', Name: 'Serf Health Status', Status: 'passing', ServiceID: '', ServiceName: '' },
            { Node: e.node, CheckID: `service:${e.id}`, Name: `Service '${e.name}' check`, Status: e.status, ServiceID: e.id, ServiceName: e.name },
          ],
        }));
      this.send(res, 200, JSON.stringify(entries), { 'X-Consul-Index': String(this.index), 'X-Consul-KnownLeader': 'true' });
    };
    if (asked <= 0 || asked < this.index || this.fault === 'instant') return answer();
    // Blocking query: hold until the index moves past the one asked for, or the wait (plus jitter) runs out.
    const timer = setTimeout(done, waitMs + Math.random() * (waitMs / 16));
    const waiters = this.waiters;
    function done(): void {
      clearTimeout(timer);
      waiters.delete(wake);
      answer();
    }
    const wake = (): void => done();
    waiters.add(wake);
    res.on('close', () => {
      clearTimeout(timer);
      waiters.delete(wake);
    });
  }

  /** kvKeys lists the keys a KV request names: one key, or every key under a prefix. */
  private kvMatch(key: string, recurse: boolean): string[] {
    if (!recurse) return this.kv.has(key) ? [key] : [];
    return [...this.kv.keys()].filter((k) => k.startsWith(key)).sort();
  }

  private kvWrite(): number {
    this.kvIndex = Math.max(this.kvIndex, this.index) + 1;
    for (const wake of [...this.kvWaiters]) wake();
    return this.kvIndex;
  }

  private kvRoute(method: string, url: URL, body: Buffer, res: ServerResponse): void {
    if (this.fault === 'error') return this.send(res, 500, 'rpc error making call: No cluster leader');
    // Consul's HTTP server decodes the path: the npm client sends `a%2Fb` for the key `a/b`.
    const key = decodeURIComponent(url.pathname.slice('/v1/kv/'.length));
    const query = url.searchParams;
    const recurse = query.has('recurse') && query.get('recurse') !== 'false';
    const cas = query.get('cas');
    if (cas !== null && !/^\d+$/.test(cas)) return this.send(res, 400, `Invalid CAS index: ${cas}`);
    if (method === 'GET') return this.kvGet(key, query, recurse, res);
    if (method === 'PUT') {
      if (key === '') return this.send(res, 400, 'Missing key name');
      if (recurse) return this.send(res, 400, 'Conflicting flags: recurse with PUT');
      const existing = this.kv.get(key);
      if (cas !== null && (Number(cas) === 0 ? existing !== undefined : existing?.modifyIndex !== Number(cas))) return this.send(res, 200, 'false');
      const index = this.kvWrite();
      const flags = Number(query.get('flags') ?? existing?.flags ?? 0);
      this.kv.set(key, { value: body, flags, createIndex: existing?.createIndex ?? index, modifyIndex: index });
      return this.send(res, 200, 'true');
    }
    if (method === 'DELETE') {
      if (cas !== null && recurse) return this.send(res, 400, 'Conflicting flags: cas=' + cas + '&recurse');
      if (cas !== null) {
        const existing = this.kv.get(key);
        // api-docs/kv.mdx: with cas, the delete happens only if the index matches (a missing key: only cas=0 is false).
        if (existing === undefined || existing.modifyIndex !== Number(cas)) return this.send(res, 200, 'false');
      }
      const matched = this.kvMatch(key, recurse);
      for (const k of matched) this.kv.delete(k);
      if (matched.length > 0) this.kvWrite();
      return this.send(res, 200, 'true');
    }
    this.send(res, 405, 'method not allowed');
  }

  private kvGet(key: string, query: URLSearchParams, recurse: boolean, res: ServerResponse): void {
    const keysOnly = query.has('keys');
    const indexOf = (keys: string[]): number => (keys.length === 0 ? this.kvIndex : Math.max(...keys.map((k) => (this.kv.get(k) as KvEntry).modifyIndex)));
    const answer = (): void => {
      if (res.writableEnded) return;
      const keys = this.kvMatch(key, recurse || keysOnly);
      const headers = { 'X-Consul-Index': String(indexOf(keys)), 'X-Consul-KnownLeader': 'true' };
      if (keys.length === 0) return this.send(res, 404, '', headers);
      if (keysOnly) return this.send(res, 200, JSON.stringify(keys), headers);
      const entries = keys.map((k) => {
        const entry = this.kv.get(k) as KvEntry;
        return {
          LockIndex: 0,
          Key: k,
          Flags: entry.flags,
          Value: entry.value.length === 0 ? null : entry.value.toString('base64'),
          CreateIndex: entry.createIndex,
          ModifyIndex: entry.modifyIndex,
        };
      });
      this.send(res, 200, JSON.stringify(entries), headers);
    };
    const asked = Number(query.get('index') ?? '0');
    if (asked <= 0 || asked < indexOf(this.kvMatch(key, recurse || keysOnly))) return answer();
    // Blocking read: hold until a matching key changes (its index passes the one asked for) or the wait runs out.
    const waitMs = Math.min(parseDurationMs(query.get('wait') ?? undefined, 300_000), 600_000);
    const waiters = this.kvWaiters;
    const timer = setTimeout(done, waitMs + Math.random() * (waitMs / 16));
    function done(): void {
      clearTimeout(timer);
      waiters.delete(wake);
      answer();
    }
    const wake = (): void => {
      if (res.writableEnded || asked < indexOf(this.kvMatch(key, recurse || keysOnly)) || this.kvMatch(key, recurse || keysOnly).length === 0) done();
    };
    waiters.add(wake);
    res.on('close', () => {
      clearTimeout(timer);
      waiters.delete(wake);
    });
  }

  private register(body: string, res: ServerResponse): void {
    let doc: Record<string, unknown>;
    try {
      doc = lowerKeys(JSON.parse(body));
    } catch {
      return this.send(res, 400, 'Request decode failed: invalid character');
    }
    const name = doc['name'];
    if (typeof name !== 'string' || name === '') return this.send(res, 400, 'Missing service name');
    const id = typeof doc['id'] === 'string' && doc['id'] !== '' ? doc['id'] : name;
    const check = lowerKeys(doc['check']);
    const entry: ServiceEntry = {
      id,
      name,
      address: typeof doc['address'] === 'string' ? doc['address'] : '',
      port: typeof doc['port'] === 'number' ? doc['port'] : 0,
      tags: Array.isArray(doc['tags']) ? (doc['tags'] as string[]) : [],
      meta: (doc['meta'] as Record<string, string> | undefined) ?? {},
      node: 'node-1',
      nodeAddress: '127.0.0.1',
      // agent/check.mdx: a new check starts critical unless told otherwise.
      status: typeof check['http'] === 'string' ? 'critical' : 'passing',
    };
    if (typeof check['http'] === 'string') {
      const text = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);
      const intervalMs = parseDurationMs(text(check['interval']), 10_000);
      const timeoutMs = parseDurationMs(text(check['timeout']), 10_000);
      // agent/check.mdx: Header is a map of header names to lists of values, sent with every HTTP check.
      const header = check['header'];
      const headers: Record<string, string[]> = {};
      if (header !== null && typeof header === 'object' && !Array.isArray(header)) {
        for (const [name, values] of Object.entries(header as Record<string, unknown>)) {
          if (Array.isArray(values) && values.every((v) => typeof v === 'string')) headers[name] = values;
        }
      }
      entry.check = { http: check['http'], intervalMs, timeoutMs, headers };
    }
    const previous = this.services.get(id);
    if (previous?.check?.timer) clearInterval(previous.check.timer);
    if (previous && previous.check && entry.check && previous.check.http === entry.check.http) entry.status = previous.status;
    this.services.set(id, entry);
    if (entry.check) {
      const probe = (): void => this.probe(entry);
      entry.check.timer = setInterval(probe, entry.check.intervalMs);
      entry.check.timer.unref();
      probe();
    }
    this.bump();
    this.send(res, 200, '');
  }

  private probe(entry: ServiceEntry): void {
    const check = entry.check;
    if (!check) return;
    const req = http.get(check.http, { timeout: check.timeoutMs, headers: check.headers }, (answer) => {
      answer.resume();
      const code = answer.statusCode ?? 0;
      this.setStatus(entry.id, code >= 200 && code < 300 ? 'passing' : code === 429 ? 'warning' : 'critical');
      this.emit('check', entry.id, code);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => {
      this.setStatus(entry.id, 'critical');
      this.emit('check', entry.id, 0);
    });
  }
}

/** startConsulDouble starts a double on a free loopback port. */
export async function startConsulDouble(): Promise<ConsulDouble> {
  return new ConsulDouble().start();
}
