/**
 * The director's logger: pino JSON on stdout. Credentials are redacted wherever they could appear.
 */
import pino, { type Logger } from 'pino';

import type { LogLevel } from './config';

/** REDACTED_PATHS are the log fields that may carry credentials; pino replaces their values. */
export const REDACTED_PATHS: readonly string[] = [
  'req.headers.authorization',
  'req.headers["proxy-authorization"]',
  'req.headers["x-consul-token"]',
  'req.headers.cookie',
  'headers.authorization',
  'headers["x-consul-token"]',
  'token',
];

/** createLogger returns the root logger. `destination` defaults to stdout (tests pass a stream to read). */
export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { name: 'pgw-director' },
    redact: { paths: [...REDACTED_PATHS], censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}
