import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { parseGroupingKey } from '../../lib/core/grouping-key';
import { type TestDirector, directorFromFlags } from '../support/director';
import { ARTEFACTS, chromium } from '../support/fleet';
import { type Pushgateway, httpRequest, startPushgateway } from '../support/pushgateway';
import { until } from '../support/wait';

const STALE_AFTER_S = 3;
const b64 = (value: string): string => Buffer.from(value, 'utf8').toString('base64url');
const HOSTILE = '"><script>alert(1)</script><img src=x onerror=alert(2)>';

type Row = { classes: string[]; node: string; html: string; text: string };

/** rows reads the rows of one table of the DOM Chromium dumped. */
function rows(dom: string, table: 'nodes' | 'groups'): Row[] {
  const body = new RegExp(`<table class="stack" id="${table}">[\\s\\S]*?<tbody>([\\s\\S]*?)</tbody>`).exec(dom)?.[1];
  assert.ok(body !== undefined, `no ${table} table in the DOM`);
  return [...body.matchAll(/<tr class="([^"]*)" data-node="([^"]*)">([\s\S]*?)<\/tr>/g)].map((m) => ({
    classes: (m[1] as string).split(' '),
    node: m[2] as string,
    html: m[3] as string,
    text: (m[3] as string).replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim(),
  }));
}

