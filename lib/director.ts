/**
 * createDirector wires one director from a Config: placement, discovery, metrics, proxy, push handler, app and
 * listener. It reads no process globals, so tests can run several in one process; bin/ owns argv, env and signals.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import type { Logger } from 'pino';

import type { Config } from './config';
import { type Discovery, createDiscovery } from './discovery';
import type { WatchTuning } from './discovery/consul';
import { createApp } from './http/app';
import { createFastLane } from './http/fast-lane';
import { type Proxy, createProxy } from './http/proxy';
import { createPushHandler } from './http/push';
import { SERVER_TIMEOUTS, type ServerTimeouts, createServer } from './http/server';
import { type DirectorMetrics, createMetrics } from './metrics';
import { type NodeClient, createNodeClient } from './nodes/client';
import { Placement, type RingChange } from './placement';
import { type Reconciler, createReconcileMetrics, createReconciler } from './reconcile';

/** Director is one running director. */
export type Director = Readonly<{
  config: Config;
  placement: Placement;
  metrics: DirectorMetrics;
  server: Server;
  discovery: Discovery;
  reconciler: Reconciler;
  /**
   * listen binds the listener, then starts discovery and reconciliation; resolves with the bound address. A listen
   * error rejects before anything else has started, so nothing keeps the process alive after it.
   */
  listen(): Promise<AddressInfo>;
  /** close stops accepting, lets in-flight requests finish, and stops discovery. */
  close(): Promise<void>;
}>;

/** DirectorOptions are knobs for tests and tools, not for users. */
export type DirectorOptions = Readonly<{ consulTuning?: WatchTuning; serverTimeouts?: ServerTimeouts }>;

/** createPlacement builds the empty placement a configuration asks for; discovery fills it. */
export function createPlacement(config: Config): Placement {
  return new Placement({
    vnodes: config.vnodes,
    hashKey: config.hashKey,
    ...(config.consul === undefined ? {} : { pendingReason: 'waiting for consul' }),
  });
}

/** createNodeClientFor builds the client of the director's own requests to nodes, with the node credentials. */
export function createNodeClientFor(config: Config): NodeClient {
  return createNodeClient({ timeoutMs: config.proxyTimeoutMs, authorization: config.nodeAuthorization });
}

/** createDirector builds a director without starting it. */
export function createDirector(config: Config, logger: Logger, options: DirectorOptions = {}): Director {
  const placement = createPlacement(config);
  placement.on('change', (change: RingChange) => {
    logger.info(
      {
        joined: change.joined.map((node) => node.id),
        left: change.left.map((node) => node.id),
        members: placement.ring.nodes.length,
      },
      'ring changed',
    );
  });
  const metrics = createMetrics(placement);
  const discovery = createDiscovery(config, placement, metrics, logger, options.consulTuning);
  const proxy: Proxy | undefined =
    config.mode === 'redirect'
      ? undefined
      : createProxy({ timeoutMs: config.proxyTimeoutMs, maxBodyBytes: config.proxyMaxBodyBytes }, metrics, logger);
  const push = createPushHandler({ placement, mode: config.mode, proxy, metrics, logger });
  const app = createApp({ placement, metrics, logger });
  const timeouts = options.serverTimeouts ?? SERVER_TIMEOUTS;
  const fastLane =
    proxy === undefined ? undefined : createFastLane({ placement, mode: config.mode, proxy, metrics, logger, ...timeouts });
  const server = createServer({ push, app, ...(fastLane === undefined ? {} : { fastLane }) }, timeouts);
  const nodeClient = createNodeClientFor(config);
  const reconciler = createReconciler(placement, config.reconcile, createReconcileMetrics(metrics.registry), logger, nodeClient);

  // Passes run one at a time, only while the ring has members: the first as soon as the first membership is known
  // (stale copies left by the last run should not wait a whole interval), then one every interval.
  let reconcileTimer: NodeJS.Timeout | undefined;
  let reconciling: Promise<unknown> = Promise.resolve();
  let closed = false;
  const runPass = (): void => {
    if (closed) return;
    if (placement.pendingReason === undefined && placement.ring.points > 0) {
      reconciling = reconciler.pass().catch((error: unknown) => logger.error({ err: error }, 'reconciliation pass failed'));
    }
    void reconciling.then(scheduleReconcile);
  };
  const scheduleReconcile = (): void => {
    if (config.reconcile.intervalMs <= 0 || closed) return;
    clearTimeout(reconcileTimer);
    reconcileTimer = setTimeout(runPass, config.reconcile.intervalMs);
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
    metrics,
    server,
    discovery,
    reconciler,
    async listen() {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        const { host, port } = config.listen;
        if (host === undefined) server.listen(port, resolve);
        else server.listen(port, host, resolve);
      });
      discovery.start();
      startReconcile();
      return server.address() as AddressInfo;
    },
    async close() {
      closed = true;
      clearTimeout(reconcileTimer);
      await reconciling;
      await discovery.stop();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        // A keep-alive connection that finishes its last request becomes idle: close those as they appear, so a
        // client holding connections open cannot keep the director from exiting.
        server.closeIdleConnections();
        const sweep = setInterval(() => server.closeIdleConnections(), 100);
        server.once('close', () => clearInterval(sweep));
      });
      proxy?.close();
    },
  });
}
