import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import bcrypt from 'bcryptjs';
import { Gauge, Pushgateway as PromClientPushgateway, Registry } from 'prom-client';

import { parseGroupingKey } from '../../lib/core/grouping-key';
import { type TestDirector, directorFromFlags } from '../support/director';
import { until } from '../support/wait';
import {
  type Group,
  type Pushgateway,
  buildGoPusher,
  pythonPusher,
  requireProgram,
  run,
  startPushgateway,
  writeWebConfig,
} from '../support/pushgateway';

type Mode = 'redirect' | 'proxy' | 'auto';

/** Where a group is: every node holding it. */
async function holders(nodes: readonly Pushgateway[], labels: Record<string, string>): Promise<{ node: Pushgateway; group: Group }[]> {
  const want = JSON.stringify(Object.entries(labels).sort());
  const found: { node: Pushgateway; group: Group }[] = [];
  for (const node of nodes) {
    for (const group of await node.groups()) {
      if (JSON.stringify(Object.entries(group.labels).sort()) === want) found.push({ node, group });
    }
  }
  return found;
}

function ownerUrl(director: TestDirector, path: string): string {
  const parsed = parseGroupingKey(path);
  assert.ok(parsed.ok, path);
  const node = director.placement.owner(parsed.key, parsed.path);
  assert.ok(node);
  return node.url;
}

/** assertOnce checks that a group lives on exactly one node, the director's choice, with the value pushed. */
async function assertOnce(
  nodes: readonly Pushgateway[],
  director: TestDirector,
  labels: Record<string, string>,
  canonicalPath: string,
  value: string,
): Promise<void> {
  const found = await holders(nodes, labels);
  assert.equal(found.length, 1, `group ${JSON.stringify(labels)} is on ${found.length} nodes`);
  assert.equal(found[0]?.node.url, ownerUrl(director, canonicalPath), 'not on the node the director chose');
  assert.equal(Number(found[0]?.group.values['e2e_value']), Number(value));
}

// Every client pushes the same family, typed and described alike: a Pushgateway rejects a push whose type clashes
// with the same family in another group.
const BODY = (value: number): string => `# HELP e2e_value The value an end-to-end spec pushed.\n# TYPE e2e_value gauge\ne2e_value ${value}\n`;