describe('the fleet page in a real browser (headless Chromium), in front of three real Pushgateways', () => {
  let nodes: Pushgateway[] = [];
  let director: TestDirector;
  let url: string;
  let strayNode: Pushgateway;
  // The page's clock stops once every group is pushed, so ages on the page do not depend on how fast Chromium runs.
  let frozenAt: number | undefined;

  const ownerUrl = (path: string): string => {
    const parsed = parseGroupingKey(path);
    assert.ok(parsed.ok);
    return director.placement.owner(parsed.key, parsed.path)?.url ?? '';
  };
  const put = async (target: string, path: string, body: string): Promise<void> => {
    const res = await httpRequest(`${target}${path}`, { method: 'PUT', body });
    assert.equal(res.status, 200, res.body);
  };

  before(async () => {
    nodes = await Promise.all([startPushgateway(), startPushgateway(), startPushgateway()]);
    director = directorFromFlags(
      ['--mode=proxy', '--reconcile.interval=0', '--log.level=warn', `--ui.stale-after=${STALE_AFTER_S}s`, ...nodes.flatMap((n) => ['--node', n.url])],
      {},
      { fleetCacheMs: 0, fleetMaxStaleMs: 0, fleetClock: () => frozenAt ?? Date.now() },
    );
    url = `http://127.0.0.1:${(await director.listen()).port}`;
    // A group that stops pushing: wait until its last push is older than --ui.stale-after.
    await put(url, '/metrics/job/page_old/instance/cron-1', 'page_value 1\n');
    const pushedAt = Date.now();
    await until(() => Date.now() - pushedAt > (STALE_AFTER_S + 1) * 1000, 'the old group to age', 20_000);
    // Fresh groups, one of them with a hostile label value, and a misplaced copy of one of them.
    for (let i = 1; i <= 5; i++) await put(url, `/metrics/job/page_fresh/instance/web-${i}`, `page_value ${i}\n`);
    await put(url, `/metrics/job/page_hostile/x@base64/${b64(HOSTILE)}`, 'page_value 6\n');
    const moved = '/metrics/job/page_fresh/instance/web-1';
    strayNode = nodes.find((node) => node.url !== ownerUrl(moved)) as Pushgateway;
    await put(strayNode.url, moved, 'page_value 7\n');
    frozenAt = Date.now();
  });
  after(async () => {
    await director?.close();
    await Promise.all(nodes.map((node) => node.stop()));
  });

  it('shows the members, the pushed groups, a misplaced copy and a stale group, and escapes hostile labels', async () => {
    const answer = await httpRequest(`${url}/`);
    assert.match(String(answer.headers['content-security-policy']), /^default-src 'none'; style-src 'sha256-[A-Za-z0-9+/=]+'; /);
    const dom = await chromium(`${url}/`, { dumpDom: true });

    const members = rows(dom, 'nodes');
    assert.deepEqual(members.map((row) => row.node).sort(), nodes.map((node) => node.id).sort());
    for (const node of nodes) {
      const row = members.find((r) => r.node === node.id) as Row;
      assert.ok(row.html.includes(`<a href="${node.url}/">${node.id}</a>`), `no link to ${node.id}'s own UI: ${row.html}`);
      assert.match(row.text, /in ring \d+\.\d% \d+ \d+ listed/);
    }

    const groups = rows(dom, 'groups');
    const fresh = groups.filter((row) => row.text.startsWith('page_fresh '));
    assert.equal(fresh.length, 6, 'five fresh groups and one extra copy');
    for (let i = 2; i <= 5; i++) {
      const row = fresh.find((r) => r.text.includes(`instance="web-${i}"`));
      assert.ok(row && !row.classes.includes('misplaced') && !row.classes.includes('stale'), `web-${i}: ${JSON.stringify(row)}`);
    }
    const copies = fresh.filter((row) => row.text.includes('instance="web-1"'));
    const stray = copies.find((row) => row.node === strayNode.id);
    assert.ok(stray !== undefined && stray.classes.includes('misplaced'), JSON.stringify(copies));
    assert.match(stray.text, new RegExp(`misplaced: owner ${ownerUrl('/metrics/job/page_fresh/instance/web-1').slice('http://'.length)}`));
    assert.equal(copies.filter((row) => row.classes.includes('misplaced')).length, 1);

    const old = groups.find((row) => row.text.startsWith('page_old '));
    assert.ok(old !== undefined && old.classes.includes('stale'), JSON.stringify(old));
    assert.match(old.html, /<span class="mark stale">stale<\/span>/);

    // The hostile value is text on the page, never markup: the DOM holds no script and no img at all.
    assert.doesNotMatch(dom, /<script|<img/i);
    const hostile = groups.find((row) => row.text.startsWith('page_hostile '));
    // (The DOM serialiser writes a quote in text as is; the page sent it as &#34;.)
    assert.ok(hostile?.html.includes('x=""&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"'), hostile?.html);
  });

  it('filters with its GET form: by job, by label, by node, misplaced only, stale only', async () => {
    const dom = await chromium(`${url}/`, { dumpDom: true });
    const form = /<form class="filters" method="get" action="\/">[\s\S]*?<\/form>/.exec(dom)?.[0] ?? '';
    for (const name of ['job', 'label', 'node', 'misplaced', 'stale']) assert.match(form, new RegExp(`name="${name}"`));

    const byJob = rows(await chromium(`${url}/groups?job=page_fresh&label=&node=`, { dumpDom: true }), 'groups');
    assert.equal(byJob.length, 6);
    assert.ok(byJob.every((row) => row.text.startsWith('page_fresh ')));

    const byLabel = rows(await chromium(`${url}/groups?label=instance%3Dweb-3`, { dumpDom: true }), 'groups');
    assert.deepEqual(byLabel.map((row) => row.text.split(' ')[0]), ['page_fresh']);

    const misplaced = rows(await chromium(`${url}/?misplaced=1`, { dumpDom: true }), 'groups');
    assert.deepEqual(misplaced.map((row) => row.node), [strayNode.id]);

    const stale = rows(await chromium(`${url}/?stale=1&node=`, { dumpDom: true }), 'groups');
    assert.deepEqual(stale.map((row) => row.text.split(' ')[0]), ['page_old']);

    const onNode = rows(await chromium(`${url}/?node=${encodeURIComponent(strayNode.id)}`, { dumpDom: true }), 'groups');
    assert.ok(onNode.length > 0 && onNode.every((row) => row.node === strayNode.id));
  });

  it('renders for a laptop and a phone (screenshots in artefacts/)', async () => {
    mkdirSync(ARTEFACTS, { recursive: true });
    for (const [name, width, height] of [['laptop', 1366, 900], ['phone', 390, 1400]] as const) {
      const file = join(ARTEFACTS, `fleet-page-${name}.png`);
      await chromium(`${url}/`, { screenshot: file, width, height });
      const png = readFileSync(file);
      assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
      assert.equal(png.readUInt32BE(16), width, 'the screenshot has the window\'s width');
    }
  });
});
