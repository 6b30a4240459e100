/**
 * The director's configuration: Prometheus-style flags (`--flag=value` or `--flag value`) and a YAML file with the
 * same settings, flags winning. Everything is validated once, at start-up; a contradiction is a ConfigError.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import YAML from 'yaml';

import { HASH_KEY_MODES, type HashKeyMode } from './core/key-hash';
import { type Node, parseNodeUrl } from './core/node';
import { DEFAULT_VNODES } from './core/ring';

/** ConfigError is a start-up misconfiguration; its message is meant for the operator, as is. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** PushMode is how pushes reach their node: a 307, a proxied request, or chosen per client. */
export type PushMode = 'redirect' | 'proxy' | 'auto';
const PUSH_MODES: readonly PushMode[] = ['redirect', 'proxy', 'auto'];
const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
/** LogLevel is a pino level name. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** ConsulConfig configures Consul discovery and registration. */
export type ConsulConfig = Readonly<{
  address: string;
  scheme: 'http' | 'https';
  service: string;
  tag: string | undefined;
  datacenter: string | undefined;
  /** The ACL token, or undefined. Never log it. */
  token: string | undefined;
  /** Where the token came from, for error messages: `CONSUL_HTTP_TOKEN`, `--consul.token-file=...` or `none`. */
  tokenSource: string;
  waitMs: number;
  nodeScheme: 'http' | 'https';
  nodePathPrefix: string;
  register: readonly Node[];
  registerIntervalMs: number;
  deregisterOnExit: boolean;
}>;

/** Config is the normalised configuration. */
export type Config = Readonly<{
  listen: Readonly<{ host: string | undefined; port: number }>;
  /** Static nodes. Empty with no Consul means the default local Pushgateway. */
  nodes: readonly Node[];
  /** True when no node and no discovery were configured and the default node is used. */
  defaultNode: boolean;
  vnodes: number;
  hashKey: HashKeyMode;
  logLevel: LogLevel;
  mode: PushMode;
  proxyTimeoutMs: number;
  /** Largest push body proxied, in bytes; 0 means no limit. */
  proxyMaxBodyBytes: number;
  /** Most connections the proxy opens to one node. */
  proxyMaxConnections: number;
  consul: ConsulConfig | undefined;
  reconcile: ReconcileConfig;
}>;

/** ReconcileConfig configures the reconciler and the group TTL. */
export type ReconcileConfig = Readonly<{
  /** Milliseconds between passes; 0: no periodic passes. */
  intervalMs: number;
  migrate: boolean;
  drain: readonly Node[];
  dryRun: boolean;
  ttlMs: number | undefined;
}>;

type OptionSpec = Readonly<{
  flag: string;
  kind: 'string' | 'list' | 'boolean';
  help: string;
  default?: string;
  /** The YAML key path, when it is not the flag name split at dots with dashes as underscores. */
  yaml?: readonly string[];
}>;