describe('end to end: real Pushgateways, real clients', () => {
  let nodes: Pushgateway[];
  const directors = new Map<Mode, TestDirector>();
  const urls = new Map<Mode, string>();

  before(async () => {
    nodes = await Promise.all([startPushgateway(), startPushgateway(), startPushgateway()]);
    for (const mode of ['redirect', 'proxy', 'auto'] as const) {
      const director = directorFromFlags([`--mode=${mode}`, '--log.level=warn', ...nodes.flatMap((node) => ['--node', node.url])]);
      const address = await director.listen();
      directors.set(mode, director);
      urls.set(mode, `http://127.0.0.1:${address.port}`);
    }
  });
  after(async () => {
    await Promise.all([...directors.values()].map((director) => director.close()));
    await Promise.all(nodes.map((node) => node.stop()));
  });

  describe('Go client_golang through redirect mode', () => {
    const cases: { name: string; job: string; labels: Record<string, string>; path: string }[] = [
      { name: 'a plain group', job: 'go_plain', labels: { instance: 'db1' }, path: '/metrics/job/go_plain/instance/db1' },
      { name: 'a value with a slash (base64)', job: 'go_slash', labels: { path: '/var/lib' }, path: '/metrics/job/go_slash/path@base64/L3Zhci9saWI' },
      { name: 'an empty value', job: 'go_empty', labels: { instance: 'a', tag: '' }, path: '/metrics/job/go_empty/instance/a/tag@base64/=' },
      { name: 'unicode', job: 'go_unicode', labels: { city: 'Zürich Π' }, path: '/metrics/job/go_unicode/city/Z%C3%BCrich+%CE%A0' },
      { name: 'a space', job: 'go_space', labels: { host: 'a b' }, path: '/metrics/job/go_space/host/a+b' },
      {
        name: 'several labels in random map order',
        job: 'go_many',
        labels: { a: '1', b: '2', c: '3', d: '4', e: '5' },
        path: '/metrics/job/go_many/a/1/b/2/c/3/d/4/e/5',
      },
    ];
    for (const c of cases) {
      it(`pushes, adds and deletes ${c.name}`, async () => {
        const pusher = await buildGoPusher();
        const url = urls.get('redirect') as string;
        const director = directors.get('redirect') as TestDirector;
        const labelArgs = Object.entries(c.labels).map(([k, v]) => `${k}=${v}`);
        // Go sends a space as + (url.QueryEscape), which the Pushgateway keeps: the stored label says "a+b".
        const stored = { job: c.job, ...Object.fromEntries(Object.entries(c.labels).map(([k, v]) => [k, v.includes('/') ? v : v.replace(/ /g, '+')])) };
        for (let i = 1; i <= 4; i++) {
          const push = await run(pusher, [url, i % 2 === 0 ? 'add' : 'push', c.job, String(i), ...labelArgs]);
          assert.equal(push.code, 0, push.stderr);
          await assertOnce(nodes, director, stored, c.path, String(i));
        }
        const del = await run(pusher, [url, 'delete', c.job, '0', ...labelArgs]);
        assert.equal(del.code, 0, del.stderr);
        // The Pushgateway applies a delete after answering it: wait for it to take effect.
        await until(async () => (await holders(nodes, stored)).length === 0, 'the group survived its delete');
      });
    }
  });

  describe('curl through redirect mode', () => {
    let dir: string;
    before(() => {
      requireProgram('curl', ['/usr/bin/curl']);
      dir = mkdtempSync(join(tmpdir(), 'pgw-curl-'));
    });

    const variants: { name: string; args: (url: string, file: string) => string[]; input?: string }[] = [
      { name: '-L --data-binary @file (POST)', args: (url, file) => ['-L', '--data-binary', `@${file}`, url] },
      { name: '-L -X PUT --data-binary @-', args: (url) => ['-L', '-X', 'PUT', '--data-binary', '@-', url], input: BODY(2) },
      { name: '-L -T - (streamed stdin)', args: (url) => ['-L', '-T', '-', url], input: BODY(3) },
    ];
    for (const [i, variant] of variants.entries()) {
      it(`pushes with ${variant.name}`, async () => {
        const job = `curl_${i}`;
        const file = join(dir, `body-${i}`);
        writeFileSync(file, BODY(i + 1));
        const target = `${urls.get('redirect') as string}/metrics/job/${job}/instance/box`;
        const result = await run('curl', ['-sS', '--fail', ...variant.args(target, file)], variant.input === undefined ? {} : { input: variant.input });
        assert.equal(result.code, 0, result.stderr);
        await assertOnce(nodes, directors.get('redirect') as TestDirector, { job, instance: 'box' }, `/metrics/job/${job}/instance/box`, String(i + 1));
      });
    }

    it('deletes with -L -X DELETE', async () => {
      const target = `${urls.get('redirect') as string}/metrics/job/curl_0/instance/box`;
      const result = await run('curl', ['-sS', '--fail', '-L', '-X', 'DELETE', target]);
      assert.equal(result.code, 0, result.stderr);
      // The Pushgateway applies a delete after answering it: wait for it to take effect.
      await until(async () => (await holders(nodes, { job: 'curl_0', instance: 'box' })).length === 0, 'the group to be deleted');
    });
  });

  describe('Python prometheus_client', () => {
    for (const mode of ['proxy', 'auto'] as const) {
      it(`pushes, pushadds and deletes through ${mode} mode`, async () => {
        const { python, script } = pythonPusher();
        const url = urls.get(mode) as string;
        const job = `py_${mode}`;
        const labels = { instance: 'web-1', path: '/srv/data' };
        const labelArgs = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
        for (const [action, value] of [['push', '1'], ['pushadd', '2']] as const) {
          const result = await run(python, [script, url, action, job, value, ...labelArgs]);
          assert.equal(result.code, 0, result.stderr);
          await assertOnce(nodes, directors.get(mode) as TestDirector, { job, ...labels }, `/metrics/job/${job}/instance/web-1/path@base64/L3Nydi9kYXRh`, value);
        }
        const del = await run(python, [script, url, 'delete', job, '0', ...labelArgs]);
        assert.equal(del.code, 0, del.stderr);
        // The Pushgateway applies a delete after answering it: wait for it to take effect.
        await until(async () => (await holders(nodes, { job, ...labels })).length === 0, 'the group to be deleted');
      });
    }

    it('shows the user the 307 error through redirect mode, as the README says', async () => {
      const { python, script } = pythonPusher();
      const result = await run(python, [script, urls.get('redirect') as string, 'push', 'py_redirect', '1']);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /HTTPError: HTTP Error 307: Temporary Redirect/);
      assert.equal((await holders(nodes, { job: 'py_redirect' })).length, 0);
    });
  });

  describe('Node prom-client', () => {
    for (const mode of ['proxy', 'auto'] as const) {
      it(`pushes, pushAdds and deletes through ${mode} mode`, async () => {
        const registry = new Registry();
        const gauge = new Gauge({ name: 'e2e_value', help: 'The value an end-to-end spec pushed.', registers: [registry] });
        const gateway = new PromClientPushgateway(urls.get(mode) as string, {}, registry);
        const job = `node_${mode}`;
        const groupings = { instance: 'n1', zone: 'z-1' };
        gauge.set(1);
        await gateway.push({ jobName: job, groupings });
        await assertOnce(nodes, directors.get(mode) as TestDirector, { job, ...groupings }, `/metrics/job/${job}/instance/n1/zone/z-1`, '1');
        gauge.set(2);
        await gateway.pushAdd({ jobName: job, groupings });
        await assertOnce(nodes, directors.get(mode) as TestDirector, { job, ...groupings }, `/metrics/job/${job}/zone/z-1/instance/n1`, '2');
        await gateway.delete({ jobName: job, groupings });
        // The Pushgateway applies a delete after answering it: wait for it to take effect.
        await until(async () => (await holders(nodes, { job, ...groupings })).length === 0, 'the group to be deleted');
      });
    }
  });

  describe('a Pushgateway behind basic auth', () => {
    let secured: Pushgateway;
    const auth = `Basic ${Buffer.from('pusher:e2e-secret').toString('base64')}`;
    const securedDirectors: TestDirector[] = [];
    const securedUrls = new Map<Mode, string>();
    before(async () => {
      const config = writeWebConfig('pusher', bcrypt.hashSync('e2e-secret', 4));
      secured = await startPushgateway({ webConfig: config, authHeader: auth });
      for (const mode of ['proxy', 'auto'] as const) {
        const director = directorFromFlags([`--mode=${mode}`, '--log.level=warn', '--node', secured.url]);
        const address = await director.listen();
        securedDirectors.push(director);
        securedUrls.set(mode, `http://127.0.0.1:${address.port}`);
      }
    });
    after(async () => {
      await Promise.all(securedDirectors.map((director) => director.close()));
      await secured.stop();
    });

    for (const mode of ['proxy', 'auto'] as const) {
      it(`accepts pushes with credentials through ${mode} mode (Python and curl)`, async () => {
        const { python, script } = pythonPusher();
        const url = securedUrls.get(mode) as string;
        const py = await run(python, [script, url, 'push', `auth_py_${mode}`, '7'], { env: { ...process.env, PUSH_USER: 'pusher', PUSH_PASSWORD: 'e2e-secret' } });
        assert.equal(py.code, 0, py.stderr);
        const curl = await run('curl', ['-sS', '--fail', '-L', '-u', 'pusher:e2e-secret', '--data-binary', '@-', `${url}/metrics/job/auth_curl_${mode}`], {
          input: BODY(8),
        });
        assert.equal(curl.code, 0, curl.stderr);
        const jobs = (await secured.groups()).map((group) => group.labels['job']);
        assert.ok(jobs.includes(`auth_py_${mode}`) && jobs.includes(`auth_curl_${mode}`), jobs.join(','));
        const denied = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-L', '--data-binary', '@-', `${url}/metrics/job/auth_none`], { input: BODY(9) });
        assert.equal(denied.stdout, '401');
      });
    }
  });
});
