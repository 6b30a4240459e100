/**
 * createDirector wires one director from a Config: placement, discovery, metrics, proxy, push handler, app and
 * listener. It reads no process globals, so tests can run several in one process; bin/ owns argv, env and signals.
 */
import type { Server } from 'node:http';
import type { AddressInfo, LookupFunction } from 'node:net';

import type { Logger } from 'pino';

import type { Config } from './config';
import { type Discovery, createDiscovery } from './discovery';
import type { WatchTuning } from './discovery/consul';
import { type DnsTuning, createDnsResolver, createResolverLookup } from './discovery/dns';
import { type FanOut, createFanOut } from './fanout';
import type { Node } from './core/node';
import { createFleet } from './fleet';
import { type FleetThread, createFleetThread } from './fleet/thread';
import { createApp } from './http/app';
import { type HealthChecker, createHealthChecker } from './health';
import { createFastLane } from './http/fast-lane';
import { type FleetAnswers, createFleetAnswers } from './http/fleet-answers';
import { type NodeHealth, createFleetRouter } from './http/fleet-api';
import { type Proxy, createProxy } from './http/proxy';
import { createPushHandler } from './http/push';
import { SERVER_TIMEOUTS, type ServerTimeouts, createServer } from './http/server';
import { type DirectorMetrics, createMetrics } from './metrics';
import { type NodeClient, createNodeClient } from './nodes/client';
import { Placement, type RingChange } from './placement';
import { type Reconciler, createReconcileMetrics, createReconciler } from './reconcile';
import { createProcessReconciler } from './reconcile/process';
import { type TombstoneStore, createTombstones } from './tombstones';

/** Director is one running director. */
export type Director = Readonly<{
  config: Config;
  placement: Placement;
  /**
   * health sits between discovery and placement. The proxy's passive failures go to `health.reportFailure(node,
   * reason)`.
   */
  health: HealthChecker;
  metrics: DirectorMetrics;
  server: Server;
  discovery: Discovery;
  reconciler: Reconciler;
  /** Groups deleted through this director, or undefined when --group.tombstone-ttl is 0. */
  tombstones: TombstoneStore | undefined;
  /**
   * preparePass starts the next reconciliation pass's process (Reconciler.prepare), as the scheduler does
   * prepareLeadMs(--reconcile.interval) before each scheduled pass; a no-op once closed or where passes run inline.
   */
  preparePass(): void;
  /** The fan-out DELETE both lanes call. */
  fanOut: FanOut;
  /** The answers of /api/v1/metrics, /api/v1/fleet/groups and the fleet page (made on the fleet's worker thread). */
  fleet: FleetAnswers;
  /**
   * listen binds the listener, then starts discovery and reconciliation; resolves with the bound address. A listen
   * error rejects before anything else has started, so nothing keeps the process alive after it.
   */
  listen(): Promise<AddressInfo>;
  /** close stops accepting, lets in-flight requests finish, and stops discovery. */
  close(): Promise<void>;
}>;

/** DirectorOptions are knobs for tests and tools, not for users. */
export type DirectorOptions = Readonly<{
  consulTuning?: WatchTuning;
  dnsTuning?: DnsTuning;
  serverTimeouts?: ServerTimeouts;
  /** How long a node's listing is reused by the fleet views (FLEET_CACHE_MS by default). */
  fleetCacheMs?: number;
  /** How old a fleet view may be and still be served while a fresher one is made (FLEET_MAX_STALE_MS by default). */
  fleetMaxStaleMs?: number;
  /** What the fleet page shows as a node's health (members `in ring` by default). */
  nodeHealth?: NodeHealth;
  /** The clock the fleet views measure ages with (Date.now by default). */
  fleetClock?: () => number;
  /**
   * Where reconciliation passes run: `process`, a child process per pass (lib/reconcile/process.ts), or `inline`, on
   * the main thread as the one-shot command does. @default 'process'
   */
  reconcileIn?: 'process' | 'inline';
  /**
   * Where the fleet views are listed, built and rendered: `worker`, one long-lived worker thread (lib/fleet/thread.ts),
   * or `inline`, on the main thread. @default 'worker'
   */
  fleetThread?: 'worker' | 'inline';
  /** The fleet worker's entry point and how long reads are refused after it failed (specs). */
  fleetWorkerFile?: string;
  fleetRetryMs?: number;
}>;

/** describeHealth renders a node's health for the fleet page from the checker's view of it. */
function describeHealth(health: HealthChecker, checking: boolean): NodeHealth {
  return (node, role) => {
    if (role === 'draining') return 'draining';
    const status = health.statuses().find((candidate) => candidate.node.id === node.id);
    if (status === undefined || !checking) return 'in ring';
    if (!status.health.up) return `down: ${status.lastError ?? 'failing checks'}`;
    return status.health.proven ? 'up' : 'up (on probation)';
  };
}

