/**
 * Builds directors for specs from the same flags a user would type, logging into memory instead of stdout.
 */
import { Writable } from 'node:stream';

import { parseConfig, parseFlags } from '../../lib/config';
import { type Director, type DirectorOptions, createDirector } from '../../lib/director';
import { createLogger } from '../../lib/logger';

/** LogSink collects the director's JSON log lines. */
export class LogSink extends Writable {
  readonly lines: Record<string, unknown>[] = [];
  readonly raw: string[] = [];
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line === '') continue;
      this.raw.push(line);
      this.lines.push(JSON.parse(line) as Record<string, unknown>);
    }
    done();
  }
}

/** TestDirector is a director built from flags, with the log it writes. */
export type TestDirector = Director & { log: LogSink };

/**
 * directorFromFlags builds (but does not start) a director from command-line flags. Health checks and periodic
 * reconciliation are off unless the flags turn them on (the last flag wins): many specs name nodes that do not listen,
 * or addresses outside loopback that a spec must never contact, and specs count the requests their nodes receive.
 */
export function directorFromFlags(
  flags: readonly string[],
  env: Record<string, string> = {},
  options: DirectorOptions = {},
): TestDirector {
  const defaults = ['--web.listen-address=127.0.0.1:0', '--log.level=debug', '--node.health-interval=0', '--reconcile.interval=0'];
  const config = parseConfig(parseFlags([...defaults, ...flags]).values, env);
  const log = new LogSink();
  const director = createDirector(config, createLogger(config.logLevel, log), options);
  return { ...director, log };
}