/** OPTIONS lists every flag; `--help` prints them in this order. */
export const OPTIONS: readonly OptionSpec[] = [
  { flag: 'config.file', kind: 'string', help: 'YAML file with the same settings as the flags (flags win).' },
  { flag: 'web.listen-address', kind: 'string', default: ':9292', help: 'Address to listen on for pushes and the API.' },
  { flag: 'node', kind: 'list', yaml: ['nodes'], help: 'A Pushgateway base URL: a static node.' },
  { flag: 'ring.vnodes', kind: 'string', default: String(DEFAULT_VNODES), help: 'Virtual nodes per Pushgateway.' },
  {
    flag: 'hash.key',
    kind: 'string',
    default: 'grouping-key',
    help: 'What is hashed: grouping-key (canonical) or path (the old Go director\'s placement).',
  },
  { flag: 'mode', kind: 'string', default: 'redirect', help: 'redirect (307), proxy, or auto (307 for Go and curl).' },
  { flag: 'proxy.timeout', kind: 'string', default: '10s', help: 'How long to wait for a node\'s response headers, and for a client to take its answer.' },
  { flag: 'proxy.max-connections', kind: 'string', default: '64', help: 'Most connections to one node; pushes beyond wait for one.' },
  { flag: 'proxy.max-body', kind: 'string', default: '0', help: 'Largest proxied push body (e.g. 16MiB); 0: no limit.' },
  { flag: 'consul.address', kind: 'string', help: 'Consul HTTP API host:port; turns Consul discovery on.' },
  { flag: 'consul.scheme', kind: 'string', default: 'http', help: 'Scheme to reach Consul: http or https.' },
  { flag: 'consul.service', kind: 'string', default: 'pushgateway', help: 'Consul service name of the Pushgateways.' },
  { flag: 'consul.tag', kind: 'string', help: 'Only Pushgateways with this tag.' },
  { flag: 'consul.datacenter', kind: 'string', help: 'Consul datacenter to query.' },
  { flag: 'consul.token-file', kind: 'string', help: 'File holding the Consul ACL token (else CONSUL_HTTP_TOKEN).' },
  { flag: 'consul.wait', kind: 'string', default: '30s', help: 'Blocking query wait time.' },
  {
    flag: 'consul.node-scheme',
    kind: 'string',
    default: 'http',
    help: 'Scheme of Pushgateways found in Consul (a `url` service meta wins).',
  },
  {
    flag: 'consul.node-path-prefix',
    kind: 'string',
    default: '',
    help: 'Route prefix of Pushgateways found in Consul.',
  },
  {
    flag: 'consul.register',
    kind: 'list',
    help: 'A Pushgateway URL to register in Consul; re-asserted periodically.',
  },
  { flag: 'consul.register-interval', kind: 'string', default: '30s', help: 'How often registrations are re-asserted.' },
  { flag: 'consul.deregister-on-exit', kind: 'boolean', help: 'Deregister the registered Pushgateways on shutdown.' },
  {
    flag: 'reconcile.interval',
    kind: 'string',
    help: 'How often misplaced groups are cleaned up (1m with --hash.key=grouping-key); 0 turns it off.',
  },
  { flag: 'reconcile.migrate', kind: 'boolean', help: 'Copy a misplaced group to its owner when the owner has no newer copy.' },
  { flag: 'reconcile.drain', kind: 'list', help: 'A Pushgateway leaving the ring: move all its groups to their owners.' },
  { flag: 'reconcile.dry-run', kind: 'boolean', help: 'Log what reconciliation would do; change nothing.' },
  { flag: 'group.ttl', kind: 'string', help: 'Delete groups whose last push is older than this (off by default).' },
  { flag: 'log.level', kind: 'string', default: 'info', help: 'trace, debug, info, warn, error, fatal or silent.' },
  { flag: 'help', kind: 'boolean', help: 'Show this help and exit.' },
  { flag: 'version', kind: 'boolean', help: 'Show the version and exit.' },
];

type RawValue = string | readonly string[] | boolean | undefined;
type RawOptions = Record<string, RawValue>;

/** parseFlags reads argv (without node and script) into raw option values and positional arguments. */
export function parseFlags(argv: readonly string[]): { values: RawOptions; positionals: readonly string[] } {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = {};
  for (const option of OPTIONS) {
    options[option.flag] = option.kind === 'list' ? { type: 'string', multiple: true } : { type: option.kind };
  }
  try {
    const { values, positionals } = parseArgs({ args: [...argv], options, allowPositionals: true, strict: true });
    return { values: values as RawOptions, positionals };
  } catch (error) {
    throw new ConfigError((error as Error).message.replace(/\. To specify a positional argument.*$/s, ''));
  }
}

