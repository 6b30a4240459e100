/**
 * Discovery keeps the ring's members current: static nodes, or the healthy Pushgateways Consul knows.
 */
import type { Logger } from 'pino';

import type { Config } from '../config';
import type { DirectorMetrics } from '../metrics';
import type { Placement } from '../placement';
import { type WatchTuning, createConsulDiscovery } from './consul';
import { startStatic } from './static';

/** Discovery is a started-and-stopped source of ring members. */
export type Discovery = Readonly<{ start(): void; stop(): Promise<void> }>;

/** createDiscovery picks the discovery the configuration asks for. */
export function createDiscovery(
  config: Config,
  placement: Placement,
  metrics: DirectorMetrics,
  logger: Logger,
  consulTuning?: WatchTuning,
): Discovery {
  if (config.consul !== undefined) return createConsulDiscovery(config.consul, placement, metrics, logger, consulTuning);
  return {
    start() {
      if (config.defaultNode) logger.info({ node: config.nodes[0]?.url }, 'no --node or --consul.address given: using the local Pushgateway');
      startStatic(placement, config.nodes);
      metrics.discovery.setStatic();
    },
    async stop() {},
  };
}
