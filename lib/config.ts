/**
 * The director's configuration: Prometheus-style flags (`--flag=value` or `--flag value`) and a YAML file with the
 * same settings, flags winning. Everything is validated once, at start-up; a contradiction is a ConfigError.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';

import type YAMLModule from 'yaml';

import { HASH_KEY_MODES, type HashKeyMode } from './core/key-hash';
import { type Node, parseNodeUrl } from './core/node';
import { DEFAULT_VNODES } from './core/ring';
import type { HealthConfig } from './health';

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
  /** The node credentials, sent by the HTTP check registered for each Pushgateway (a check header). Never log it. */
  nodeAuthorization: string | undefined;
  /** Where the director keeps its own state in Consul's KV store (tombstones), ending in `/`. */
  kvPrefix: string;
}>;

/** DnsRecordType is what DNS discovery asks for: SRV records (targets and ports), or addresses with a fixed port. */
export type DnsRecordType = 'SRV' | 'A' | 'AAAA';
const DNS_RECORD_TYPES: readonly DnsRecordType[] = ['SRV', 'A', 'AAAA'];

/** DnsConfig configures DNS discovery. */
export type DnsConfig = Readonly<{
  /** The names resolved; the ring is the union of their answers. */
  names: readonly string[];
  type: DnsRecordType;
  /** The Pushgateways' port for A and AAAA records (SRV records carry their own). */
  port: number;
  refreshIntervalMs: number;
  /** The DNS server (`ip:port`, `[ipv6]:port`, or an IP on port 53), or undefined for the system's servers. */
  server: string | undefined;
  nodeScheme: 'http' | 'https';
  nodePathPrefix: string;
}>;

/** UiConfig configures the fleet page. */
export type UiConfig = Readonly<{
  /** Serve the fleet page at `/` and `/groups` (`--web.enable-ui`). */
  enabled: boolean;
  /** A group whose last push is older than this is marked stale (`--ui.stale-after`). */
  staleAfterMs: number;
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
  /** Most pushes in flight on one node connection (HTTP/1.1 pipelining). */
  proxyPipelining: number;
  consul: ConsulConfig | undefined;
  dns: DnsConfig | undefined;
  reconcile: ReconcileConfig;
  /** The director's own health checks of every candidate node. */
  health: HealthConfig;
  ui: UiConfig;
  /**
   * The Authorization header value the director sends on its own requests to nodes (listing, deleting, health
   * checks, the Consul check it registers), or undefined. Never log it.
   */
  nodeAuthorization: string | undefined;
  /** Things the operator should know about how the configuration was read (logged at start-up). */
  notices: readonly string[];
}>;

/** ReconcileConfig configures the reconciler and the group TTL. */
export type ReconcileConfig = Readonly<{
  /** Milliseconds between passes; 0: no periodic passes. */
  intervalMs: number;
  migrate: boolean;
  drain: readonly Node[];
  dryRun: boolean;
  ttlMs: number | undefined;
  /** How long a group deleted through the director is remembered; 0: not at all. */
  tombstoneTtlMs: number;
  /** The largest old generation of a pass's child process, in bytes; 0: Node's default. */
  maxHeapBytes: number;
}>;

type OptionSpec = Readonly<{
  flag: string;
  kind: 'string' | 'list' | 'boolean';
  help: string;
  /** The one place a default is stated; parseConfig reads it from here. */
  default?: string;
  /** A one-letter alias (`-h`). */
  short?: string;
  /** The YAML key path, when it is not the flag name split at dots with dashes as underscores. */
  yaml?: readonly string[];
}>;

