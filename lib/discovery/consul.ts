/**
 * Consul discovery: the only code that talks to Consul. It watches the healthy instances of the Pushgateway service
 * with blocking queries and puts them on the ring; optionally it registers Pushgateways and keeps them registered.
 *
 * The loop is written here over the npm `consul` client rather than with its `watch()`, which lacks what Consul's
 * blocking-query rules ask for (features/blocking.mdx): it re-issues a request the moment one returns, so a Consul
 * that answers at once (an idempotent write, a proxy without blocking support) makes it spin; it ends the watch for
 * good on a 400 or a missing X-Consul-Index; and its backoff has no jitter. Here every request first takes a token
 * from a rate limiter, errors back off exponentially with jitter, and the ring changes only when the member set does.
 */
import { EventEmitter } from 'node:events';

import type ConsulClient from 'consul';
import type { Logger } from 'pino';

import type { ConsulConfig } from '../config';
import { type Node, parseNodeUrl } from '../core/node';
import type { DirectorMetrics } from '../metrics';
import type { CandidateSink } from '../health';

/** WatchTuning sets the loop's pacing; the defaults suit production, specs shorten them. */
export type WatchTuning = {
  /** Requests allowed back to back before the limiter paces them. @default 3 */
  burst?: number;
  /** One token returns to the limiter every this many ms. @default 1000 */
  refillMs?: number;
  /** First backoff after an error. @default 500 */
  backoffBaseMs?: number;
  /** Longest backoff. @default 30000 */
  backoffMaxMs?: number;
};

type Entry = {
  Node?: { Node?: string; Address?: string } | null;
  Service?: { ID?: string; Address?: string; Port?: number; Meta?: Record<string, string> | null } | null;
};

/** entryUrl is a health/service entry's Pushgateway URL: its `url` meta, else built from address and port. */
function entryUrl(entry: Entry, scheme: 'http' | 'https', prefix: string): string | undefined {
  const service = entry.Service ?? {};
  const metaUrl = service.Meta?.['url'];
  if (metaUrl !== undefined && metaUrl !== '') return metaUrl;
  // catalog docs: an empty ServiceAddress means the node's address.
  const host = service.Address !== undefined && service.Address !== '' ? service.Address : entry.Node?.Address;
  if (host === undefined || host === '' || service.Port === undefined || service.Port <= 0) return undefined;
  return `${scheme}://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${service.Port}${prefix}`;
}

/** nodesFromEntries turns a health/service answer into ring nodes; `skipped` explains the entries it could not use. */
export function nodesFromEntries(
  entries: readonly Entry[],
  scheme: 'http' | 'https',
  prefix: string,
): { nodes: Node[]; skipped: string[] } {
  const nodes: Node[] = [];
  const skipped: string[] = [];
  for (const entry of entries) {
    const service = entry.Service ?? {};
    const result = parseNodeUrl(entryUrl(entry, scheme, prefix) ?? '');
    if (result.ok) nodes.push(result.node);
    else skipped.push(`service ${JSON.stringify(service.ID ?? '?')} on node ${JSON.stringify(entry.Node?.Node ?? '?')}: no usable address`);
  }
  return { nodes, skipped };
}

/** A token bucket: `take` resolves when a token is free. */
function createLimiter(burst: number, refillMs: number, sleep: (ms: number) => Promise<void>) {
  let tokens = burst;
  let last = Date.now();
  return async (): Promise<void> => {
    const now = Date.now();
    tokens = Math.min(burst, tokens + (now - last) / refillMs);
    last = now;
    if (tokens < 1) {
      await sleep((1 - tokens) * refillMs);
      tokens = 1;
      last = Date.now();
    }
    tokens -= 1;
  };
}

/** ConsulDiscovery is the running watch and registrar. */
export type ConsulDiscovery = Readonly<{ start(): void; stop(): Promise<void> }>;

/** UnexpectedAnswer is a Consul answer that parsed but is not what the API documents. */
class UnexpectedAnswer extends Error {}