function readYamlFile(path: string): RawOptions {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read config file ${JSON.stringify(path)}: ${(error as NodeJS.ErrnoException).code}`);
  }
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (error) {
    throw new ConfigError(`config file ${JSON.stringify(path)}: ${(error as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`config file ${JSON.stringify(path)}: not a mapping`);

  const values: RawOptions = {};
  const known = new Set<string>();
  for (const option of OPTIONS) {
    if (option.flag === 'config.file' || option.flag === 'help' || option.flag === 'version') continue;
    const keys = option.yaml ?? option.flag.split('.').map((part) => part.replace(/-/g, '_'));
    known.add(keys.join('.'));
    let value: unknown = doc;
    for (const key of keys) value = value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined;
    if (value === undefined || value === null) continue;
    const where = `config file ${JSON.stringify(path)}: ${keys.join('.')}`;
    if (option.kind === 'list') {
      if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) {
        throw new ConfigError(`${where} must be a list of strings`);
      }
      values[option.flag] = value;
    } else if (option.kind === 'boolean') {
      if (typeof value !== 'boolean') throw new ConfigError(`${where} must be true or false`);
      values[option.flag] = value;
    } else {
      if (typeof value !== 'string' && typeof value !== 'number') throw new ConfigError(`${where} must be a string`);
      values[option.flag] = String(value);
    }
  }
  // Unknown keys are errors, as in Prometheus' own strict YAML parsing: a typo must not be silently ignored.
  const walk = (node: unknown, prefix: string[]): void => {
    if (node === null || typeof node !== 'object' || Array.isArray(node)) return;
    for (const [key, child] of Object.entries(node as Record<string, unknown>)) {
      const keyPath = [...prefix, key].join('.');
      if (known.has(keyPath)) continue;
      if ([...known].some((k) => k.startsWith(`${keyPath}.`))) walk(child, [...prefix, key]);
      else throw new ConfigError(`config file ${JSON.stringify(path)}: unknown key ${JSON.stringify(keyPath)}`);
    }
  };
  walk(doc, []);
  return values;
}

const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** parseDuration reads a Prometheus-style duration (`500ms`, `10s`, `1m30s`, `0`) into milliseconds. */
export function parseDuration(text: string): number | undefined {
  if (text === '0') return 0;
  const re = /(\d+)(ms|s|m|h)/y;
  let total = 0;
  let at = 0;
  while (at < text.length) {
    re.lastIndex = at;
    const match = re.exec(text);
    if (!match) return undefined;
    total += Number(match[1]) * (DURATION_UNITS[match[2] as string] as number);
    at = re.lastIndex;
  }
  return text.length > 0 ? total : undefined;
}

const SIZE_UNITS: Readonly<Record<string, number>> = { '': 1, B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, KB: 1e3, MB: 1e6, GB: 1e9 };

/** parseSize reads a byte size (`1048576`, `16MiB`, `10MB`). */
export function parseSize(text: string): number | undefined {
  const match = /^(\d+)\s*([KMG]i?B|B)?$/.exec(text.trim());
  if (!match) return undefined;
  const unit = SIZE_UNITS[match[2] ?? ''];
  return unit === undefined ? undefined : Number(match[1]) * unit;
}

/** parseListenAddress reads `host:port`, `:port` or `[v6]:port`. */
export function parseListenAddress(text: string): { host: string | undefined; port: number } | undefined {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port > 65535) return undefined;
  const host = match[1] ?? match[2];
  return { host: host === '' ? undefined : host, port };
}

function pick<T extends string>(flag: string, value: string, allowed: readonly T[]): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new ConfigError(`--${flag} must be one of ${allowed.join(', ')}; got ${JSON.stringify(value)}`);
}

function requireDuration(flag: string, value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined) throw new ConfigError(`--${flag}: invalid duration ${JSON.stringify(value)} (use e.g. 500ms, 10s, 1m)`);
  return ms;
}

function parseNodes(flag: string, urls: readonly string[]): Node[] {
  return urls.map((url) => {
    const result = parseNodeUrl(url);
    if (!result.ok) throw new ConfigError(`--${flag}: ${result.message}`);
    return result.node;
  });
}

/** Environment is the part of process.env the configuration reads. */
export type Environment = Readonly<Record<string, string | undefined>>;