/** OPTIONS lists every flag; `--help` prints them in this order. */
export const OPTIONS: readonly OptionSpec[] = [
  { flag: 'config.file', kind: 'string', help: 'YAML file with the same settings as the flags (flags win).' },
  { flag: 'web.listen-address', kind: 'string', default: ':9292', help: 'Address to listen on for pushes and the API.' },
  { flag: 'node', kind: 'list', yaml: ['nodes'], help: 'A Pushgateway base URL: a static node.' },
  {
    flag: 'node.health-interval',
    kind: 'string',
    default: '5s',
    help: 'How often each Pushgateway is checked (GET /-/healthy); 0 turns active and passive checks off.',
  },
  { flag: 'node.health-timeout', kind: 'string', default: '2s', help: 'How long one health check may take; at most the interval (the default shrinks to fit).' },
  { flag: 'node.health-fall', kind: 'string', default: '3', help: 'Failed checks in a row that take a Pushgateway out of the ring.' },
  { flag: 'node.health-rise', kind: 'string', default: '2', help: 'Passed checks in a row that bring it back.' },
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
  {
    flag: 'proxy.pipelining',
    kind: 'string',
    default: '1',
    help: 'Most pushes in flight on one node connection, written one after another (HTTP/1.1 pipelining); above 1 trusts every node to answer each push once, and soon.',
  },
  { flag: 'proxy.max-body', kind: 'string', default: '0', help: 'Largest proxied push body (e.g. 16MiB); 0: no limit.' },
  {
    flag: 'node.basic-auth.username',
    kind: 'string',
    yaml: ['node_auth', 'basic_auth', 'username'],
    help: 'User name for the director\'s own requests to nodes (with --node.basic-auth.password-file).',
  },
  {
    flag: 'node.basic-auth.password-file',
    kind: 'string',
    yaml: ['node_auth', 'basic_auth', 'password_file'],
    help: 'File holding the password for --node.basic-auth.username.',
  },
  {
    flag: 'node.authorization.credentials-file',
    kind: 'string',
    yaml: ['node_auth', 'authorization', 'credentials_file'],
    help: 'File holding the credentials (e.g. a bearer token) for the director\'s own requests to nodes.',
  },
  {
    flag: 'node.authorization.type',
    kind: 'string',
    default: 'Bearer',
    yaml: ['node_auth', 'authorization', 'type'],
    help: 'Authorization scheme sent with --node.authorization.credentials-file.',
  },
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
    flag: 'consul.kv-prefix',
    kind: 'string',
    default: 'pgw-director/',
    help: 'Consul KV prefix for state shared by replicas (tombstones); the token needs key:write on it.',
  },
  {
    flag: 'dns.name',
    kind: 'list',
    yaml: ['dns', 'names'],
    help: 'A DNS name listing the Pushgateways (e.g. _http._tcp.pgw.monitoring.svc.cluster.local); turns DNS discovery on.',
  },
  { flag: 'dns.type', kind: 'string', default: 'SRV', help: 'Record type: SRV (targets and ports), A or AAAA (with --dns.port).' },
  { flag: 'dns.port', kind: 'string', default: '9091', help: 'The Pushgateways\' port for A and AAAA records.' },
  { flag: 'dns.refresh-interval', kind: 'string', default: '30s', help: 'How often the names are resolved again.' },
  { flag: 'dns.server', kind: 'string', help: 'DNS server ip:port to ask instead of the system\'s (also for connections to nodes).' },
  { flag: 'dns.node-scheme', kind: 'string', default: 'http', help: 'Scheme of Pushgateways found in DNS.' },
  { flag: 'dns.node-path-prefix', kind: 'string', default: '', help: 'Route prefix of Pushgateways found in DNS.' },
  {
    flag: 'reconcile.interval',
    kind: 'string',
    help: 'How often misplaced groups are cleaned up (1m with --hash.key=grouping-key); 0 turns it off.',
  },
  { flag: 'reconcile.migrate', kind: 'boolean', help: 'Copy a misplaced group to its owner when the owner has no newer copy.' },
  { flag: 'reconcile.drain', kind: 'list', help: 'A Pushgateway leaving the ring: move all its groups to their owners.' },
  { flag: 'reconcile.dry-run', kind: 'boolean', help: 'Log what reconciliation would do; change nothing.' },
  {
    flag: 'reconcile.max-heap',
    kind: 'string',
    default: '256MiB',
    help: "Largest heap of a pass's child process (old generation); a pass that needs more fails and says so. 0: Node's default.",
  },
  { flag: 'group.ttl', kind: 'string', help: 'Delete groups whose last push is older than this (off by default).' },
  {
    flag: 'group.tombstone-ttl',
    kind: 'string',
    default: '24h',
    help: 'How long a group deleted through the director is remembered, so no old copy brings it back; 0: off.',
  },
  { flag: 'web.enable-ui', kind: 'string', default: 'true', help: 'Serve the fleet page at / and /groups: true or false.' },
  { flag: 'ui.stale-after', kind: 'string', default: '1h', help: 'The fleet page marks groups whose last push is older than this.' },
  { flag: 'log.level', kind: 'string', default: 'info', help: 'trace, debug, info, warn, error, fatal or silent.' },
  { flag: 'help', kind: 'boolean', short: 'h', help: 'Show this help and exit.' },
  { flag: 'version', kind: 'boolean', help: 'Show the version and exit.' },
];

type RawValue = string | readonly string[] | boolean | undefined;
type RawOptions = Record<string, RawValue>;

/** parseFlags reads argv (without node and script) into raw option values and positional arguments. */
export function parseFlags(argv: readonly string[]): { values: RawOptions; positionals: readonly string[] } {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {};
  for (const option of OPTIONS) {
    options[option.flag] = {
      ...(option.kind === 'list' ? { type: 'string', multiple: true } : { type: option.kind }),
      ...(option.short === undefined ? {} : { short: option.short }),
    };
  }
  try {
    const { values, positionals } = parseArgs({ args: [...argv], options, allowPositionals: true, strict: true });
    return { values: values as RawOptions, positionals };
  } catch (error) {
    const message = (error as Error).message.replace(/\. To specify a positional argument.*$/s, '');
    const unknown = /^Unknown option '(-{1,2})([^'=]+)'/.exec(message);
    if (unknown) {
      const nearest = nearestFlag(unknown[2] as string);
      const hint = nearest === undefined ? '' : ` (did you mean --${nearest}?)`;
      throw new ConfigError(`unknown flag ${unknown[1]}${unknown[2]}${hint}`);
    }
    throw new ConfigError(message);
  }
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current.push(Math.min((previous[j] as number) + 1, (current[j - 1] as number) + 1, (previous[j - 1] as number) + cost));
    }
    previous = current;
  }
  return previous[b.length] as number;
}

