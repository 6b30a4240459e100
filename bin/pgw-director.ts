#!/usr/bin/env node
/**
 * pgw-director's command line: the server (default), `lookup PATH...` and `ring`. The only place that reads
 * process.argv and process.env, listens, and handles signals.
 */
import { ConfigError, type Config, helpText, parseConfig, parseFlags } from '../lib/config';
import { type Director, createDirector } from '../lib/director';
import { describeLookup, describeRing } from '../lib/http/app';
import { createLogger } from '../lib/logger';
import { VERSION } from '../lib/version';

const EXIT_USAGE = 2;

async function waitForMembers(director: Director, timeoutMs: number): Promise<void> {
  director.discovery.start();
  const deadline = Date.now() + timeoutMs;
  while (director.placement.pendingReason !== undefined && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await director.discovery.stop();
}

async function runTool(command: string, paths: readonly string[], config: Config): Promise<number> {
  // `reconcile` logs what it does at the configured level; the other tools print results only.
  const director = createDirector(config, createLogger(command === 'reconcile' ? config.logLevel : 'error'));
  await waitForMembers(director, 10_000);
  const placement = director.placement;
  if (placement.pendingReason !== undefined) {
    console.error(`pgw-director: no ring members (${placement.pendingReason})`);
    return 1;
  }
  if (command === 'reconcile') {
    const report = await director.reconciler.pass();
    console.log(JSON.stringify(report));
    return report.errors === 0 ? 0 : 1;
  }
  if (command === 'ring') {
    const ring = describeRing(placement) as { members: { id: string; url: string; share: number }[] };
    for (const member of ring.members) console.log(`${member.id}\t${member.url}\t${(member.share * 100).toFixed(2)}%`);
    return 0;
  }
  if (paths.length === 0) {
    console.error('pgw-director: lookup needs at least one push path, e.g. /metrics/job/backup/instance/db1');
    return EXIT_USAGE;
  }
  let status = 0;
  for (const path of paths) {
    const result = describeLookup(placement, path);
    if (!result.ok) {
      console.error(`${path}\terror: ${result.message}`);
      status = 1;
      continue;
    }
    const node = result.body['node'] as { url: string } | null;
    console.log(`${path}\t${node === null ? 'no node' : node.url}`);
  }
  return status;
}

async function main(argv: readonly string[]): Promise<number> {
  let config: Config;
  let positionals: readonly string[];
  try {
    const flags = parseFlags(argv);
    if (flags.values['help'] === true) {
      process.stdout.write(helpText());
      return 0;
    }
    if (flags.values['version'] === true) {
      console.log(`pgw-director ${VERSION} (node ${process.version})`);
      return 0;
    }
    positionals = flags.positionals;
    config = parseConfig(flags.values, process.env);
    const command = positionals[0];
    if (command !== undefined && command !== 'lookup' && command !== 'ring' && command !== 'reconcile') {
      throw new ConfigError(`unknown command ${JSON.stringify(command)} (commands: lookup, ring, reconcile)`);
    }
    if (command !== undefined) return await runTool(command, positionals.slice(1), config);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`pgw-director: ${error.message}`);
      console.error('Run "pgw-director --help" for the flags.');
      return EXIT_USAGE;
    }
    throw error;
  }

  const logger = createLogger(config.logLevel);
  const director = createDirector(config, logger);
  let address;
  try {
    address = await director.listen();
  } catch (error) {
    logger.fatal({ err: error }, 'cannot listen');
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

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  },
);
