/**
 * The director under `npm run bench fleet`, in its own process so the bench's client work does not disturb it.
 * Started with fork(); takes the director's flags; reports its port, then answers `reset` and `stats` messages with
 * the longest event-loop delay it saw (monitorEventLoopDelay, 5 ms resolution), the longest and the total garbage
 * collection pause, the CPU time it used since the last `reset`, and the longest gap between two ticks of a 2 ms
 * timer with the CPU the process used during that gap (all threads) and the main thread's share of it.
 */
import { readFileSync } from 'node:fs';
import { PerformanceObserver, monitorEventLoopDelay } from 'node:perf_hooks';

import { parseConfig, parseFlags } from '../lib/config';
import { createDirector } from '../lib/director';
import { createLogger } from '../lib/logger';

const delay = monitorEventLoopDelay({ resolution: 5 });
delay.enable();
let gc = { maxMs: 0, totalMs: 0 };
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) gc = { maxMs: Math.max(gc.maxMs, entry.duration), totalMs: gc.totalMs + entry.duration };
}).observe({ entryTypes: ['gc'] });
let cpu = process.cpuUsage();

/**
 * mainThreadCpuMs is the CPU time this (the main) thread used so far, from /proc/thread-self/stat in clock ticks
 * (10 ms steps); -1 where there is no such file. process.cpuUsage counts every thread, the fleet's worker included.
 */
function mainThreadCpuMs(): number {
  try {
    const fields = readFileSync('/proc/thread-self/stat', 'utf8').replace(/^.*\) /, '').split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return -1;
  }
}

// The longest stall of the loop, with the CPU the process used meanwhile (all threads) and the push thread's own
// share of it: the push thread's CPU near the stall's length means it was working (its own code or GC); much less
// means it was runnable but the machine ran something else.
let stall = { ms: 0, cpuMs: 0, mainCpuMs: 0 };
let tickAt = performance.now();
let tickCpu = process.cpuUsage();
let tickMainCpu = mainThreadCpuMs();
setInterval(() => {
  const at = performance.now();
  const used = process.cpuUsage(tickCpu);
  const mainCpu = mainThreadCpuMs();
  if (at - tickAt > stall.ms) stall = { ms: at - tickAt, cpuMs: (used.user + used.system) / 1000, mainCpuMs: mainCpu - tickMainCpu };
  // BENCH_FLEET_STALLS=1 prints each stall over 40 ms on the monotonic clock in µs, the clock --cpu-prof samples use.
  if (process.env['BENCH_FLEET_STALLS'] !== undefined && at - tickAt > 40) {
    const nowUs = Number(process.hrtime.bigint() / 1000n);
    console.error(JSON.stringify({ stall: { fromUs: nowUs - Math.round((at - tickAt) * 1000), toUs: nowUs, cpuMs: (used.user + used.system) / 1000, mainCpuMs: mainCpu - tickMainCpu } }));
  }
  tickAt = at;
  tickCpu = process.cpuUsage();
  tickMainCpu = mainCpu;
}, 2).unref();
const config = parseConfig(parseFlags(process.argv.slice(2)).values, process.env);
const director = createDirector(config, createLogger(config.logLevel));
void director.listen().then((address) => process.send?.({ port: address.port }));
process.on('message', (message) => {
  if (message === 'reset') {
    delay.reset();
    gc = { maxMs: 0, totalMs: 0 };
    cpu = process.cpuUsage();
    stall = { ms: 0, cpuMs: 0, mainCpuMs: 0 };
    process.send?.({ reset: true });
  } else if (message === 'stats') {
    const used = process.cpuUsage(cpu);
    process.send?.({
      maxMs: delay.max / 1e6,
      p99Ms: delay.percentile(99) / 1e6,
      gcMaxMs: gc.maxMs,
      gcTotalMs: gc.totalMs,
      cpuMs: (used.user + used.system) / 1000,
      rssMiB: process.memoryUsage.rss() / 2 ** 20,
      stallMs: stall.ms,
      stallCpuMs: stall.cpuMs,
      stallMainCpuMs: stall.mainCpuMs,
    });
  } else if (message === 'exit') {
    void director.close().then(() => process.exit(0));
  }
});
