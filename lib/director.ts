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
import { createNodeClient } from './nodes/client';
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
  /** listen starts discovery and the listener; resolves with the bound address. */
  listen(): Promise<AddressInfo>;
  /** close stops accepting, lets in-flight requests finish, and stops discovery. */
  close(): Promise<void>;
}>;

/** DirectorOptions are knobs for tests and tools, not for users. */
export type DirectorOptions = Readonly<{ consulTuning?: WatchTuning; serverTimeouts?: ServerTimeouts }>;

/** createDirector builds a director without starting it. */
export function createDirector(config: Config, logger: Logger, options: DirectorOptions = {}): Director {
  const placement = new Placement({
    vnodes: config.vnodes,
    hashKey: config.hashKey,
    ...(config.consul === undefined ? {} : { pendingReason: 'waiting for consul' }),
  });
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
      : createProxy(
          {
            timeoutMs: config.proxyTimeoutMs,
            maxBodyBytes: config.proxyMaxBodyBytes,
            maxConnections: config.proxyMaxConnections,
            // A push its owner provably did not receive goes to the group's owner once that node has left the ring.
            successor: (keyHash, excluded) => placement.ring.lookupExcluding(keyHash, excluded),
          },
          metrics,
          logger,
        );
  const push = createPushHandler({ placement, mode: config.mode, proxy, metrics, logger });
  const app = createApp({ placement, metrics, logger });
  const timeouts = options.serverTimeouts ?? SERVER_TIMEOUTS;
  const fastLane =
    proxy === undefined ? undefined : createFastLane({ placement, mode: config.mode, proxy, logger, ...timeouts });
  const server = createServer({ push, app, ...(fastLane === undefined ? {} : { fastLane }) }, timeouts);
  const nodeClient = createNodeClient({ timeoutMs: config.proxyTimeoutMs });
  const reconciler = createReconciler(placement, config.reconcile, createReconcileMetrics(metrics.registry), logger, nodeClient);

  // Periodic passes, one at a time, only once the ring has members.
  let reconcileTimer: NodeJS.Timeout | undefined;
  let reconciling: Promise<unknown> = Promise.resolve();
  let closed = false;
  const scheduleReconcile = (): void => {
    if (config.reconcile.intervalMs <= 0 || closed) return;
    reconcileTimer = setTimeout(() => {
      if (placement.pendingReason === undefined && placement.ring.points > 0) {
        reconciling = reconciler.pass().catch((error: unknown) => logger.error({ err: error }, 'reconciliation pass failed'));
      }
      void reconciling.then(scheduleReconcile);
    }, config.reconcile.intervalMs);
    reconcileTimer.unref();
  };

  return Object.freeze({
    config,
    placement,
    metrics,
    server,
    discovery,
    reconciler,
    async listen() {
      discovery.start();
      scheduleReconcile();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        const { host, port } = config.listen;
        if (host === undefined) server.listen(port, resolve);
        else server.listen(port, host, resolve);
      });
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
      await proxy?.close();
    },
  });
}