/** nearestFlag is the flag closest to a mistyped one, when one is close enough to be what was meant. */
export function nearestFlag(typed: string): string | undefined {
  let best: { flag: string; distance: number } | undefined;
  for (const { flag } of OPTIONS) {
    const distance = editDistance(typed, flag);
    if (best === undefined || distance < best.distance) best = { flag, distance };
  }
  return best !== undefined && best.distance <= Math.max(2, Math.floor(typed.length / 3)) ? best.flag : undefined;
}

const where = (path: string, keys: readonly string[]): string => `config file ${JSON.stringify(path)}: ${keys.join('.')}`;

/** yamlKeys is the key path of an option in the YAML file. */
const yamlKeys = (option: OptionSpec): readonly string[] => option.yaml ?? option.flag.split('.').map((part) => part.replace(/-/g, '_'));

function readYamlFile(path: string): { values: RawOptions; notices: string[] } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read config file ${JSON.stringify(path)}: ${(error as NodeJS.ErrnoException).code}`);
  }
  let doc: unknown;
  try {
    // Required on use: without a config file the director starts without loading the YAML parser.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const YAML = require('yaml') as typeof YAMLModule;
    doc = YAML.parse(text);
  } catch (error) {
    throw new ConfigError(`config file ${JSON.stringify(path)}: ${(error as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return { values: {}, notices: [] };
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`config file ${JSON.stringify(path)}: not a mapping`);
  const top = doc as Record<string, unknown>;
  const foreign = Object.keys(top).filter((key) => DYNAMIC_SHARDING_KEYS.includes(key));
  if (foreign.length > 0) {
    const own = Object.keys(top).filter((key) => !DYNAMIC_SHARDING_KEYS.includes(key));
    if (own.length > 0) {
      throw new ConfigError(
        `config file ${JSON.stringify(path)}: mixes dynamic-sharding's keys (${foreign.join(', ')}) with pgw-director's (${own.join(', ')}); use one format`,
      );
    }
    return readDynamicShardingFile(path, top);
  }

  const values: RawOptions = {};
  // Key paths are compared as arrays joined with a byte no YAML key here contains, so a flat key that holds a dot
  // (`ring.vnodes: 1`) is never mistaken for the nested one.
  const SEP = '\0';
  const known = new Set<string>();
  for (const option of OPTIONS) {
    if (option.flag === 'config.file' || option.flag === 'help' || option.flag === 'version') continue;
    const keys = yamlKeys(option);
    known.add(keys.join(SEP));
    let value: unknown = doc;
    for (const key of keys) value = value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>)[key] : undefined;
    if (value === undefined || value === null) continue;
    if (option.kind === 'list') {
      if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) {
        throw new ConfigError(`${where(path, keys)} must be a list of strings`);
      }
      values[option.flag] = value;
    } else if (option.kind === 'boolean') {
      if (typeof value !== 'boolean') throw new ConfigError(`${where(path, keys)} must be true or false`);
      values[option.flag] = value;
    } else {
      // A YAML boolean is accepted where a flag takes `true`/`false` as text (web.enable_ui).
      if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') throw new ConfigError(`${where(path, keys)} must be a string`);
      values[option.flag] = String(value);
    }
  }
  // Unknown keys are errors, as in Prometheus' own strict YAML parsing: a typo must not be silently ignored.
  const walk = (node: unknown, prefix: string[]): void => {
    if (node === null || typeof node !== 'object' || Array.isArray(node)) return;
    for (const [key, child] of Object.entries(node as Record<string, unknown>)) {
      const keys = [...prefix, key];
      const keyPath = keys.join(SEP);
      if (known.has(keyPath)) continue;
      if ([...known].some((k) => k.startsWith(`${keyPath}${SEP}`))) {
        walk(child, keys);
        continue;
      }
      if (prefix.length === 2 && prefix[0] === 'node_auth' && (key === 'password' || key === 'credentials')) {
        throw new ConfigError(
          `config file ${JSON.stringify(path)}: ${keys.join('.')}: put it in a file and name the file with ${key}_file, so it stays out of the configuration`,
        );
      }
            if (key.includes('.')) {
        const nested = [...prefix, ...key.split('.')];
        if (known.has(nested.join(SEP))) {
          throw new ConfigError(
            `config file ${JSON.stringify(path)}: flat key ${JSON.stringify(keys.join('.'))}: nest it (${nested.join(': {')}: ...${'}'.repeat(nested.length - 1)})`,
          );
        }
      }
      throw new ConfigError(`config file ${JSON.stringify(path)}: unknown key ${JSON.stringify(keys.join('.'))}`);
    }
  };
  walk(doc, []);
  return { values, notices: [] };
}

/** The top-level keys of dynamic-sharding's config file (github.com/ning1875/dynamic-sharding, pkg/config). */
const DYNAMIC_SHARDING_KEYS: readonly string[] = ['consul_server', 'http_listen_addr', 'pushgateway'];

/**
 * readDynamicShardingFile reads the Go director's config file as it is: its Consul agent, service name and listen
 * address, and its Pushgateways (`servers` x `port`), which it registered in Consul itself, as the director does with
 * --consul.register. It also keeps its placement (--hash.key=path) unless a flag says otherwise.
 */
