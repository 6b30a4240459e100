/**
 * DNS discovery: the ring's members are the records of one or more DNS names, resolved again every refresh
 * interval. SRV records (what a Kubernetes headless Service, Consul DNS or Nomad publish) give each Pushgateway's
 * target name and port; A and AAAA records give addresses, with one port for all.
 *
 * The semantics follow Consul discovery: the ring changes only when the member set does; an answer with no records
 * (NXDOMAIN, or a name without records of the type) empties the ring, so pushes get 503 rather than a redirect to a
 * Pushgateway the orchestrator took out; a failed lookup (timeout, refused, server failure) keeps the last good ring
 * and retries with backoff; the director is not ready until the first answer.
 *
 * An SRV target is a name, and it stays one: a node's identity is `target:port` and its URL keeps the name, so a pod
 * that comes back with another address keeps its place on the ring, and a `Location` carries the name, which clients
 * in the cluster resolve. The director's own connections to such a node resolve the name through the same DNS
 * servers as discovery: `lookup` is a drop-in for `dns.lookup` wherever Node or undici opens a socket.
 */
import { promises as dns } from 'node:dns';
import type { LookupAddress, LookupOptions, SrvRecord } from 'node:dns';
import { type LookupFunction, isIP } from 'node:net';

import type { Logger } from 'pino';

import type { DnsConfig } from '../config';
import { type Node, parseNodeUrl } from '../core/node';
import type { DirectorMetrics } from '../metrics';
import type { CandidateSink } from '../health';

/** DnsTuning sets the resolver's and the loop's pacing; the defaults suit production, specs shorten them. */
export type DnsTuning = {
  /** How long one try of a query waits for an answer. @default 2000 */
  timeoutMs?: number;
  /** Tries per query and server. @default 2 */
  tries?: number;
  /** First backoff after a failed refresh. @default 500 */
  backoffBaseMs?: number;
  /** Longest backoff; never longer than the refresh interval. @default 30000 */
  backoffMaxMs?: number;
};

/** EMPTY_ANSWER lists the resolver's codes for "no such records": an answer, not a failure. */
const EMPTY_ANSWER: ReadonlySet<string> = new Set([dns.NOTFOUND, dns.NODATA]);

/** NodesResult is a set of nodes read from records, and why some records were not used. */
export type NodesResult = { nodes: Node[]; skipped: string[] };

/** nodesFromSrv turns SRV records into nodes named `target:port`; priority and weight do not matter on a ring. */
export function nodesFromSrv(records: readonly SrvRecord[], scheme: 'http' | 'https', prefix: string): NodesResult {
  const nodes: Node[] = [];
  const skipped: string[] = [];
  for (const record of records) {
    const target = record.name.replace(/\.$/, '').toLowerCase();
    // RFC 2782: a target of "." means the service is decidedly not available there.
    if (target === '' || record.port <= 0) {
      skipped.push(`SRV ${JSON.stringify(`${record.name}:${record.port}`)}: no target or port`);
      continue;
    }
    const host = isIP(target) === 6 ? `[${target}]` : target;
    const result = parseNodeUrl(`${scheme}://${host}:${record.port}${prefix}`);
    if (result.ok) nodes.push(result.node);
    else skipped.push(`SRV ${JSON.stringify(`${record.name}:${record.port}`)}: ${result.message}`);
  }
  return { nodes, skipped };
}

/** nodesFromAddresses turns A or AAAA records into nodes on the given port. */
export function nodesFromAddresses(addresses: readonly string[], port: number, scheme: 'http' | 'https', prefix: string): NodesResult {
  const nodes: Node[] = [];
  const skipped: string[] = [];
  for (const address of addresses) {
    const result = parseNodeUrl(`${scheme}://${isIP(address) === 6 ? `[${address}]` : address}:${port}${prefix}`);
    if (result.ok) nodes.push(result.node);
    else skipped.push(`address ${JSON.stringify(address)}: ${result.message}`);
  }
  return { nodes, skipped };
}

/** createDnsResolver returns a resolver that asks the configured server, or the system's servers when none is. */
export function createDnsResolver(server: string | undefined, tuning: DnsTuning = {}): dns.Resolver {
  const resolver = new dns.Resolver({ timeout: tuning.timeoutMs ?? 2000, tries: tuning.tries ?? 2 });
  if (server !== undefined) resolver.setServers([server]);
  return resolver;
}

