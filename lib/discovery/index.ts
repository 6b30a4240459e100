/**
 * Discovery keeps the ring's members current: static nodes, the healthy Pushgateways Consul knows, or the records of
 * DNS names.
 */
import type { LookupFunction } from 'node:net';

import type { Logger } from 'pino';

import type { Config } from '../config';
import type { DirectorMetrics } from '../metrics';
import type { Placement } from '../placement';
import { type WatchTuning, createConsulDiscovery } from './consul';
import { type DnsTuning, createDnsDiscovery } from './dns';
import { startStatic } from './static';

/**
 * Discovery is a started-and-stopped source of ring members. `lookup`, when set, is how connections to its nodes
 * resolve their host names (DNS discovery's nodes are names only its DNS server may know); undefined means the
 * system's resolver.
 */
export type Discovery = Readonly<{ start(): void; stop(): Promise<void>; lookup?: LookupFunction }>;

/** createDiscovery picks the discovery the configuration asks for. */
export function createDiscovery(
  config: Config,
  placement: Placement,
  metrics: DirectorMetrics,
  logger: Logger,
  consulTuning?: WatchTuning,
  dnsTuning?: DnsTuning,
): Discovery {
  if (config.consul !== undefined) return createConsulDiscovery(config.consul, placement, metrics, logger, consulTuning);
  if (config.dns !== undefined) return createDnsDiscovery(config.dns, placement, metrics, logger, dnsTuning);
  return {
    start() {
      if (config.defaultNode) logger.info({ node: config.nodes[0]?.url }, 'no --node or --consul.address given: using the local Pushgateway');
      startStatic(placement, config.nodes);
      metrics.discovery.up.set(1);
      metrics.discovery.lastSuccess.set(Date.now() / 1000);
    },
    async stop() {},
  };
}