/** createConsulDiscovery builds the Consul watch (and registrar, when asked to register). */
export function createConsulDiscovery(
  config: ConsulConfig,
  candidates: CandidateSink,
  metrics: DirectorMetrics,
  logger: Logger,
  tuning: WatchTuning = {},
): ConsulDiscovery {
  const burst = tuning.burst ?? 3;
  const refillMs = tuning.refillMs ?? 1000;
  const backoffBaseMs = tuning.backoffBaseMs ?? 500;
  const backoffMaxMs = tuning.backoffMaxMs ?? 30_000;
  const [host, port] = [config.address.slice(0, config.address.lastIndexOf(':')), config.address.slice(config.address.lastIndexOf(':') + 1)];
  // Required here rather than at the top: a director without Consul, and every one-shot command without it, starts
  // without loading the client (a quarter of the start-up's module loading, measured).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Consul = require('consul') as typeof ConsulClient;
  const consul = new Consul({ host, port: Number(port), secure: config.scheme === 'https' });
  const log = logger.child({ component: 'consul', consul: config.address, service: config.service });

  let running = false;
  let cancel = new EventEmitter();
  const sleepers = new Set<() => void>();
  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      sleepers.add(wake);
    });
  const take = createLimiter(burst, refillMs, sleep);
  let loop: Promise<void> | undefined;
  let registrar: Promise<void> | undefined;

  /** describe turns a failed call into one log line; it never includes the token. */
  const describe = (error: unknown): string => {
    if (error instanceof UnexpectedAnswer) return error.message;
    const err = error as { statusCode?: number; message?: string; code?: string; response?: { statusCode?: number; body?: unknown } };
    const status = err.response?.statusCode ?? err.statusCode;
    if (status === 403) return `consul refused the ACL token (403; token from ${config.tokenSource}): the token needs service:read and node:read`;
    if (err.message !== undefined && err.message.startsWith('decode (')) {
      return `consul answered with a body that is not valid JSON: ${err.message.slice(0, 200)}`;
    }
    const body = typeof err.response?.body === 'string' ? `: ${err.response.body.trim().slice(0, 200)}` : '';
    if (status !== undefined) return `consul answered ${status}${body}`;
    return `consul unreachable: ${err.code ?? err.message ?? String(error)}`;
  };

  const query = async (index: bigint): Promise<{ entries: Entry[]; index: bigint | undefined }> => {
    const ctx = Object.assign(new EventEmitter(), { includeResponse: true });
    const onCancel = (): void => {
      ctx.emit('cancel');
    };
    cancel.once('cancel', onCancel);
    try {
      const options: Record<string, unknown> = {
        service: config.service,
        passing: true,
        index: String(index),
        wait: `${config.waitMs}ms`,
        // Consul may hold a blocking query for wait + wait/16; allow that and a little more.
        timeout: config.waitMs + Math.ceil(config.waitMs / 16) + 5000,
        ctx,
      };
      if (config.tag !== undefined) options['tag'] = config.tag;
      if (config.datacenter !== undefined) options['dc'] = config.datacenter;
      if (config.token !== undefined) options['token'] = config.token;
      const [res, body] = (await consul.health.service(options as unknown as Parameters<typeof consul.health.service>[0])) as unknown as [
        { headers: Record<string, string | undefined>; statusCode?: number },
        unknown,
      ];
      if (!Array.isArray(body)) throw new UnexpectedAnswer(`consul answered ${res.statusCode ?? 200} with a body that is not a JSON array`);
      const header = res.headers['x-consul-index'];
      const next = header !== undefined && /^\d+$/.test(header) ? BigInt(header) : undefined;
      return { entries: body as Entry[], index: next };
    } finally {
      cancel.off('cancel', onCancel);
    }
  };

  const watch = async (): Promise<void> => {
    let index = 0n;
    let failures = 0;
    let lastMessage = '';
    let answered = false;
    while (running) {
      await take();
      if (!running) break;
      try {
        const answer = await query(index);
        // features/blocking.mdx: reset when the index goes backwards; a missing or zero index is a reset too. An
        // index of 0 answers at once, so the rate limiter is what keeps that from spinning.
        if (answer.index === undefined || answer.index <= 0n || answer.index < index) index = 0n;
        else index = answer.index;
        const { nodes, skipped } = nodesFromEntries(answer.entries, config.nodeScheme, config.nodePathPrefix);
        for (const reason of skipped) log.warn({ reason }, 'ignoring a consul entry');
        if (failures > 0) log.info({ failures }, 'consul answers again');
        metrics.discovery.up.set(1);
        metrics.discovery.lastSuccess.set(Date.now() / 1000);
        failures = 0;
        lastMessage = '';
        candidates.update(nodes);
        answered = true;
      } catch (error) {
        if (!running) break;
        failures++;
        metrics.discovery.up.set(0);
        metrics.discovery.errors.inc();
        const message = describe(error);
        // Log the first failure, a changed one, and then at 2, 4, 8, ... failures: not one line per retry.
        if (message !== lastMessage || (failures & (failures - 1)) === 0) {
          const keeping = answered ? 'keeping the last good ring' : 'no ring yet';
          log.error({ failures }, `${message}; ${keeping}, retrying`);
          lastMessage = message;
        }
        // The next query must not block: a blocking query on the old index would return only after a whole wait
        // if nothing changed meanwhile, and discovery_up would say "down" all that time after Consul came back.
        index = 0n;
        const ceiling = Math.min(backoffMaxMs, backoffBaseMs * 2 ** Math.min(failures - 1, 20));
        await sleep(ceiling / 2 + Math.random() * (ceiling / 2));
      }
    }
  };

  const serviceId = (node: Node): string => node.id.replace(/^\[|\](?=:)/g, '').replace(/:(\d+)$/, '_$1');

  const register = async (node: Node): Promise<void> => {
    const url = new URL(node.url);
    const options: Record<string, unknown> = {
      id: serviceId(node),
      name: config.service,
      address: url.hostname.replace(/^\[|\]$/g, ''),
      port: Number(url.port),
      meta: { url: node.url },
      check: {
        name: `pushgateway ${node.id}`,
        http: `${node.url}/-/healthy`,
        interval: '5s',
        timeout: '2s',
        // Consul's minimum: a Pushgateway critical for a minute is reaped; re-registration brings it back.
        deregistercriticalserviceafter: '1m',
        // A Pushgateway behind basic auth answers an anonymous check 401 and would never join the ring. Consul
        // keeps a check's headers in its catalog: whoever may read the agent's checks may read these credentials.
        ...(config.nodeAuthorization === undefined ? {} : { header: { Authorization: [config.nodeAuthorization] } }),
      },
    };
    if (config.tag !== undefined) options['tags'] = [config.tag];
    if (config.token !== undefined) options['token'] = config.token;
    await consul.agent.service.register(options as unknown as Parameters<typeof consul.agent.service.register>[0]);
  };

  const registerAll = async (): Promise<void> => {
    // Log the first success, and a success after failures; failures every time (they are rare and need action).
    let logSuccess = true;
    while (running) {
      const results = await Promise.allSettled(config.register.map(register));
      const failed = results.flatMap((result, i) => (result.status === 'rejected' ? [{ node: config.register[i]?.id, message: describe(result.reason) }] : []));
      if (failed.length > 0) {
        for (const failure of failed) log.error({ node: failure.node }, `cannot register the pushgateway: ${failure.message}`);
        logSuccess = true;
      } else if (logSuccess) {
        log.info({ nodes: config.register.map((node) => node.id) }, 'pushgateways registered in consul');
        logSuccess = false;
      }
      await sleep(config.registerIntervalMs);
    }
  };

  return Object.freeze({
    start() {
      if (running) return;
      running = true;
      cancel = new EventEmitter();
      if (config.register.length > 0) registrar = registerAll();
      loop = watch();
    },
    async stop() {
      if (!running) return;
      running = false;
      cancel.emit('cancel');
      for (const wake of [...sleepers]) wake();
      await Promise.allSettled([loop, registrar]);
      if (config.deregisterOnExit) {
        const options = (node: Node): Record<string, unknown> =>
          config.token === undefined ? { id: serviceId(node) } : { id: serviceId(node), token: config.token };
        const results = await Promise.allSettled(
          config.register.map((node) => consul.agent.service.deregister(options(node) as unknown as Parameters<typeof consul.agent.service.deregister>[0])),
        );
        results.forEach((result, i) => {
          if (result.status === 'rejected') log.error({ node: config.register[i]?.id }, `cannot deregister: ${describe(result.reason)}`);
        });
        log.info({ nodes: config.register.map((node) => node.id) }, 'pushgateways deregistered from consul');
      }
    },
  });
}