/** createPlacement builds the empty placement a configuration asks for; discovery fills it. */
export function createPlacement(config: Config): Placement {
  return new Placement({
    vnodes: config.vnodes,
    hashKey: config.hashKey,
    ...(config.consul === undefined ? {} : { pendingReason: 'waiting for consul' }),
    ...(config.dns === undefined ? {} : { pendingReason: 'waiting for dns' }),
  });
}

/**
 * createNodeClientFor builds the client of the director's own requests to nodes, with the node credentials; with DNS
 * discovery, node names resolve through its DNS servers, as discovery found them.
 */
export function createNodeClientFor(config: Config, lookup: { lookup?: LookupFunction } = nodeLookup(config, undefined)): NodeClient {
  return createNodeClient({ timeoutMs: config.proxyTimeoutMs, authorization: config.nodeAuthorization, ...lookup });
}

/** nodeLookup is how connections to nodes resolve names: with DNS discovery, through its DNS servers. */
function nodeLookup(config: Config, dnsTuning: DnsTuning | undefined): { lookup?: LookupFunction } {
  return config.dns === undefined ? {} : { lookup: createResolverLookup(createDnsResolver(config.dns.server, dnsTuning)) };
}

/** PREPARE_LEAD_MS is how long before a scheduled pass its process is started, at most. */
export const PREPARE_LEAD_MS = 2000;

/**
 * prepareLeadMs is how long before a pass due every `intervalMs` its process is started: PREPARE_LEAD_MS, or half the
 * interval when that is shorter. Long enough for the Node runtime to start (about half a second here), short enough
 * that an idle process (about 55 MiB) does not wait through the whole interval.
 */
export function prepareLeadMs(intervalMs: number): number {
  return Math.min(PREPARE_LEAD_MS, Math.floor(intervalMs / 2));
}