/** ResolverLookupOptions configures createResolverLookup. */
export type ResolverLookupOptions = Readonly<{
  /** Answers are reused for their TTL, but never longer than this. @default 30000 */
  maxCacheMs?: number;
  /** The clock, for specs. @default Date.now */
  now?: () => number;
}>;

/**
 * createResolverLookup returns a `dns.lookup`-compatible function that resolves names through `resolver` (A, then
 * AAAA records), for node:net's and node:http's `lookup` option and undici's `connect: { lookup }`. Answers are
 * reused for their TTL (capped); concurrent lookups of one name share one query. A name without addresses fails
 * with ENOTFOUND, like dns.lookup. While the server fails (timeout, refused, server failure), a name's last good
 * addresses are used, as discovery keeps its last good ring. Safe to share between every connection the director
 * opens.
 */
export function createResolverLookup(resolver: dns.Resolver, options: ResolverLookupOptions = {}): LookupFunction {
  const maxCacheMs = options.maxCacheMs ?? 30_000;
  const now = options.now ?? Date.now;
  const cache = new Map<string, { expires: number; addresses: LookupAddress[] }>();
  // The last good answer of every name looked up; the set of names is the ring's, so it stays small.
  const lastGood = new Map<string, LookupAddress[]>();
  const pending = new Map<string, Promise<LookupAddress[]>>();

  const query = async (hostname: string, family: 4 | 6): Promise<{ addresses: LookupAddress[]; ttl: number }> => {
    try {
      const records = family === 4 ? await resolver.resolve4(hostname, { ttl: true }) : await resolver.resolve6(hostname, { ttl: true });
      return { addresses: records.map((record) => ({ address: record.address, family })), ttl: Math.min(...records.map((r) => r.ttl)) };
    } catch (error) {
      if (EMPTY_ANSWER.has((error as NodeJS.ErrnoException).code ?? '')) return { addresses: [], ttl: 0 };
      throw error;
    }
  };

  const resolve = async (hostname: string, family: number): Promise<LookupAddress[]> => {
    const families: (4 | 6)[] = family === 4 ? [4] : family === 6 ? [6] : [4, 6];
    const results = await Promise.allSettled(families.map((f) => query(hostname, f)));
    const answers = results.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
    const addresses = answers.flatMap((answer) => answer.addresses);
    const key = `${family}/${hostname}`;
    if (addresses.length === 0) {
      const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
      if (failed !== undefined) {
        const stale = lastGood.get(key);
        if (stale !== undefined) return stale;
        throw failed.reason;
      }
      lastGood.delete(key);
      throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: dns.NOTFOUND, hostname, syscall: 'getaddrinfo' });
    }
    lastGood.set(key, addresses);
    const ttlMs = Math.min(maxCacheMs, ...answers.filter((answer) => answer.addresses.length > 0).map((answer) => answer.ttl * 1000));
    if (ttlMs > 0) cache.set(key, { expires: now() + ttlMs, addresses });
    return addresses;
  };

  return (hostname: string, lookupOptions: LookupOptions, callback) => {
    const family = lookupOptions.family === 'IPv4' ? 4 : lookupOptions.family === 'IPv6' ? 6 : Number(lookupOptions.family ?? 0);
    const answer = (addresses: LookupAddress[]): void => {
      if (lookupOptions.all === true) callback(null, addresses);
      else callback(null, (addresses[0] as LookupAddress).address, (addresses[0] as LookupAddress).family);
    };
    const literal = isIP(hostname);
    if (literal !== 0) {
      answer([{ address: hostname, family: literal }]);
      return;
    }
    const name = hostname.toLowerCase();
    const key = `${family}/${name}`;
    const cached = cache.get(key);
    if (cached !== undefined && cached.expires > now()) {
      answer(cached.addresses);
      return;
    }
    cache.delete(key);
    let running = pending.get(key);
    if (running === undefined) {
      running = resolve(name, family).finally(() => pending.delete(key));
      pending.set(key, running);
    }
    running.then(answer, (error: NodeJS.ErrnoException) => callback(error, lookupOptions.all === true ? [] : '', undefined));
  };
}

