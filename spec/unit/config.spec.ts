import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { ConfigError, OPTIONS, nearestFlag, parseCommand, parseConfig, parseDuration, parseFlags, parseListenAddress, parseSize } from '../../lib/config';

const config = (argv: string[], env: Record<string, string> = {}) => parseConfig(parseFlags(argv).values, env);

function yamlFile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgw-config-'));
  writeFileSync(join(dir, 'config.yml'), text);
  return join(dir, 'config.yml');
}

function secretFile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgw-secret-'));
  writeFileSync(join(dir, 'secret'), text);
  return join(dir, 'secret');
}

const refuses = (argv: string[], message: RegExp): void => {
  assert.throws(() => config(argv), (error: Error) => error instanceof ConfigError && message.test(error.message));
};

describe('parseConfig', () => {
  it('defaults to the local Pushgateway on :9292 in redirect mode', () => {
    const c = config([]);
    assert.deepEqual(c.nodes, [{ id: '127.0.0.1:9091', url: 'http://127.0.0.1:9091' }]);
    assert.equal(c.defaultNode, true);
    assert.deepEqual(c.listen, { host: undefined, port: 9292 });
    assert.equal(c.mode, 'redirect');
    assert.equal(c.vnodes, 500);
    assert.equal(c.hashKey, 'grouping-key');
  });

  it('keeps tombstones 24h under pgw-director/ unless told otherwise', () => {
    const c = config(['--consul.address=consul:8500']);
    assert.deepEqual([c.reconcile.tombstoneTtlMs, c.consul?.kvPrefix], [86_400_000, 'pgw-director/']);
    const d = config(['--consul.address=consul:8500', '--group.tombstone-ttl=0', '--consul.kv-prefix=team/a/']);
    assert.deepEqual([d.reconcile.tombstoneTtlMs, d.consul?.kvPrefix], [0, 'team/a/']);
  });

  it('takes --flag=value and --flag value, repeated --node', () => {
    const c = config(['--node=http://a:1', '--node', 'http://b:2', '--mode', 'proxy', '--proxy.timeout=2s', '--proxy.max-body=16MiB']);
    assert.deepEqual(c.nodes.map((n) => n.id), ['a:1', 'b:2']);
    assert.equal(c.mode, 'proxy');
    assert.equal(c.proxyTimeoutMs, 2000);
    assert.equal(c.proxyMaxBodyBytes, 16 * 1024 * 1024);
  });

  it('reads the YAML file, flags winning', () => {
    const file = yamlFile('web:\n  listen_address: "127.0.0.1:9999"\nnodes: [http://a:1, http://b:2]\nring:\n  vnodes: 160\nmode: auto\n');
    const c = config([`--config.file=${file}`, '--mode=proxy']);
    assert.deepEqual(c.listen, { host: '127.0.0.1', port: 9999 });
    assert.equal(c.nodes.length, 2);
    assert.equal(c.vnodes, 160);
    assert.equal(c.mode, 'proxy');
  });

  it('reads Consul settings and the token from the environment or a file', () => {
    const fromEnv = config(['--consul.address=consul:8500'], { CONSUL_HTTP_TOKEN: 'secret' });
    assert.equal(fromEnv.consul?.token, 'secret');
    assert.equal(fromEnv.consul?.tokenSource, 'CONSUL_HTTP_TOKEN');
    assert.equal(fromEnv.defaultNode, false);
    const dir = mkdtempSync(join(tmpdir(), 'pgw-token-'));
    writeFileSync(join(dir, 't'), 'from-file\n');
    const fromFile = config(['--consul.address=consul:8500', `--consul.token-file=${join(dir, 't')}`], { CONSUL_HTTP_TOKEN: 'secret' });
    assert.equal(fromFile.consul?.token, 'from-file');
  });

  it('checks every node every 5s by default, 2s each, 3 failures out and 2 successes back', () => {
    assert.deepEqual(config([]).health, { intervalMs: 5000, timeoutMs: 2000, fall: 3, rise: 2 });
  });

  it('reads the health check settings from flags and the YAML file, 0 turning checks off', () => {
    const file = yamlFile('nodes: [http://a:1]\nnode:\n  health_interval: 1s\n  health_timeout: 500ms\n  health_fall: 5\n  health_rise: 1\n');
    assert.deepEqual(config([`--config.file=${file}`]).health, { intervalMs: 1000, timeoutMs: 500, fall: 5, rise: 1 });
    assert.equal(config([`--config.file=${file}`, '--node.health-interval=0']).health.intervalMs, 0);
    // The default timeout (2s) shrinks to a shorter interval rather than contradict it.
    assert.equal(config(['--node.health-interval=500ms']).health.timeoutMs, 500);
  });

  const bad: [string, string[], RegExp][] = [
    ['a health timeout longer than the interval', ['--node.health-interval=1s', '--node.health-timeout=2s'], /--node.health-timeout must not be longer than --node.health-interval/],
    ['a health interval under 100ms', ['--node.health-interval=10ms'], /--node.health-interval must be 0 \(off\) or at least 100ms/],
    ['a zero health timeout', ['--node.health-timeout=0'], /--node.health-timeout must be greater than 0/],
    ['a bad health interval', ['--node.health-interval=5'], /--node.health-interval: invalid duration "5"/],
    ['a zero fall', ['--node.health-fall=0'], /--node.health-fall must be an integer from 1 to 100; got "0"/],
    ['a fractional rise', ['--node.health-rise=1.5'], /--node.health-rise must be an integer from 1 to 100; got "1.5"/],
    ['an unknown flag', ['--bogus'], /^unknown flag --bogus$/],
    ['a mistyped flag, naming the nearest', ['--ring.vnode=5'], /^unknown flag --ring.vnode \(did you mean --ring.vnodes\?\)$/],
    ['a flag with the wrong word, naming the nearest', ['--consul.adress=c:8500'], /did you mean --consul.address\?/],
    ['a bad vnode count', ['--ring.vnodes=0'], /--ring.vnodes must be an integer from 1 to 100000/],
    ['a body size past 2^53 bytes', ['--proxy.max-body=99999999999999999999'], /--proxy.max-body: invalid size "99999999999999999999"/],
    ['a bad mode', ['--mode=teleport'], /--mode must be one of redirect, proxy, auto/],
    ['a bad hash key', ['--hash.key=raw'], /--hash.key must be one of grouping-key, path/],
    ['a bad listen address', ['--web.listen-address=9292'], /invalid address "9292"/],
    ['a bad node URL', ['--node=ftp://x:1'], /--node: invalid pushgateway URL "ftp:\/\/x:1": scheme must be http or https/],
    ['a bad duration', ['--proxy.timeout=10'], /--proxy.timeout: invalid duration "10"/],
    ['static nodes with Consul', ['--node=http://a:1', '--consul.address=c:8500'], /exclude each other/],
    ['registration without Consul', ['--consul.register=http://a:1'], /--consul.register needs --consul.address/],
    ['a Consul service without Consul', ['--consul.service=pgw'], /^--consul.service needs --consul.address$/],
    ['a Consul tag without Consul', ['--consul.tag=prod'], /^--consul.tag needs --consul.address$/],
    ['Consul deregistration without Consul', ['--consul.deregister-on-exit'], /^--consul.deregister-on-exit needs --consul.address$/],
    ['a TTL under --hash.key=path, which runs no passes', ['--hash.key=path', '--group.ttl=1s'], /--group.ttl runs in reconciliation passes, which --hash.key=path turns off/],
    ['draining a node that is still a --node', ['--node=http://a:1', '--node=http://b:2', '--reconcile.drain=http://b:2'], /--reconcile.drain=http:\/\/b:2 is also a --node/],
    ['a missing config file', ['--config.file=/nonexistent/x.yml'], /cannot read config file "\/nonexistent\/x.yml": ENOENT/],
    ['a bad tombstone TTL', ['--group.tombstone-ttl=1x'], /--group.tombstone-ttl: invalid duration "1x"/],
    ['a KV prefix without its slash', ['--consul.address=c:8500', '--consul.kv-prefix=pgw'], /--consul.kv-prefix must be a key prefix ending in "\/"/],
    ['a KV prefix starting with a slash', ['--consul.address=c:8500', '--consul.kv-prefix=/pgw/'], /not starting with one; got "\/pgw\/"/],
    // Node's timers overflow past 2^31 - 1 ms and fire after 1 ms: a month-long interval became a loop without pause.
    ['a reconcile interval longer than a timer holds', ['--reconcile.interval=30d'], /^--reconcile.interval must be at most 24d; got "30d"$/],
    ['a proxy timeout longer than a timer holds', ['--proxy.timeout=1y'], /^--proxy.timeout must be at most 24d; got "1y"$/],
    ['a health interval longer than a timer holds', ['--node.health-interval=25d'], /^--node.health-interval must be at most 24d/],
    ['a reconcile interval that makes passes back to back', ['--reconcile.interval=1ms'], /^--reconcile.interval must be at least 100ms; got "1ms"$/],
    ['a registration interval of 0, a flood of writes to Consul', ['--consul.address=c:8500', '--consul.register-interval=0'], /^--consul.register-interval must be at least 100ms/],
    ['a registration interval longer than a timer holds', ['--consul.address=c:8500', '--consul.register-interval=30d'], /^--consul.register-interval must be at most 24d/],
  ];
  for (const [name, argv, message] of bad) {
    it(`refuses ${name}`, () => assert.throws(() => config(argv), (error: Error) => error instanceof ConfigError && message.test(error.message)));
  }

  it('states each default once, in OPTIONS', () => {
    const c = config(['--consul.address=c:8500']);
    const defaults = new Map(OPTIONS.map((option) => [option.flag, option.default]));
    assert.equal(`:${c.listen.port}`, defaults.get('web.listen-address'));
    assert.equal(String(c.vnodes), defaults.get('ring.vnodes'));
    assert.equal(c.hashKey, defaults.get('hash.key'));
    assert.equal(c.mode, defaults.get('mode'));
    assert.equal(c.logLevel, defaults.get('log.level'));
    assert.equal(c.proxyTimeoutMs, parseDuration(defaults.get('proxy.timeout') ?? ''));
    assert.equal(c.consul?.service, defaults.get('consul.service'));
    assert.equal(c.consul?.scheme, defaults.get('consul.scheme'));
    assert.equal(c.consul?.waitMs, parseDuration(defaults.get('consul.wait') ?? ''));
    assert.equal(c.consul?.registerIntervalMs, parseDuration(defaults.get('consul.register-interval') ?? ''));
  });

  it('takes -h for --help', () => {
    assert.equal(parseFlags(['-h']).values['help'], true);
  });

  it('refuses a flat dotted YAML key instead of ignoring it, naming the nested form', () => {
    assert.throws(() => config([`--config.file=${yamlFile('ring.vnodes: 1\n')}`]), /flat key "ring.vnodes": nest it \(ring: \{vnodes: \.\.\.\}\)/);
    assert.throws(() => config([`--config.file=${yamlFile('consul:\n  token.file: x\n')}`]), /unknown key "consul.token.file"/);
    assert.throws(() => config([`--config.file=${yamlFile('ring.vnodez: 1\n')}`]), /unknown key "ring.vnodez"/);
  });

  it('refuses unknown and mistyped YAML keys', () => {
    assert.throws(() => config([`--config.file=${yamlFile('nodez: [http://a:1]\n')}`]), /unknown key "nodez"/);
    assert.throws(() => config([`--config.file=${yamlFile('nodes: http://a:1\n')}`]), /nodes must be a list of strings/);
    assert.throws(() => config([`--config.file=${yamlFile('mode: [1\n')}`]), ConfigError);
  });
});

