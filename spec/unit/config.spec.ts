import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { ConfigError, parseConfig, parseDuration, parseFlags, parseListenAddress, parseSize } from '../../lib/config';

const config = (argv: string[], env: Record<string, string> = {}) => parseConfig(parseFlags(argv).values, env);

function yamlFile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgw-config-'));
  writeFileSync(join(dir, 'config.yml'), text);
  return join(dir, 'config.yml');
}

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
    ['an unknown flag', ['--bogus'], /Unknown option '--bogus'/],
    ['a bad vnode count', ['--ring.vnodes=0'], /--ring.vnodes must be an integer from 1 to 100000/],
    ['a bad mode', ['--mode=teleport'], /--mode must be one of redirect, proxy, auto/],
    ['a bad hash key', ['--hash.key=raw'], /--hash.key must be one of grouping-key, path/],
    ['a bad listen address', ['--web.listen-address=9292'], /invalid address "9292"/],
    ['a bad node URL', ['--node=ftp://x:1'], /--node: invalid pushgateway URL "ftp:\/\/x:1": scheme must be http or https/],
    ['a bad duration', ['--proxy.timeout=10'], /--proxy.timeout: invalid duration "10"/],
    ['static nodes with Consul', ['--node=http://a:1', '--consul.address=c:8500'], /exclude each other/],
    ['registration without Consul', ['--consul.register=http://a:1'], /--consul.register needs --consul.address/],
    ['a missing config file', ['--config.file=/nonexistent/x.yml'], /cannot read config file "\/nonexistent\/x.yml": ENOENT/],
  ];
  for (const [name, argv, message] of bad) {
    it(`refuses ${name}`, () => assert.throws(() => config(argv), (error: Error) => error instanceof ConfigError && message.test(error.message)));
  }

  it('refuses unknown and mistyped YAML keys', () => {
    assert.throws(() => config([`--config.file=${yamlFile('nodez: [http://a:1]\n')}`]), /unknown key "nodez"/);
    assert.throws(() => config([`--config.file=${yamlFile('nodes: http://a:1\n')}`]), /nodes must be a list of strings/);
    assert.throws(() => config([`--config.file=${yamlFile('mode: [1\n')}`]), ConfigError);
  });
});

describe('value parsers', () => {
  it('reads durations', () => {
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('1m30s'), 90_000);
    assert.equal(parseDuration('0'), 0);
    assert.equal(parseDuration('10'), undefined);
    assert.equal(parseDuration(''), undefined);
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
