/**
 * Discovery keeps the ring's members current: static nodes, the healthy Pushgateways Consul knows, or the records of
 * DNS names.
 */
import type { Logger } from 'pino';

import type { Config } from '../config';
import type { DirectorMetrics } from '../metrics';
import type { CandidateSink } from '../health';
import { type WatchTuning, createConsulDiscovery } from './consul';
import { type DnsTuning, createDnsDiscovery } from './dns';
import { startStatic } from './static';

/** Discovery is a started-and-stopped source of ring members. */
export type Discovery = Readonly<{ start(): void; stop(): Promise<void> }>;

/**
 * createDiscovery picks the discovery the configuration asks for. It feeds `candidates` (the health checker, which
 * feeds placement), never placement directly.
 */
export function createDiscovery(
  config: Config,
  candidates: CandidateSink,
  metrics: DirectorMetrics,
  logger: Logger,
  consulTuning?: WatchTuning,
  dnsTuning?: DnsTuning,
): Discovery {
  if (config.consul !== undefined) return createConsulDiscovery(config.consul, candidates, metrics, logger, consulTuning);
  if (config.dns !== undefined) return createDnsDiscovery(config.dns, candidates, metrics, logger, dnsTuning);
  return {
    start() {
      if (config.defaultNode) logger.info({ node: config.nodes[0]?.url }, 'no --node or --consul.address given: using the local Pushgateway');
      startStatic(candidates, config.nodes);
      metrics.discovery.setStatic();
    },
    async stop() {},
  };
}