function readDynamicShardingFile(path: string, doc: Record<string, unknown>): { values: RawOptions; notices: string[] } {
  const mapping = (key: string): Record<string, unknown> => {
    const value = doc[key];
    if (value === undefined || value === null) return {};
    if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(`${where(path, [key])} must be a mapping`);
    return value as Record<string, unknown>;
  };
  const scalar = (keys: readonly string[], value: unknown): string | undefined => {
    if (value === undefined || value === null || value === '') return undefined;
    if (typeof value !== 'string' && typeof value !== 'number') throw new ConfigError(`${where(path, keys)} must be a string`);
    return String(value);
  };
  const allow = (section: string, value: Record<string, unknown>, keys: readonly string[]): void => {
    for (const key of Object.keys(value)) {
      if (!keys.includes(key)) throw new ConfigError(`config file ${JSON.stringify(path)}: unknown key ${JSON.stringify(`${section}.${key}`)}`);
    }
  };
  const consul = mapping('consul_server');
  allow('consul_server', consul, ['addr', 'username', 'password', 'register_service_name']);
  for (const key of ['username', 'password']) {
    if (scalar(['consul_server', key], consul[key]) !== undefined) {
      throw new ConfigError(
        `${where(path, ['consul_server', key])}: dynamic-sharding never used it and Consul has no user names; ` +
          'pass an ACL token with CONSUL_HTTP_TOKEN or --consul.token-file instead',
      );
    }
  }
  const pushgateway = mapping('pushgateway');
  allow('pushgateway', pushgateway, ['port', 'servers']);
  const servers = pushgateway['servers'] ?? [];
  if (!Array.isArray(servers) || !servers.every((server) => typeof server === 'string')) {
    throw new ConfigError(`${where(path, ['pushgateway', 'servers'])} must be a list of host names or addresses`);
  }
  const port = scalar(['pushgateway', 'port'], pushgateway['port']);
  if (servers.length > 0 && (port === undefined || !/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535)) {
    throw new ConfigError(`${where(path, ['pushgateway', 'port'])} must be a port number`);
  }
  // A server is a host: with a scheme, path or port in it the URL built below would blame a --node the user never wrote.
  const notHost = servers.find((server) => !/^(?:\[[0-9A-Fa-f:.]+\]|[^\s/?#@[\]]+)$/.test(server) || /^[^:]+:\d*$/.test(server));
  if (notHost !== undefined) {
    throw new ConfigError(`${where(path, ['pushgateway', 'servers'])}: ${JSON.stringify(notHost)} is not a host name or address (the port is pushgateway.port)`);
  }
  const urls = servers.map((server) => `http://${server.includes(':') && !server.startsWith('[') ? `[${server}]` : server}:${port}`);

  const values: RawOptions = { 'hash.key': 'path' };
  const address = scalar(['consul_server', 'addr'], consul['addr']);
  const service = scalar(['consul_server', 'register_service_name'], consul['register_service_name']);
  const listen = scalar(['http_listen_addr'], doc['http_listen_addr']);
  if (listen !== undefined) values['web.listen-address'] = listen;
  if (address !== undefined) {
    values['consul.address'] = address;
    if (service !== undefined) values['consul.service'] = service;
    if (urls.length > 0) values['consul.register'] = urls;
  } else {
    if (service !== undefined) throw new ConfigError(`${where(path, ['consul_server', 'register_service_name'])} needs consul_server.addr`);
    if (urls.length > 0) values['node'] = urls;
  }
  return {
    values,
    notices: [
      `config file ${JSON.stringify(path)} is dynamic-sharding's: read as --hash.key=path (its placement, unless a flag says otherwise)` +
        (address !== undefined && urls.length > 0 ? ' and --consul.register for each of pushgateway.servers' : ''),
    ],
  };
}

// Prometheus' units (common/model/time.go): a day is 24h, a week 7d, a year 365d.
const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
  y: 365 * 86_400_000,
};

/** parseDuration reads a Prometheus-style duration (`500ms`, `10s`, `1m30s`, `1d`, `2w`, `0`) into milliseconds. */
export function parseDuration(text: string): number | undefined {
  if (text === '0') return 0;
  const re = /(\d+)(ms|s|m|h|d|w|y)/y;
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
  if (unit === undefined) return undefined;
  // Past 2^53 bytes a size is no longer an exact integer: a byte count compared against it would be meaningless.
  const bytes = Number(match[1]) * unit;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
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
  if (ms === undefined) throw new ConfigError(`--${flag}: invalid duration ${JSON.stringify(value)} (use e.g. 500ms, 10s, 1m, 1d)`);
  return ms;
}

/** Node's timers hold at most 2^31 - 1 ms (24.8 days): a longer one fires after 1 ms, turning a long interval into a flood. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * requireTimerDuration reads a duration that arms a timer: 0 (where the caller allows it) or from `minMs` to 24d.
 * Below the minimum a typo turns a loop into a flood; above 24d Node's timer fires at once, which does the same.
 */
function requireTimerDuration(flag: string, value: string, minMs: number): number {
  const ms = requireDuration(flag, value);
  if (ms > MAX_TIMER_MS) throw new ConfigError(`--${flag} must be at most 24d; got ${JSON.stringify(value)}`);
  if (ms > 0 && ms < minMs) throw new ConfigError(`--${flag} must be at least ${minMs}ms; got ${JSON.stringify(value)}`);
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

/** hasControlCharacter: a header value cannot hold one (RFC 9110 field-value), nor a line break. */
const hasControlCharacter = (text: string): boolean => [...text].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);

/** Read is how the parsers below see the merged flags and file: flags win over the file, the file over defaults. */
type Read = Readonly<{
  /** str is a string option's value; for an option with a default, never undefined. */
  str(flag: string): string | undefined;
  /** value is a string option that has a default in OPTIONS. */
  value(flag: string): string;
  list(flag: string): readonly string[];
  bool(flag: string): boolean;
  /** given says whether the operator set the option (by flag or file), defaults aside. */
  given(flag: string): boolean;
  /** fromFile says whether the option's value comes from the config file (no flag overrides it). */
  fromFile(flag: string): boolean;
}>;

/** IMPLIED_PATH tells a dynamic-sharding user where --hash.key=path came from. */
const IMPLIED_PATH = ' (a dynamic-sharding config file implies --hash.key=path; pass --hash.key=grouping-key to change placement)';

/**
 * parseConfig builds the configuration from flags, the environment and the YAML file the flags name. Throws
 * ConfigError with a message fit for stderr.
 */
export function parseConfig(flags: RawOptions, env: Environment = {}): Config {
  const file = typeof flags['config.file'] === 'string' ? readYamlFile(flags['config.file']) : { values: {}, notices: [] };
  const given = (flag: string): RawValue => flags[flag] ?? file.values[flag];
  const get = (flag: string): RawValue => given(flag) ?? OPTIONS.find((o) => o.flag === flag)?.default;
  const read: Read = {
    str: (flag) => {
      const value = get(flag);
      return typeof value === 'string' ? value : undefined;
    },
    value: (flag) => {
      const value = get(flag);
      if (typeof value !== 'string') throw new Error(`bug: --${flag} has no default`);
      return value;
    },
    list: (flag) => {
      const value = get(flag);
      return Array.isArray(value) ? (value as readonly string[]) : [];
    },
    bool: (flag) => get(flag) === true,
    given: (flag) => given(flag) !== undefined,
    fromFile: (flag) => flags[flag] === undefined && file.values[flag] !== undefined,
  };

  const listenText = read.value('web.listen-address');
  const listen = parseListenAddress(listenText);
  if (!listen) throw new ConfigError(`--web.listen-address: invalid address ${JSON.stringify(listenText)} (use host:port or :port)`);

  const vnodesText = read.value('ring.vnodes');
  const vnodes = Number(vnodesText);
  if (!/^\d+$/.test(vnodesText) || vnodes < 1 || vnodes > 100_000) {
    throw new ConfigError(`--ring.vnodes must be an integer from 1 to 100000; got ${JSON.stringify(vnodesText)}`);
  }

  const maxBodyText = read.value('proxy.max-body');
  const proxyMaxBodyBytes = parseSize(maxBodyText);
  if (proxyMaxBodyBytes === undefined) throw new ConfigError(`--proxy.max-body: invalid size ${JSON.stringify(maxBodyText)}`);

  const nodeAuthorization = parseNodeAuthorization(read);
  const consul = parseConsulConfig(read, env, nodeAuthorization);
  const dns = parseDnsConfig(read);
  const nodes = parseNodes('node', read.list('node'));
  const defaultNode = nodes.length === 0 && consul === undefined && dns === undefined;
  checkOneDiscovery(nodes.length > 0, consul !== undefined, dns !== undefined);

  const hashKey = pick('hash.key', read.value('hash.key'), HASH_KEY_MODES);
  const reconcile = parseReconcileConfig(read, hashKey);
  for (const node of reconcile.drain) {
    if (nodes.some((n) => n.id === node.id)) {
      throw new ConfigError(
        `--reconcile.drain=${node.url} is also a --node: take it off the node list first, so its groups have other owners to move to`,
      );
    }
  }
  const proxyTimeoutMs = requireTimerDuration('proxy.timeout', read.value('proxy.timeout'), 1);
  if (proxyTimeoutMs <= 0) throw new ConfigError('--proxy.timeout must be greater than 0');
  const maxConnectionsText = read.value('proxy.max-connections');
  const proxyMaxConnections = Number(maxConnectionsText);
  if (!/^\d+$/.test(maxConnectionsText) || proxyMaxConnections < 1 || proxyMaxConnections > 10_000) {
    throw new ConfigError(`--proxy.max-connections must be an integer from 1 to 10000; got ${JSON.stringify(maxConnectionsText)}`);
  }
  const pipeliningText = read.value('proxy.pipelining');
  const proxyPipelining = Number(pipeliningText);
  if (!/^\d+$/.test(pipeliningText) || proxyPipelining < 1 || proxyPipelining > 100) {
    throw new ConfigError(`--proxy.pipelining must be an integer from 1 to 100; got ${JSON.stringify(pipeliningText)}`);
  }
  return Object.freeze({
    listen,
    nodes: defaultNode ? parseNodes('node', ['http://127.0.0.1:9091']) : nodes,
    defaultNode,
    vnodes,
    hashKey,
    logLevel: pick('log.level', read.value('log.level'), LOG_LEVELS),
    mode: pick('mode', read.value('mode'), PUSH_MODES),
    proxyTimeoutMs,
    proxyMaxBodyBytes,
    proxyMaxConnections,
    proxyPipelining,
    consul,
    dns,
    reconcile,
    health: parseHealthConfig(read),
    ui: parseUiConfig(read),
    nodeAuthorization,
    notices: Object.freeze([...file.notices]),
  });
}

function parseCount(flag: string, text: string): number {
  const count = Number(text);
  if (!/^\d+$/.test(text) || count < 1 || count > 100) throw new ConfigError(`--${flag} must be an integer from 1 to 100; got ${JSON.stringify(text)}`);
  return count;
}

function parseHealthConfig(read: Read): HealthConfig {
  const intervalMs = requireTimerDuration('node.health-interval', read.value('node.health-interval'), 1);
  if (intervalMs > 0 && intervalMs < 100) throw new ConfigError('--node.health-interval must be 0 (off) or at least 100ms');
  let timeoutMs = requireTimerDuration('node.health-timeout', read.value('node.health-timeout'), 1);
  // The default timeout shrinks to a shorter interval; a timeout given explicitly must fit in it.
  if (!read.given('node.health-timeout') && intervalMs > 0) timeoutMs = Math.min(timeoutMs, intervalMs);
  if (timeoutMs <= 0) throw new ConfigError('--node.health-timeout must be greater than 0');
  // A check that may outlast the interval would delay the next one: the interval would no longer mean anything.
  if (intervalMs > 0 && timeoutMs > intervalMs) {
    throw new ConfigError('--node.health-timeout must not be longer than --node.health-interval');
  }
  return Object.freeze({
    intervalMs,
    timeoutMs,
    fall: parseCount('node.health-fall', read.value('node.health-fall')),
    rise: parseCount('node.health-rise', read.value('node.health-rise')),
  });
}

function parseUiConfig(read: Read): UiConfig {
  const enabled = pick('web.enable-ui', String(read.value('web.enable-ui')), ['true', 'false'] as const) === 'true';
  const staleAfterMs = requireDuration('ui.stale-after', read.value('ui.stale-after'));
  if (staleAfterMs <= 0) throw new ConfigError('--ui.stale-after must be greater than 0');
  return Object.freeze({ enabled, staleAfterMs });
}

function readSecretFile(flag: string, path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`--${flag}: cannot read ${JSON.stringify(path)}: ${(error as NodeJS.ErrnoException).code}`);
  }
  // Prometheus trims the file's surrounding white space (a trailing newline above all).
  const secret = text.trim();
  if (secret === '') throw new ConfigError(`--${flag}: ${JSON.stringify(path)} is empty`);
  // The secret never appears in a message: say only what is wrong with it.
  if (hasControlCharacter(secret)) throw new ConfigError(`--${flag}: ${JSON.stringify(path)} holds a control character or a line break`);
  return secret;
}