/**
 * parseConfig builds the configuration from flags, the environment and the YAML file the flags name. Throws
 * ConfigError with a message fit for stderr.
 */
export function parseConfig(flags: RawOptions, env: Environment = {}): Config {
  const file = typeof flags['config.file'] === 'string' ? readYamlFile(flags['config.file']) : {};
  const get = (flag: string): RawValue => flags[flag] ?? file[flag] ?? OPTIONS.find((o) => o.flag === flag)?.default;
  const str = (flag: string): string | undefined => {
    const value = get(flag);
    return typeof value === 'string' ? value : undefined;
  };
  const list = (flag: string): readonly string[] => {
    const value = get(flag);
    return Array.isArray(value) ? (value as readonly string[]) : [];
  };

  const listenText = str('web.listen-address') ?? ':9292';
  const listen = parseListenAddress(listenText);
  if (!listen) throw new ConfigError(`--web.listen-address: invalid address ${JSON.stringify(listenText)} (use host:port or :port)`);

  const vnodesText = str('ring.vnodes') ?? '';
  const vnodes = Number(vnodesText);
  if (!/^\d+$/.test(vnodesText) || vnodes < 1 || vnodes > 100_000) {
    throw new ConfigError(`--ring.vnodes must be an integer from 1 to 100000; got ${JSON.stringify(vnodesText)}`);
  }

  const maxBodyText = str('proxy.max-body') ?? '0';
  const proxyMaxBodyBytes = parseSize(maxBodyText);
  if (proxyMaxBodyBytes === undefined) throw new ConfigError(`--proxy.max-body: invalid size ${JSON.stringify(maxBodyText)}`);

  const consul = parseConsulConfig(str, list, get, env);
  const nodes = parseNodes('node', list('node'));
  const defaultNode = nodes.length === 0 && consul === undefined;
  if (consul !== undefined && nodes.length > 0) {
    throw new ConfigError('--node and --consul.address exclude each other: the ring follows either static nodes or Consul');
  }

  const hashKey = pick('hash.key', str('hash.key') ?? '', HASH_KEY_MODES);
  const reconcile = parseReconcileConfig(str, list, get, hashKey);
  const proxyTimeoutMs = requireDuration('proxy.timeout', str('proxy.timeout') ?? '10s');
  if (proxyTimeoutMs <= 0) throw new ConfigError('--proxy.timeout must be greater than 0');
  const maxConnectionsText = str('proxy.max-connections') ?? '64';
  const proxyMaxConnections = Number(maxConnectionsText);
  if (!/^\d+$/.test(maxConnectionsText) || proxyMaxConnections < 1 || proxyMaxConnections > 10_000) {
    throw new ConfigError(`--proxy.max-connections must be an integer from 1 to 10000; got ${JSON.stringify(maxConnectionsText)}`);
  }
  return Object.freeze({
    listen,
    nodes: defaultNode ? parseNodes('node', ['http://127.0.0.1:9091']) : nodes,
    defaultNode,
    vnodes,
    hashKey,
    logLevel: pick('log.level', str('log.level') ?? '', LOG_LEVELS),
    mode: pick('mode', str('mode') ?? '', PUSH_MODES),
    proxyTimeoutMs,
    proxyMaxBodyBytes,
    proxyMaxConnections,
    consul,
    reconcile,
  });
}

