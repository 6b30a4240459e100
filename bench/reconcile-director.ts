/**
 * The director under test in `npm run bench reconcile`, run as a child process (fork, with IPC) so that its RSS and
 * its event loop are its own: it is a director as bin/ builds one (redirect mode, the given flags), plus an event-loop
 * delay monitor (of the main thread, which answers the pushes). Messages from the bench: `quiet` starts a window without a pass; `prepare` starts the
 * next pass's process as the director's scheduler does and answers `prepared` after the scheduler's lead; `pass` runs one
 * reconciliation pass and answers with its report, its CPU time and the event-loop delays seen during it and during
 * the quiet window before it; `progress` answers with the migrated and deleted counters and the event-loop delays so far.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';

import { parseConfig, parseFlags } from '../lib/config';
import { createDirector, prepareLeadMs } from '../lib/director';
import { createLogger } from '../lib/logger';

/** The default --reconcile.interval, whose lead the bench's pass gets. */
const DEFAULT_INTERVAL_MS = 60_000;

async function main(): Promise<void> {
  const config = parseConfig(parseFlags(process.argv.slice(2)).values);
  // BENCH_RECONCILE_THREAD=inline runs the pass on the main thread, as before passes had a process of their own.
  const reconcileIn = process.env['BENCH_RECONCILE_THREAD'] === 'inline' ? 'inline' : 'process';
  const director = createDirector(config, createLogger(config.logLevel), { reconcileIn });
  const address = await director.listen();
  // Resolution 1 ms: a blocked loop shows up as one long delay; the figure is the largest one.
  const delay = monitorEventLoopDelay({ resolution: 1 });
  const counter = async (name: string): Promise<number> => {
    const metric = await director.metrics.registry.getSingleMetric(name)?.get();
    return metric?.values[0]?.value ?? 0;
  };
  delay.enable();
  process.on('message', (message: { cmd: string }) => {
    void (async () => {
      if (message.cmd === 'quiet') {
        delay.reset();
      } else if (message.cmd === 'prepare') {
        // The pass stands in for a scheduled one: its process is started as the scheduler starts it, the scheduler's
        // lead ahead (for the default --reconcile.interval: the bench's director schedules no passes of its own).
        const leadMs = prepareLeadMs(DEFAULT_INTERVAL_MS);
        director.preparePass();
        setTimeout(() => process.send?.({ cmd: 'prepared', leadMs }), leadMs);
      } else if (message.cmd === 'pass') {
        const quiet = { eventLoopMaxMs: delay.max / 1e6, eventLoopP99Ms: delay.percentile(99) / 1e6 };
        delay.reset();
        const cpu = process.cpuUsage();
        const report = await director.reconciler.pass();
        const used = process.cpuUsage(cpu);
        process.send?.({
          cmd: 'pass',
          report,
          eventLoopMaxMs: delay.max / 1e6,
          eventLoopP99Ms: delay.percentile(99) / 1e6,
          quiet,
          cpuSeconds: (used.user + used.system) / 1e6,
        });
      } else if (message.cmd === 'progress') {
        process.send?.({
          cmd: 'progress',
          migrated: await counter('pgw_director_reconcile_migrated_groups_total'),
          deleted: await counter('pgw_director_reconcile_deleted_groups_total'),
          eventLoopMaxMs: delay.max / 1e6,
          eventLoopP99Ms: delay.percentile(99) / 1e6,
        });
      }
    })();
  });
  // Exit on SIGTERM through process.exit, which writes a --cpu-prof or --heap-prof profile.
  process.once('SIGTERM', () => process.exit(0));
  process.send?.({ cmd: 'ready', port: address.port });
}

void main();
