import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { ConfigError, parseConfig, parseFlags } from '../../lib/config';

const config = (argv: string[]) => parseConfig(parseFlags(argv).values, {});

describe('parseConfig: dns discovery', () => {
  it('turns on with --dns.name, with the documented defaults', () => {
    const c = config(['--dns.name=_http._tcp.pgw.monitoring.svc.cluster.local.']);
    assert.deepEqual(c.dns, {
      names: ['_http._tcp.pgw.monitoring.svc.cluster.local'],
      type: 'SRV',
      port: 9091,
      refreshIntervalMs: 30_000,
      server: undefined,
      nodeScheme: 'http',
      nodePathPrefix: '',
    });
    assert.equal(c.defaultNode, false);
    assert.deepEqual(c.nodes, []);
  });

  it('takes every flag, repeated names, and the same settings from the YAML file under dns:', () => {
    const c = config([
      '--dns.name=a.test',
      '--dns.name',
      'B.test',
      '--dns.type=a',
      '--dns.port=9555',
      '--dns.refresh-interval=5s',
      '--dns.server=[::1]:5353',
      '--dns.node-scheme=https',
      '--dns.node-path-prefix=/pgw/',
    ]);
    assert.deepEqual(c.dns, {
      names: ['a.test', 'b.test'],
      type: 'A',
      port: 9555,
      refreshIntervalMs: 5000,
      server: '[::1]:5353',
      nodeScheme: 'https',
      nodePathPrefix: '/pgw',
    });
    const dir = mkdtempSync(join(tmpdir(), 'pgw-dns-config-'));
    writeFileSync(join(dir, 'c.yml'), 'dns:\n  names: [_pgw._tcp.test.local]\n  type: SRV\n  refresh_interval: 10s\n  server: "127.0.0.1:5353"\n');
    const fromFile = config([`--config.file=${join(dir, 'c.yml')}`]);
    assert.deepEqual(fromFile.dns?.names, ['_pgw._tcp.test.local']);
    assert.equal(fromFile.dns?.refreshIntervalMs, 10_000);
    assert.equal(fromFile.dns?.server, '127.0.0.1:5353');
  });

  const bad: [string, string[], RegExp][] = [
    ['static nodes with dns', ['--node=http://a:1', '--dns.name=a.test'], /^--node and --dns\.name exclude each other/],
    ['consul with dns', ['--consul.address=c:8500', '--dns.name=a.test'], /^--consul\.address and --dns\.name exclude each other/],
    ['a name with a space', ['--dns.name=a b.test'], /--dns\.name: invalid DNS name "a b\.test"/],
    ['an empty label', ['--dns.name=a..test'], /invalid DNS name/],
    ['a label over 63 characters', [`--dns.name=${'a'.repeat(64)}.test`], /invalid DNS name/],
    ['an unknown record type', ['--dns.name=a.test', '--dns.type=MX'], /--dns\.type must be one of SRV, A, AAAA; got "MX"/],
    ['port 0', ['--dns.name=a.test', '--dns.port=0'], /--dns\.port must be a port from 1 to 65535; got "0"/],
    ['a port out of range', ['--dns.name=a.test', '--dns.port=70000'], /--dns\.port must be a port/],
    ['a zero refresh interval', ['--dns.name=a.test', '--dns.refresh-interval=0'], /--dns\.refresh-interval must be between 100ms and 24h/],
    ['a refresh interval past what a timer holds', ['--dns.name=a.test', '--dns.refresh-interval=1000h'], /--dns\.refresh-interval must be between 100ms and 24h/],
    ['a bad refresh interval', ['--dns.name=a.test', '--dns.refresh-interval=often'], /--dns\.refresh-interval: invalid duration "often"/],
    ['a server given by name', ['--dns.name=a.test', '--dns.server=kube-dns:53'], /--dns\.server: expected an IP address/],
    ['a server port out of range', ['--dns.name=a.test', '--dns.server=127.0.0.1:99999'], /--dns\.server: expected an IP address/],
    ['a bad node scheme', ['--dns.name=a.test', '--dns.node-scheme=ftp'], /--dns\.node-scheme must be one of http, https/],
    ['a relative path prefix', ['--dns.name=a.test', '--dns.node-path-prefix=pgw'], /--dns\.node-path-prefix must start with \//],
  ];
  for (const [name, argv, message] of bad) {
    it(`refuses ${name}`, () => assert.throws(() => config(argv), (error: Error) => error instanceof ConfigError && message.test(error.message)));
  }

  it('accepts servers as an IPv4 or IPv6 address, with or without a port', () => {
    for (const server of ['127.0.0.1', '127.0.0.1:5353', '::1', '[::1]:53']) {
      assert.equal(config(['--dns.name=a.test', `--dns.server=${server}`]).dns?.server, server);
    }
  });
});
