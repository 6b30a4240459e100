#!/usr/bin/env node
/**
 * pgw-director's command line: the server (default), and the one-shot commands `lookup PATH...`, `ring` and
 * `reconcile`. The only place that reads process.argv and process.env, listens, and handles signals. One-shot
 * commands print their report on stdout and log on stderr, so `pgw-director reconcile | jq` reads the report alone.
 */
import { once } from 'node:events';

import pino, { type Logger } from 'pino';

import { type Command, ConfigError, type Config, helpText, parseCommand, parseConfig, parseFlags } from '../lib/config';
import { createDirector, createNodeClientFor, createPlacement } from '../lib/director';
import { createDiscovery } from '../lib/discovery';
import { describeLookup, describeRing } from '../lib/inspect';
import { createLogger } from '../lib/logger';
import { type DirectorMetrics, createMetrics } from '../lib/metrics';
import type { Placement } from '../lib/placement';
import { createReconcileMetrics, createReconciler } from '../lib/reconcile';
import { createTombstones } from '../lib/tombstones';
import { VERSION } from '../lib/version';

const EXIT_USAGE = 2;
/** How long a one-shot command waits for the first membership (Consul's first answer). */
const RING_WAIT_MS = 10_000;

/** usageError prints a start-up misconfiguration the way every usage error is printed, and returns exit status 2. */
function usageError(message: string): number {
  console.error(`pgw-director: ${message}`);
  console.error('Run "pgw-director --help" for the flags.');
  return EXIT_USAGE;
}

/**
 * loadRing builds a placement and its discovery, nothing else, and waits for the first membership: it arrives as the
 * placement's `change` event (static nodes set it at once). Registration in Consul is left to the server.
 */
async function loadRing(config: Config, logger: Logger): Promise<{ placement: Placement; metrics: DirectorMetrics }> {
  const placement = createPlacement(config);
  const metrics = createMetrics(placement);
  const readOnly: Config = config.consul === undefined ? config : { ...config, consul: { ...config.consul, register: [], deregisterOnExit: false } };
  const discovery = createDiscovery(readOnly, placement, metrics, logger);
  const first = once(placement, 'change', { signal: AbortSignal.timeout(RING_WAIT_MS) }).catch(() => undefined);
  discovery.start();
  if (placement.pendingReason !== undefined) await first;
  await discovery.stop();
  return { placement, metrics };
}

async function runCommand(command: Command, args: readonly string[], config: Config): Promise<number> {
  // Logs go to stderr. `reconcile` logs what it does at the configured level; the others only what goes wrong.
  const level = command === 'reconcile' || config.logLevel !== 'info' ? config.logLevel : 'warn';
  const logger = createLogger(level, pino.destination({ dest: 2, sync: true }));
  for (const notice of config.notices) logger.info(notice);
  const { placement, metrics } = await loadRing(config, logger);
  if (placement.ring.points === 0) {
    // Still waiting for Consul, or it lists no healthy Pushgateway: nothing to print or reconcile.
    console.error(`pgw-director: ${placement.unavailableMessage()}`);
    return 1;
  }
  if (command === 'reconcile') {
    const onRing = config.reconcile.drain.filter((node) => placement.ring.nodes.some((member) => member.id === node.id));
    if (onRing.length > 0) {
      return usageError(
        `--reconcile.drain=${onRing.map((node) => node.url).join(',')} is still on the ring: take it out of discovery first, so its groups have other owners to move to`,
      );
    }
    // The tombstones the serving replicas share (in Consul's KV store): without them a pass would bring deleted
    // groups back from a node that held an old copy.
    const tombstones = createTombstones(config, metrics.registry, logger);
    const reconciler = createReconciler(placement, config.reconcile, createReconcileMetrics(metrics.registry), logger, createNodeClientFor(config), tombstones);
    const report = await reconciler.pass();
    process.stdout.write(`${JSON.stringify(report)}\n`);
    return report.errors === 0 ? 0 : 1;
  }
  if (command === 'ring') {
    for (const member of describeRing(placement).members) {
      process.stdout.write(`${member.id}\t${member.url}\t${(member.share * 100).toFixed(2)}%\n`);
    }
    return 0;
  }
  let status = 0;
  for (const path of args) {
    const result = describeLookup(placement, path);
    if (!result.ok) {
      process.stderr.write(`${path}\terror: ${result.message}\n`);
      status = 1;
      continue;
    }
    process.stdout.write(`${path}\t${result.view.node === null ? 'no node' : result.view.node.url}\n`);
  }
  return status;
}

async function serve(config: Config): Promise<number> {
  const logger = createLogger(config.logLevel);
  for (const notice of config.notices) logger.info(notice);
  const director = createDirector(config, logger);
  let address;
  try {
    address = await director.listen();
  } catch (error) {
    // One line, no stack: a port in use is an operator's mistake, not a bug.
    logger.fatal({ err: (error as Error).message }, 'cannot listen');
    return 1;
  }
  logger.info(
    { address: `${address.address}:${address.port}`, mode: config.mode, hash_key: config.hashKey, vnodes: config.vnodes, version: VERSION },
    'pgw-director listening',
  );

  return await new Promise<number>((resolve) => {
    const shutdown = (signal: NodeJS.Signals): void => {
      logger.info({ signal }, 'shutting down: finishing in-flight requests');
      const force = setTimeout(() => {
        logger.warn('in-flight requests did not finish within 30s; exiting anyway');
        process.exit(0);
      }, 30_000);
      force.unref();
      director.close().then(
        () => resolve(0),
        (error: unknown) => {
          logger.error({ err: error }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', shutdown);
    process.once('SIGINT', shutdown);
  });
}

async function main(argv: readonly string[]): Promise<number> {
  let config: Config;
  let command: Command | undefined;
  let args: readonly string[];
  try {
    const flags = parseFlags(argv);
    if (flags.values['help'] === true) {
      process.stdout.write(helpText());
      return 0;
    }
    if (flags.values['version'] === true) {
      process.stdout.write(`pgw-director ${VERSION} (node ${process.version})\n`);
      return 0;
    }
    config = parseConfig(flags.values, process.env);
    ({ command, args } = parseCommand(flags.positionals, config));
  } catch (error) {
    if (error instanceof ConfigError) return usageError(error.message);
    throw error;
  }
  return command === undefined ? serve(config) : runCommand(command, args, config);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  },
);