/**
 * DnsDiscovery is the running refresh loop. The director's connections to its nodes resolve their names through the
 * same servers with `createResolverLookup(createDnsResolver(config.server))`, made before discovery starts.
 */
export type DnsDiscovery = Readonly<{ start(): void; stop(): Promise<void> }>;

/** LookupFailure is a query that got no usable answer: the server failed, refused, or did not answer. */
class LookupFailure extends Error {}

/** createDnsDiscovery builds the refresh loop over the configured names. */
export function createDnsDiscovery(
  config: DnsConfig,
  candidates: CandidateSink,
  metrics: DirectorMetrics,
  logger: Logger,
  tuning: DnsTuning = {},
): DnsDiscovery {
  const backoffBaseMs = tuning.backoffBaseMs ?? 500;
  const backoffMaxMs = Math.min(tuning.backoffMaxMs ?? 30_000, config.refreshIntervalMs);
  // The loop's own resolver: stopping the loop cancels its queries, never a connection's lookup.
  const resolver = createDnsResolver(config.server, tuning);
  const servers = config.server ?? 'system';
  const log = logger.child({ component: 'dns', names: config.names, type: config.type, server: servers });

  let running = false;
  let answered = false;
  let loop: Promise<void> | undefined;
  let wake: (() => void) | undefined;
  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(() => {
        wake = undefined;
        resolve();
      }, ms);
      wake = () => {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      };
    });

  const resolveName = async (name: string): Promise<NodesResult> => {
    try {
      if (config.type === 'SRV') return nodesFromSrv(await resolver.resolveSrv(name), config.nodeScheme, config.nodePathPrefix);
      const addresses = config.type === 'A' ? await resolver.resolve4(name) : await resolver.resolve6(name);
      return nodesFromAddresses(addresses, config.port, config.nodeScheme, config.nodePathPrefix);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      if (EMPTY_ANSWER.has(code)) return { nodes: [], skipped: [] };
      throw new LookupFailure(`dns lookup of ${config.type} ${JSON.stringify(name)} failed (${code}; server ${servers})`);
    }
  };

  const refresh = async (): Promise<Node[]> => {
    // Every name must answer: a failure on one keeps the whole last good ring rather than dropping its members.
    const results = await Promise.all(config.names.map(resolveName));
    for (const reason of results.flatMap((result) => result.skipped)) log.warn({ reason }, 'ignoring a dns record');
    return results.flatMap((result) => result.nodes);
  };

  const watch = async (): Promise<void> => {
    let failures = 0;
    let lastMessage = '';
    let wasEmpty = false;
    while (running) {
      try {
        const nodes = await refresh();
        if (!running) break;
        if (failures > 0) log.info({ failures }, 'dns answers again');
        failures = 0;
        lastMessage = '';
        if (nodes.length === 0 && !wasEmpty) log.warn('dns lists no pushgateway: the ring is empty and pushes get 503');
        wasEmpty = nodes.length === 0;
        candidates.update(nodes);
        answered = true;
        metrics.discovery.up.set(1);
        metrics.discovery.lastSuccess.set(Date.now() / 1000);
        await sleep(config.refreshIntervalMs);
      } catch (error) {
        if (!running) break;
        failures++;
        metrics.discovery.up.set(0);
        metrics.discovery.errors.inc();
        const message = error instanceof LookupFailure ? error.message : `dns lookup failed: ${String(error)}`;
        // Log the first failure, a changed one, and then at 2, 4, 8, ... failures: not one line per retry.
        if (message !== lastMessage || (failures & (failures - 1)) === 0) {
          const keeping = answered ? 'keeping the last good ring' : 'not ready until dns answers';
          log.error({ failures }, `${message}; ${keeping} and retrying`);
          lastMessage = message;
        }
        const ceiling = Math.min(backoffMaxMs, backoffBaseMs * 2 ** Math.min(failures - 1, 20));
        await sleep(ceiling / 2 + Math.random() * (ceiling / 2));
      }
    }
  };

  return Object.freeze({
    start() {
      if (running) return;
      running = true;
      loop = watch();
    },
    async stop() {
      if (!running) return;
      running = false;
      resolver.cancel();
      wake?.();
      await loop;
    },
  });
}