function parseReconcileConfig(
  str: (flag: string) => string | undefined,
  list: (flag: string) => readonly string[],
  get: (flag: string) => RawValue,
  hashKey: HashKeyMode,
): ReconcileConfig {
  const intervalText = str('reconcile.interval');
  // A group's owner is only well defined for the canonical key: under --hash.key=path it depends on how each push
  // was spelled, so reconciliation would move groups the old placement put on purpose.
  if (hashKey === 'path') {
    const asked = (intervalText !== undefined && intervalText !== '0') || list('reconcile.drain').length > 0 || get('reconcile.migrate') === true;
    if (asked) throw new ConfigError('reconciliation needs --hash.key=grouping-key: under --hash.key=path a group has no single owner');
  }
  const intervalMs = requireDuration('reconcile.interval', intervalText ?? (hashKey === 'path' ? '0' : '1m'));
  const ttlText = str('group.ttl');
  const ttlMs = ttlText === undefined || ttlText === '0' ? undefined : requireDuration('group.ttl', ttlText);
  if (ttlMs !== undefined && ttlMs < 1000) throw new ConfigError('--group.ttl must be at least 1s');
  return Object.freeze({
    intervalMs,
    migrate: get('reconcile.migrate') === true,
    drain: parseNodes('reconcile.drain', list('reconcile.drain')),
    dryRun: get('reconcile.dry-run') === true,
    ttlMs,
  });
}

function parseConsulConfig(
  str: (flag: string) => string | undefined,
  list: (flag: string) => readonly string[],
  get: (flag: string) => RawValue,
  env: Environment,
): ConsulConfig | undefined {
  const address = str('consul.address');
  if (address === undefined) {
    if (list('consul.register').length > 0) throw new ConfigError('--consul.register needs --consul.address');
    return undefined;
  }
  if (!/^[^\s/]+:\d{1,5}$/.test(address)) {
    throw new ConfigError(`--consul.address: expected host:port, got ${JSON.stringify(address)}`);
  }
  const tokenFile = str('consul.token-file');
  let token: string | undefined;
  let tokenSource = 'none';
  if (tokenFile !== undefined) {
    try {
      token = readFileSync(tokenFile, 'utf8').trim();
    } catch (error) {
      throw new ConfigError(`--consul.token-file: cannot read ${JSON.stringify(tokenFile)}: ${(error as NodeJS.ErrnoException).code}`);
    }
    tokenSource = `--consul.token-file=${tokenFile}`;
  } else if (env['CONSUL_HTTP_TOKEN'] !== undefined && env['CONSUL_HTTP_TOKEN'] !== '') {
    token = env['CONSUL_HTTP_TOKEN'];
    tokenSource = 'CONSUL_HTTP_TOKEN';
  }
  const waitMs = requireDuration('consul.wait', str('consul.wait') ?? '30s');
  if (waitMs < 1000 || waitMs > 600_000) throw new ConfigError('--consul.wait must be between 1s and 10m (Consul\'s maximum)');
  const prefix = (str('consul.node-path-prefix') ?? '').replace(/\/+$/, '');
  if (prefix !== '' && !prefix.startsWith('/')) throw new ConfigError('--consul.node-path-prefix must start with /');
  return Object.freeze({
    address,
    scheme: pick('consul.scheme', str('consul.scheme') ?? '', ['http', 'https'] as const),
    service: str('consul.service') ?? 'pushgateway',
    tag: str('consul.tag'),
    datacenter: str('consul.datacenter'),
    token,
    tokenSource,
    waitMs,
    nodeScheme: pick('consul.node-scheme', str('consul.node-scheme') ?? '', ['http', 'https'] as const),
    nodePathPrefix: prefix,
    register: parseNodes('consul.register', list('consul.register')),
    registerIntervalMs: requireDuration('consul.register-interval', str('consul.register-interval') ?? '30s'),
    deregisterOnExit: get('consul.deregister-on-exit') === true,
  });
}

/** helpText renders `--help`. */
export function helpText(): string {
  const lines = [
    'usage: pgw-director [flags]',
    '       pgw-director lookup [flags] PATH...',
    '       pgw-director ring [flags]',
    '       pgw-director reconcile [flags]',
    '',
    'flags:',
  ];
  for (const option of OPTIONS) {
    const value = option.kind === 'boolean' ? '' : '=VALUE';
    const def = option.default !== undefined ? ` (default ${JSON.stringify(option.default)})` : '';
    lines.push(`  --${option.flag}${value}`, `      ${option.help}${def}${option.kind === 'list' ? ' Repeatable.' : ''}`);
  }
  return `${lines.join('\n')}\n`;
}