describe('node credentials', () => {
  it('builds a Basic header from a user name and a password file, trimming its newline', () => {
    const c = config(['--node.basic-auth.username=director', `--node.basic-auth.password-file=${secretFile('s3cret\n')}`]);
    assert.equal(c.nodeAuthorization, `Basic ${Buffer.from('director:s3cret').toString('base64')}`);
  });

  it('builds a Bearer header from a credentials file, or another scheme with --node.authorization.type', () => {
    const file = secretFile('tok-123\n');
    assert.equal(config([`--node.authorization.credentials-file=${file}`]).nodeAuthorization, 'Bearer tok-123');
    assert.equal(config([`--node.authorization.credentials-file=${file}`, '--node.authorization.type=Token']).nodeAuthorization, 'Token tok-123');
  });

  it('reads node_auth from the YAML file, and hands the header to the Consul check', () => {
    const file = yamlFile(`consul:\n  address: c:8500\nnode_auth:\n  basic_auth:\n    username: u\n    password_file: ${secretFile('p')}\n`);
    const c = config([`--config.file=${file}`]);
    assert.equal(c.nodeAuthorization, `Basic ${Buffer.from('u:p').toString('base64')}`);
    assert.equal(c.consul?.nodeAuthorization, c.nodeAuthorization);
  });

  it('refuses an inline password or token in the YAML file, pointing at the _file key', () => {
    const file = yamlFile('node_auth:\n  basic_auth:\n    username: u\n    password: hunter2\n');
    assert.throws(() => config([`--config.file=${file}`]), /node_auth.basic_auth.password: put it in a file and name the file with password_file/);
  });

  it('sends nothing by default', () => {
    assert.equal(config([]).nodeAuthorization, undefined);
  });

  const bad: [string, string[], RegExp][] = [
    ['a user without a password file', ['--node.basic-auth.username=u'], /--node.basic-auth.username needs --node.basic-auth.password-file/],
    ['a password file without a user', [`--node.basic-auth.password-file=${secretFile('p')}`], /needs --node.basic-auth.username/],
    ['both kinds at once', ['--node.basic-auth.username=u', `--node.basic-auth.password-file=${secretFile('p')}`, `--node.authorization.credentials-file=${secretFile('t')}`], /exclude each other/],
    ['a missing file', ['--node.authorization.credentials-file=/nonexistent/t'], /--node.authorization.credentials-file: cannot read "\/nonexistent\/t": ENOENT/],
    ['an empty file', [`--node.authorization.credentials-file=${secretFile('\n')}`], /is empty/],
    ['a file with a line break inside', [`--node.authorization.credentials-file=${secretFile('a\nb')}`], /control character or a line break/],
    ['type Basic', [`--node.authorization.credentials-file=${secretFile('t')}`, '--node.authorization.type=Basic'], /use --node.basic-auth.username/],
    ['a type without credentials', ['--node.authorization.type=Token'], /--node.authorization.type needs --node.authorization.credentials-file/],
    ['a colon in the user name', ['--node.basic-auth.username=a:b', `--node.basic-auth.password-file=${secretFile('p')}`], /cannot hold a colon/],
  ];
  for (const [name, argv, message] of bad) it(`refuses ${name}`, () => refuses(argv, message));

  it('never puts the secret in an error message', () => {
    const file = secretFile('hunter2\nhunter3');
    assert.throws(() => config([`--node.authorization.credentials-file=${file}`]), (error: Error) => !error.message.includes('hunter'));
  });
});