/** parseNodeAuthorization builds the Authorization header of the director's own requests to nodes, Prometheus-style. */
function parseNodeAuthorization(read: Read): string | undefined {
  const username = read.str('node.basic-auth.username');
  const passwordFile = read.str('node.basic-auth.password-file');
  const credentialsFile = read.str('node.authorization.credentials-file');
  const basic = username !== undefined || passwordFile !== undefined;
  if (basic && credentialsFile !== undefined) {
    throw new ConfigError('--node.basic-auth.* and --node.authorization.* exclude each other: a request carries one Authorization header');
  }
  if (basic) {
    if (username === undefined || username === '') throw new ConfigError('--node.basic-auth.password-file needs --node.basic-auth.username');
    if (passwordFile === undefined) throw new ConfigError('--node.basic-auth.username needs --node.basic-auth.password-file');
    // RFC 7617: the user-id cannot contain a colon.
    if (username.includes(':') || hasControlCharacter(username)) throw new ConfigError('--node.basic-auth.username cannot hold a colon or a control character');
    const password = readSecretFile('node.basic-auth.password-file', passwordFile);
    return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
  }
  const type = read.value('node.authorization.type');
  if (credentialsFile === undefined) {
    if (read.given('node.authorization.type')) throw new ConfigError('--node.authorization.type needs --node.authorization.credentials-file');
    return undefined;
  }
  // As Prometheus' authorization block: Basic has its own settings.
  if (type.toLowerCase() === 'basic') throw new ConfigError('--node.authorization.type cannot be Basic: use --node.basic-auth.username and --node.basic-auth.password-file');
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(type)) throw new ConfigError(`--node.authorization.type: invalid scheme ${JSON.stringify(type)}`);
  return `${type} ${readSecretFile('node.authorization.credentials-file', credentialsFile)}`;
}

