/**
 * The director under `npm run bench fleet`, in its own process so the bench's client work does not disturb it.
 * Started with fork(); takes the director's flags; reports its port, then answers `reset` and `stats` messages with
 * the longest event-loop delay it saw (monitorEventLoopDelay, 5 ms resolution).
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';

import { parseConfig, parseFlags } from '../lib/config';
import { createDirector } from '../lib/director';
import { createLogger } from '../lib/logger';

const delay = monitorEventLoopDelay({ resolution: 5 });
delay.enable();
const config = parseConfig(parseFlags(process.argv.slice(2)).values, process.env);
const director = createDirector(config, createLogger(config.logLevel));
void director.listen().then((address) => process.send?.({ port: address.port }));
process.on('message', (message) => {
  if (message === 'reset') {
    delay.reset();
    process.send?.({ reset: true });
  } else if (message === 'stats') {
    process.send?.({ maxMs: delay.max / 1e6, p99Ms: delay.percentile(99) / 1e6 });
  } else if (message === 'exit') {
    void director.close().then(() => process.exit(0));
  }
});