describe("dynamic-sharding's config file", () => {
  // Its sample file, as its README ships it.
  const SAMPLE = [
    'consul_server:',
    '  addr: 127.0.0.1:8500',
    '  username:',
    '  password:',
    '  register_service_name: pushgateway',
    'http_listen_addr: :9292',
    'pushgateway:',
    '  port: 9091',
    '  servers:',
    '    - 127.0.0.2',
    '    - 127.0.0.3',
    '',
  ].join('\n');

  it('is read as it is: Consul, service, listen address, and each server registered in Consul, placed by path', () => {
    const c = config([`--config.file=${yamlFile(SAMPLE)}`]);
    assert.equal(c.consul?.address, '127.0.0.1:8500');
    assert.equal(c.consul?.service, 'pushgateway');
    assert.deepEqual(c.listen, { host: undefined, port: 9292 });
    assert.deepEqual(c.consul?.register.map((node) => node.url), ['http://127.0.0.2:9091', 'http://127.0.0.3:9091']);
    assert.equal(c.hashKey, 'path');
    assert.equal(c.reconcile.intervalMs, 0);
    assert.match(c.notices.join('\n'), /is dynamic-sharding's: read as --hash.key=path/);
  });

  it('says where --hash.key=path came from when it refuses reconciliation', () => {
    const file = yamlFile(SAMPLE);
    assert.throws(() => config([`--config.file=${file}`, '--reconcile.migrate']), /a dynamic-sharding config file implies --hash.key=path/);
    assert.throws(() => parseCommand(['reconcile'], config([`--config.file=${file}`])), /a dynamic-sharding config file implies --hash.key=path/);
    assert.throws(() => config(['--hash.key=path', '--reconcile.migrate']), (error: Error) => !error.message.includes('dynamic-sharding'));
  });

  it('lets flags win, --hash.key included', () => {
    const c = config([`--config.file=${yamlFile(SAMPLE)}`, '--hash.key=grouping-key', '--web.listen-address=127.0.0.1:9393']);
    assert.equal(c.hashKey, 'grouping-key');
    assert.equal(c.reconcile.intervalMs, 60_000);
    assert.deepEqual(c.listen, { host: '127.0.0.1', port: 9393 });
  });

  it('takes the servers as static nodes when it names no Consul', () => {
    const c = config([`--config.file=${yamlFile('http_listen_addr: :9292\npushgateway:\n  port: 9091\n  servers: [127.0.0.2]\n')}`]);
    assert.deepEqual(c.nodes.map((node) => node.url), ['http://127.0.0.2:9091']);
    assert.equal(c.consul, undefined);
  });

  it('refuses its unused username and password, saying how to pass a token', () => {
    for (const key of ['username', 'password']) {
      const file = yamlFile(SAMPLE.replace(`  ${key}:`, `  ${key}: someone`));
      assert.throws(() => config([`--config.file=${file}`]), new RegExp(`consul_server.${key}: dynamic-sharding never used it .*CONSUL_HTTP_TOKEN or --consul.token-file`));
    }
  });

  it('refuses unknown keys in its sections, and a file mixing both formats', () => {
    assert.throws(() => config([`--config.file=${yamlFile(`${SAMPLE}  extra: 1\n`)}`]), /unknown key "pushgateway.extra"/);
    assert.throws(() => config([`--config.file=${yamlFile(`${SAMPLE}mode: proxy\n`)}`]), /mixes dynamic-sharding's keys \(consul_server, http_listen_addr, pushgateway\) with pgw-director's \(mode\)/);
    assert.throws(() => config([`--config.file=${yamlFile('pushgateway:\n  servers: [a]\n')}`]), /pushgateway.port must be a port number/);
  });

  // These were blamed on a --node the user never wrote: `--node: invalid pushgateway URL "http://[http://a]:9091"`.
  it('refuses a server that is not a host, and a port out of range, naming the file\'s keys', () => {
    const file = (servers: string, port = '9091') => yamlFile(`pushgateway:\n  port: ${port}\n  servers: ${servers}\n`);
    for (const server of ['http://a', '1.1.1.1/x', 'a:9091', 'user@a']) {
      assert.throws(() => config([`--config.file=${file(`[${JSON.stringify(server)}]`)}`]), new RegExp(`pushgateway.servers: ${JSON.stringify(server).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is not a host name or address`));
    }
    assert.throws(() => config([`--config.file=${file('[a]', '99999')}`]), /pushgateway.port must be a port number/);
    assert.throws(() => config([`--config.file=${file('[a]', '0')}`]), /pushgateway.port must be a port number/);
    const c = config([`--config.file=${file('[a.example, "::1", "[fe80::1]", 127.0.0.11]')}`]);
    assert.deepEqual(c.nodes.map((node) => node.url), ['http://a.example:9091', 'http://[::1]:9091', 'http://[fe80::1]:9091', 'http://127.0.0.11:9091']);
  });
});

describe('parseCommand', () => {
  const c = config(['--node=http://a:1']);
  it('serves without a command, and passes lookup its paths', () => {
    assert.deepEqual(parseCommand([], c), { command: undefined, args: [] });
    assert.deepEqual(parseCommand(['lookup', '/metrics/job/a'], c), { command: 'lookup', args: ['/metrics/job/a'] });
  });
  const bad: [string, string[], RegExp, string[]?][] = [
    ['an unknown command', ['serve'], /unknown command "serve"/],
    ['arguments to ring', ['ring', 'extra'], /^ring takes no arguments; got "extra"$/],
    ['arguments to reconcile', ['reconcile', 'now'], /^reconcile takes no arguments/],
    ['lookup without a path', ['lookup'], /lookup needs at least one push path/],
    ['reconcile under --hash.key=path', ['reconcile'], /reconcile needs --hash.key=grouping-key/, ['--node=http://a:1', '--hash.key=path']],
  ];
  for (const [name, positionals, message, argv] of bad) {
    it(`refuses ${name}`, () => {
      const base = argv === undefined ? c : config(argv);
      assert.throws(() => parseCommand(positionals, base), (error: Error) => error instanceof ConfigError && message.test(error.message));
    });
  }
});

describe('value parsers', () => {
  it('reads durations', () => {
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('1m30s'), 90_000);
    assert.equal(parseDuration('1d'), 86_400_000);
    assert.equal(parseDuration('2w'), 14 * 86_400_000);
    assert.equal(parseDuration('1y'), 365 * 86_400_000);
    assert.equal(parseDuration('1d12h'), 36 * 3_600_000);
    assert.equal(parseDuration('0'), 0);
    assert.equal(parseDuration('10'), undefined);
    assert.equal(parseDuration(''), undefined);
  });
  it('suggests the nearest flag only when one is close', () => {
    assert.equal(nearestFlag('log.levl'), 'log.level');
    assert.equal(nearestFlag('frobnicate-everything'), undefined);
  });
  it('reads sizes', () => {
    assert.equal(parseSize('1KiB'), 1024);
    assert.equal(parseSize('10MB'), 10_000_000);
    assert.equal(parseSize('12'), 12);
    assert.equal(parseSize('1 TB'), undefined);
  });
  it('reads listen addresses', () => {
    assert.deepEqual(parseListenAddress(':9292'), { host: undefined, port: 9292 });
    assert.deepEqual(parseListenAddress('[::1]:9292'), { host: '::1', port: 9292 });
    assert.equal(parseListenAddress('host:99999'), undefined);
  });
});