function parseReconcileConfig(read: Read, hashKey: HashKeyMode): ReconcileConfig {
  const intervalText = read.str('reconcile.interval');
  const ttlText = read.str('group.ttl');
  const hint = read.fromFile('hash.key') ? IMPLIED_PATH : '';
  // A group's owner is only well defined for the canonical key: under --hash.key=path it depends on how each push
  // was spelled, so reconciliation would move groups the old placement put on purpose.
  if (hashKey === 'path') {
    const asked = (intervalText !== undefined && intervalText !== '0') || read.list('reconcile.drain').length > 0 || read.bool('reconcile.migrate');
    if (asked) throw new ConfigError(`reconciliation needs --hash.key=grouping-key: under --hash.key=path a group has no single owner${hint}`);
    if (ttlText !== undefined && ttlText !== '0') {
      throw new ConfigError(`--group.ttl runs in reconciliation passes, which --hash.key=path turns off: use --hash.key=grouping-key${hint}`);
    }
  }
  const intervalMs = requireTimerDuration('reconcile.interval', intervalText ?? (hashKey === 'path' ? '0' : '1m'), 100);
  const ttlMs = ttlText === undefined || ttlText === '0' ? undefined : requireDuration('group.ttl', ttlText);
  if (ttlMs !== undefined && ttlMs < 1000) throw new ConfigError('--group.ttl must be at least 1s');
  const tombstoneTtlMs = requireDuration('group.tombstone-ttl', read.value('group.tombstone-ttl'));
  const maxHeapText = read.value('reconcile.max-heap');
  const maxHeapBytes = parseSize(maxHeapText);
  if (maxHeapBytes === undefined || (maxHeapBytes > 0 && maxHeapBytes < 32 * 2 ** 20)) {
    throw new ConfigError(`--reconcile.max-heap: expected 0 or a size of at least 32MiB, got ${JSON.stringify(maxHeapText)}`);
  }
  return Object.freeze({
    intervalMs,
    migrate: read.bool('reconcile.migrate'),
    drain: parseNodes('reconcile.drain', read.list('reconcile.drain')),
    dryRun: read.bool('reconcile.dry-run'),
    ttlMs,
    tombstoneTtlMs,
    maxHeapBytes,
  });
}

