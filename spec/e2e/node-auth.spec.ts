import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import bcrypt from 'bcryptjs';

import { type ConsulDouble, startConsulDouble } from '../support/consul-double';
import { type TestDirector, directorFromFlags } from '../support/director';
import { type Pushgateway, httpRequest, run, startPushgateway, writeWebConfig } from '../support/pushgateway';
import { until } from '../support/wait';

const BIN = join(__dirname, '..', '..', 'bin', 'pgw-director.js');
const USER = 'director';
const PASSWORD = 'e2e-node-secret-7f3a';
const AUTH = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;

describe('node credentials against a Pushgateway behind basic auth', () => {
  let pgw: Pushgateway;
  let passwordFile: string;
  const directors: TestDirector[] = [];
  let consul: ConsulDouble | undefined;

  before(async () => {
    pgw = await startPushgateway({ webConfig: writeWebConfig(USER, bcrypt.hashSync(PASSWORD, 4)), authHeader: AUTH });
    const dir = mkdtempSync(join(tmpdir(), 'pgw-node-auth-'));
    passwordFile = join(dir, 'password');
    writeFileSync(passwordFile, `${PASSWORD}\n`);
    const push = await httpRequest(`${pgw.url}/metrics/job/auth/instance/a`, { method: 'PUT', body: 'auth_value 1\n', headers: { Authorization: AUTH } });
    assert.equal(push.status, 200, push.body);
  });
  after(async () => {
    for (const director of directors) await director.close();
    await consul?.stop();
    await pgw.stop();
  });
  const director = (flags: string[]): TestDirector => {
    const created = directorFromFlags(flags);
    directors.push(created);
    return created;
  };

  it('fails a reconcile pass with a clear 401 without credentials', async () => {
    const d = director(['--node', pgw.url]);
    d.discovery.start();
    const report = await d.reconciler.pass();
    assert.deepEqual(report.skipped, [pgw.id]);
    assert.equal(report.errors, 1);
    assert.match(d.log.raw.join('\n'), /HTTP 401: the node wants credentials: set --node.basic-auth.username/);
  });

  it('lists the node with --node.basic-auth.*, and never logs the password', async () => {
    const d = director(['--node', pgw.url, '--node.basic-auth.username', USER, '--node.basic-auth.password-file', passwordFile]);
    d.discovery.start();
    const report = await d.reconciler.pass();
    assert.equal(report.errors, 0, JSON.stringify(report));
    assert.equal(report.groups, 1);
    const logged = d.log.raw.join('\n');
    assert.ok(logged.includes('reconciliation pass done'), 'the pass was not logged at all');
    assert.ok(!logged.includes(PASSWORD) && !logged.includes(AUTH.slice(6)), 'a credential reached the log');
  });

  it('runs the one-shot reconcile with credentials (exit 0) and says why it fails without (exit 1)', async () => {
    const ok = await run(process.execPath, [BIN, 'reconcile', '--node', pgw.url, `--node.basic-auth.username=${USER}`, `--node.basic-auth.password-file=${passwordFile}`]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((JSON.parse(ok.stdout) as { groups: number }).groups, 1);
    assert.ok(!ok.stderr.includes(PASSWORD) && !ok.stderr.includes(AUTH.slice(6)));
    const refused = await run(process.execPath, [BIN, 'reconcile', '--node', pgw.url]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /HTTP 401: the node wants credentials/);
    assert.equal((JSON.parse(refused.stdout) as { errors: number }).errors, 1);
  });

  it('registers the node in Consul with a check that carries the credentials, so it joins the ring', async () => {
    consul = await startConsulDouble();
    const checks = (): Promise<[string, number]> => once(consul as ConsulDouble, 'check') as Promise<[string, number]>;

    const anonymousCheck = checks();
    const anonymous = director([`--consul.address=${consul.address}`, '--consul.wait=2s', `--consul.register=${pgw.url}`]);
    anonymous.discovery.start();
    assert.deepEqual(await anonymousCheck, [`127.0.0.1_${pgw.port}`, 401]);
    await anonymous.discovery.stop();

    const signedCheck = checks();
    const signed = director([
      `--consul.address=${consul.address}`,
      '--consul.wait=2s',
      `--consul.register=${pgw.url}`,
      `--node.basic-auth.username=${USER}`,
      `--node.basic-auth.password-file=${passwordFile}`,
    ]);
    signed.discovery.start();
    assert.deepEqual(await signedCheck, [`127.0.0.1_${pgw.port}`, 200]);
    await until(() => signed.placement.ring.nodes.some((node) => node.id === pgw.id), 'the registered node joins the ring');
    assert.ok(!signed.log.raw.join('\n').includes(AUTH.slice(6)), 'a credential reached the log');
  });
});