/** createDirector builds a director without starting it. */
export function createDirector(config: Config, logger: Logger, options: DirectorOptions = {}): Director {
  const placement = createPlacement(config);
  placement.on('change', (change: RingChange) => {
    logger.info(
      {
        joined: change.joined.map((node) => node.id),
        left: change.left.map((node) => node.id),
        ...(Object.keys(change.reasons).length === 0 ? {} : { reasons: change.reasons }),
        members: placement.ring.nodes.length,
      },
      'ring changed',
    );
  });
  const metrics = createMetrics(placement);
  const lookup = nodeLookup(config, options.dnsTuning);
  const nodeClient = createNodeClientFor(config, lookup);
  const health = createHealthChecker(config.health, { target: placement, client: nodeClient, logger, metrics });
  const discovery = createDiscovery(config, health, metrics, logger, options.consulTuning, options.dnsTuning);
  const proxy: Proxy | undefined =
    config.mode === 'redirect'
      ? undefined
      : createProxy(
          {
            timeoutMs: config.proxyTimeoutMs,
            maxBodyBytes: config.proxyMaxBodyBytes,
            maxConnections: config.proxyMaxConnections,
            pipelining: config.proxyPipelining,
            ...lookup,
            // A failed connection is a failed health check at once (passive checking).
            onConnectFailure: (node, error) => health.reportFailure(node, (error as NodeJS.ErrnoException).code ?? error.message),
            // A push its owner provably did not receive goes to the group's owner once that node has left the ring.
            successor: (keyHash, excluded) => placement.ring.lookupExcluding(keyHash, excluded),
          },
          metrics,
          logger,
        );
  const tombstones = createTombstones(config, metrics.registry, logger);
  const fanOut = createFanOut({ placement, drain: config.reconcile.drain, client: nodeClient, tombstones, logger, registry: metrics.registry });
  const push = createPushHandler({ placement, mode: config.mode, proxy, metrics, logger, fanOut });
  const down = (): Node[] => health.statuses().filter((status) => !status.health.up).map((status) => status.node);
  const nodeHealth = options.nodeHealth ?? describeHealth(health, config.health.intervalMs > 0);
  const fleetThread: FleetThread | undefined =
    options.fleetThread === 'inline'
      ? undefined
      : createFleetThread({
          placement,
          vnodes: config.vnodes,
          drain: config.reconcile.drain,
          down,
          health: nodeHealth,
          staleAfterMs: config.ui.staleAfterMs,
          cacheMs: options.fleetCacheMs,
          maxStaleMs: options.fleetMaxStaleMs,
          client: { timeoutMs: config.proxyTimeoutMs, authorization: config.nodeAuthorization },
          lookup: lookup.lookup,
          logger,
          registry: metrics.registry,
          ...(options.fleetWorkerFile === undefined ? {} : { workerFile: options.fleetWorkerFile }),
          ...(options.fleetRetryMs === undefined ? {} : { retryMs: options.fleetRetryMs }),
        });
  const fleet: FleetAnswers =
    fleetThread ??
    createFleetAnswers({
      fleet: createFleet({
        placement,
        client: nodeClient,
        drain: config.reconcile.drain,
        down,
        registry: metrics.registry,
        ...(options.fleetCacheMs === undefined ? {} : { cacheMs: options.fleetCacheMs }),
        ...(options.fleetMaxStaleMs === undefined ? {} : { maxStaleMs: options.fleetMaxStaleMs }),
      }),
      staleAfterMs: config.ui.staleAfterMs,
      health: nodeHealth,
    });
  const fleetRouter = createFleetRouter({
    answers: fleet,
    ui: config.ui.enabled,
    ...(options.fleetClock === undefined ? {} : { now: options.fleetClock }),
  });
  const app = createApp({ placement, metrics, logger, routers: [fleetRouter] });
  const timeouts = options.serverTimeouts ?? SERVER_TIMEOUTS;
  const fastLane =
    proxy === undefined ? undefined : createFastLane({ placement, mode: config.mode, proxy, metrics, logger, fanOut, ...timeouts });
  const server = createServer({ push, app, ...(fastLane === undefined ? {} : { fastLane }) }, timeouts);
  const reconcileMetrics = createReconcileMetrics(metrics.registry);
  const reconciler =
    options.reconcileIn === 'inline'
      ? createReconciler(placement, config.reconcile, reconcileMetrics, logger, nodeClient, tombstones)
      : createProcessReconciler({
          placement,
          vnodes: config.vnodes,
          options: config.reconcile,
          client: { timeoutMs: config.proxyTimeoutMs, authorization: config.nodeAuthorization },
          lookup: lookup.lookup,
          ...(config.reconcile.maxHeapBytes === 0 ? {} : { maxHeapMb: config.reconcile.maxHeapBytes / 2 ** 20 }),
          logLevel: config.logLevel,
          metrics: reconcileMetrics,
          logger,
          tombstones,
        });

  // Passes run one at a time, only while the ring has members: the first as soon as the first membership is known
  // (stale copies left by the last run should not wait a whole interval), then one every interval.
  let reconcileTimer: NodeJS.Timeout | undefined;
  let prepareTimer: NodeJS.Timeout | undefined;
  let reconciling: Promise<unknown> = Promise.resolve();
  let closed = false;
  // Shutting down stops a running pass after the moves it has made (lib/reconcile.ts), rather than waiting for it all.
  const stopPass = new AbortController();
  const runPass = (): void => {
    if (closed) return;
    if (placement.pendingReason === undefined && placement.ring.points > 0) {
      reconcileMetrics.passStart.set(Date.now() / 1000);
      reconciling = reconciler
        .pass(stopPass.signal)
        .catch((error: unknown) => logger.error({ err: error }, 'reconciliation pass failed'))
        .finally(() => reconcileMetrics.passStart.set(0));
    }
    void reconciling.then(scheduleReconcile);
  };
  const preparePass = (): void => {
    // As runPass: no pass is run before the ring has members, so none is prepared either.
    if (!closed && placement.pendingReason === undefined && placement.ring.points > 0) reconciler.prepare?.();
  };
  const scheduleReconcile = (): void => {
    const intervalMs = config.reconcile.intervalMs;
    if (intervalMs <= 0 || closed) return;
    clearTimeout(reconcileTimer);
    clearTimeout(prepareTimer);
    // The pass's process starts a little before the pass, so its start-up is not part of the pass.
    prepareTimer = setTimeout(preparePass, intervalMs - prepareLeadMs(intervalMs));
    prepareTimer.unref();
    reconcileTimer = setTimeout(runPass, intervalMs);
    reconcileTimer.unref();
  };
  const startReconcile = (): void => {
    if (config.reconcile.intervalMs <= 0) return;
    if (placement.pendingReason === undefined) {
      runPass();
      return;
    }
    // The first membership arrives as a change; until then a pass would find nothing to do.
    placement.once('change', runPass);
  };

  return Object.freeze({
    config,
    placement,
    health,
    metrics,
    server,
    discovery,
    reconciler,
    preparePass,
    tombstones,
    fanOut,
    fleet,
    async listen() {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        const { host, port } = config.listen;
        if (host === undefined) server.listen(port, resolve);
        else server.listen(port, host, resolve);
      });
      health.start();
      discovery.start();
      startReconcile();
      return server.address() as AddressInfo;
    },
    async close() {
      closed = true;
      clearTimeout(reconcileTimer);
      clearTimeout(prepareTimer);
      reconciler.close?.();
      stopPass.abort();
      await reconciling;
      await discovery.stop();
      await health.stop();
      await fanOut.close();
      await fleetThread?.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        // A keep-alive connection that finishes its last request becomes idle: close those as they appear, so a
        // client holding connections open cannot keep the director from exiting.
        server.closeIdleConnections();
        const sweep = setInterval(() => server.closeIdleConnections(), 100);
        server.once('close', () => clearInterval(sweep));
      });
      await proxy?.close();
    },
  });
}