function parseConsulConfig(read: Read, env: Environment, nodeAuthorization: string | undefined): ConsulConfig | undefined {
  const address = read.str('consul.address');
  if (address === undefined) {
    const stray = OPTIONS.find((option) => option.flag.startsWith('consul.') && read.given(option.flag));
    if (stray !== undefined) throw new ConfigError(`--${stray.flag} needs --consul.address`);
    return undefined;
  }
  if (!/^[^\s/]+:\d{1,5}$/.test(address)) {
    throw new ConfigError(`--consul.address: expected host:port, got ${JSON.stringify(address)}`);
  }
  const tokenFile = read.str('consul.token-file');
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
  const waitMs = requireDuration('consul.wait', read.value('consul.wait'));
  if (waitMs < 1000 || waitMs > 600_000) throw new ConfigError('--consul.wait must be between 1s and 10m (Consul\'s maximum)');
  const kvPrefix = read.value('consul.kv-prefix');
  if (kvPrefix === '' || kvPrefix.startsWith('/') || !kvPrefix.endsWith('/')) {
    throw new ConfigError(`--consul.kv-prefix must be a key prefix ending in "/" and not starting with one; got ${JSON.stringify(kvPrefix)}`);
  }
  const prefix = read.value('consul.node-path-prefix').replace(/\/+$/, '');
  if (prefix !== '' && !prefix.startsWith('/')) throw new ConfigError('--consul.node-path-prefix must start with /');
  return Object.freeze({
    address,
    scheme: pick('consul.scheme', read.value('consul.scheme'), ['http', 'https'] as const),
    service: read.value('consul.service'),
    tag: read.str('consul.tag'),
    datacenter: read.str('consul.datacenter'),
    token,
    tokenSource,
    waitMs,
    nodeScheme: pick('consul.node-scheme', read.value('consul.node-scheme'), ['http', 'https'] as const),
    nodePathPrefix: prefix,
    register: parseNodes('consul.register', read.list('consul.register')),
    registerIntervalMs: requireRegisterInterval(read.value('consul.register-interval')),
    deregisterOnExit: read.bool('consul.deregister-on-exit'),
    nodeAuthorization,
    kvPrefix,
  });
}

function requireRegisterInterval(value: string): number {
  const ms = requireTimerDuration('consul.register-interval', value, 100);
  // 0 would re-register back to back, a flood of writes to Consul.
  if (ms === 0) throw new ConfigError('--consul.register-interval must be at least 100ms; got "0"');
  return ms;
}

/** checkOneDiscovery refuses a configuration that names more than one source of ring members. */
function checkOneDiscovery(nodes: boolean, consul: boolean, dns: boolean): void {
  const given = [nodes ? '--node' : '', consul ? '--consul.address' : '', dns ? '--dns.name' : ''].filter((flag) => flag !== '');
  if (given.length > 1) {
    throw new ConfigError(`${given.join(' and ')} exclude each other: the ring follows one source, static nodes, Consul or DNS`);
  }
}

/** parseDnsServer checks `ip`, `ip:port` or `[ipv6]:port`: Node's resolver takes addresses only, not names. */
function parseDnsServer(text: string): string {
  const match = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d{1,5}))?$/.exec(text);
  const host = match?.[1] ?? match?.[2];
  const bare = isIP(text) === 6;
  if (!bare && (host === undefined || isIP(host) === 0 || Number(match?.[3] ?? 53) > 65535 || Number(match?.[3] ?? 53) < 1)) {
    throw new ConfigError(`--dns.server: expected an IP address with an optional port (127.0.0.1:53, [::1]:53), got ${JSON.stringify(text)}`);
  }
  return text;
}

function parseDnsConfig(read: Read): DnsConfig | undefined {
  const names = read.list('dns.name').map((name) => name.trim().replace(/\.$/, '').toLowerCase());
  if (names.length === 0) {
    const stray = OPTIONS.find((option) => option.flag.startsWith('dns.') && read.given(option.flag));
    if (stray !== undefined) throw new ConfigError(`--${stray.flag} needs --dns.name`);
    return undefined;
  }
  for (const name of names) {
    // RFC 1035 lengths; underscores are allowed because SRV names start with them.
    if (!/^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/.test(name) || name.length > 253) {
      throw new ConfigError(`--dns.name: invalid DNS name ${JSON.stringify(name)}`);
    }
  }
  const type = pick('dns.type', read.value('dns.type').toUpperCase(), DNS_RECORD_TYPES);
  const portText = read.value('dns.port');
  const port = Number(portText);
  if (!/^\d{1,5}$/.test(portText) || port < 1 || port > 65535) throw new ConfigError(`--dns.port must be a port from 1 to 65535; got ${JSON.stringify(portText)}`);
  const refreshIntervalMs = requireDuration('dns.refresh-interval', read.value('dns.refresh-interval'));
  // Beyond 24 days a timer fires at once (Node clamps it to 1ms): keep well inside that.
  if (refreshIntervalMs < 100 || refreshIntervalMs > 86_400_000) throw new ConfigError('--dns.refresh-interval must be between 100ms and 24h');
  const serverText = read.str('dns.server');
  const prefix = read.value('dns.node-path-prefix').replace(/\/+$/, '');
  if (prefix !== '' && !prefix.startsWith('/')) throw new ConfigError('--dns.node-path-prefix must start with /');
  return Object.freeze({
    names: Object.freeze([...new Set(names)]),
    type,
    port,
    refreshIntervalMs,
    server: serverText === undefined ? undefined : parseDnsServer(serverText),
    nodeScheme: pick('dns.node-scheme', read.value('dns.node-scheme'), ['http', 'https'] as const),
    nodePathPrefix: prefix,
  });
}

/** COMMANDS are the one-shot commands; without one, the director serves. */
export const COMMANDS = ['lookup', 'ring', 'reconcile'] as const;
/** Command is a one-shot command. */
export type Command = (typeof COMMANDS)[number];

/**
 * parseCommand checks the positional arguments against the configuration: the command, its arguments, and what
 * the command cannot do under this configuration. Returns the command (undefined: serve) and its arguments.
 */
export function parseCommand(positionals: readonly string[], config: Config): { command: Command | undefined; args: readonly string[] } {
  const [name, ...args] = positionals;
  if (name === undefined) return { command: undefined, args: [] };
  if (!(COMMANDS as readonly string[]).includes(name)) {
    throw new ConfigError(`unknown command ${JSON.stringify(name)} (commands: ${COMMANDS.join(', ')}; flags start with --)`);
  }
  const command = name as Command;
  if (command === 'lookup') {
    if (args.length === 0) throw new ConfigError('lookup needs at least one push path or URL, e.g. /metrics/job/backup/instance/db1');
  } else if (args.length > 0) {
    throw new ConfigError(`${command} takes no arguments; got ${args.map((arg) => JSON.stringify(arg)).join(' ')}`);
  }
  if (command === 'reconcile' && config.hashKey === 'path') {
    // A dynamic-sharding file's notice is the only way --hash.key=path comes without the operator typing it.
    const hint = config.notices.some((notice) => notice.includes('dynamic-sharding')) ? IMPLIED_PATH : '';
    throw new ConfigError(`reconcile needs --hash.key=grouping-key: under --hash.key=path a group has no single owner${hint}`);
  }
  return { command, args };
}

/** helpText renders `--help`. */
export function helpText(): string {
  const lines = [
    'usage: pgw-director [flags]                       serve pushes',
    '       pgw-director lookup [flags] PATH_OR_URL...  print the owner of each push path',
    '       pgw-director ring [flags]                  print the ring\'s members and shares',
    '       pgw-director reconcile [flags]             run one reconciliation pass, print its report',
    '',
    'One-shot commands print on stdout and log on stderr; exit 0 done, 1 failed, 2 misconfigured.',
    '',
    'flags:',
  ];
  for (const option of OPTIONS) {
    const value = option.kind === 'boolean' ? '' : '=VALUE';
    const def = option.default !== undefined ? ` (default ${JSON.stringify(option.default)})` : '';
    const short = option.short === undefined ? '' : `-${option.short}, `;
    lines.push(`  ${short}--${option.flag}${value}`, `      ${option.help}${def}${option.kind === 'list' ? ' Repeatable.' : ''}`);
  }
  return `${lines.join('\n')}\n`;
}
