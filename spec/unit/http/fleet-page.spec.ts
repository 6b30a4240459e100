import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';

import type { FleetCopy } from '../../../lib/core/fleet';
import { FLEET_PAGE_CSP, type NodeLine, type PageModel, escapeHtml, formatAge, renderFleetPage } from '../../../lib/http/fleet-page';

const HOSTILE = `"'><script>alert(1)</script>&amp;`;
const node = { id: '127.0.0.1:9091', url: 'http://127.0.0.1:9091' };
const line: NodeLine = { node, role: 'member', share: 1, reachable: true, error: undefined, listedAt: 0, groups: 1, misplaced: 0, health: 'in ring' };
const copy = (labels: Record<string, string>, pushTime: number): FleetCopy => ({
  group: { labels, identity: JSON.stringify(labels), lastPushSuccessful: true, pushTime, json: new Uint8Array() },
  node,
  owner: node,
  misplaced: false,
  identity: JSON.stringify(labels),
  job: labels['job'] ?? '',
});
const model = (over: Partial<PageModel> = {}): PageModel => ({
  path: '/',
  nowMs: 10_000_000,
  staleAfterMs: 3_600_000,
  nodes: [line],
  groups: 1,
  copies: 1,
  query: { job: undefined, labels: {}, node: undefined, misplaced: false, stale: false, offset: 0, limit: 100 },
  total: 1,
  rows: [copy({ job: 'j', instance: 'i' }, 9_990)],
  ...over,
});

describe('the fleet page', () => {
  it('escapes every character that could end text or an attribute', () => {
    assert.equal(escapeHtml(HOSTILE), '&#34;&#39;&#62;&#60;script&#62;alert(1)&#60;/script&#62;&#38;amp;');
  });

  it('never lets a label, a job, a node error or a filter value become markup', () => {
    const html = renderFleetPage(
      model({
        nodes: [{ ...line, reachable: false, error: HOSTILE }],
        rows: [copy({ job: HOSTILE, [`x`]: HOSTILE }, 9_990)],
        query: { job: HOSTILE, labels: { x: HOSTILE }, node: HOSTILE, misplaced: false, stale: false, offset: 0, limit: 100 },
      }),
    );
    assert.doesNotMatch(html, /<script/);
    assert.doesNotMatch(html, /"'>/);
    assert.ok(html.split(escapeHtml(HOSTILE)).length >= 5);
  });

  it('allows exactly its own style sheet in the Content-Security-Policy', () => {
    const html = renderFleetPage(model());
    const css = /<style>([\s\S]*?)<\/style>/.exec(html)?.[1] ?? '';
    assert.ok(FLEET_PAGE_CSP.includes(`style-src 'sha256-${createHash('sha256').update(css).digest('base64')}'`));
    assert.match(FLEET_PAGE_CSP, /^default-src 'none'; /);
    assert.doesNotMatch(html, /<script|<link|src=|style="/);
  });

  it('marks stale groups and links pages with the filters kept', () => {
    const rows = Array.from({ length: 100 }, (_, i) => copy({ job: 'j', i: String(i) }, i === 0 ? 1 : 9_990));
    const html = renderFleetPage(
      model({ rows, total: 250, query: { job: 'a b', labels: { env: 'x&y' }, node: undefined, misplaced: true, stale: false, offset: 100, limit: 100 } }),
    );
    assert.equal(html.match(/<span class="mark stale">/g)?.length, 1);
    assert.ok(html.includes('rel="prev" href="/?job=a+b&#38;label=env%3Dx%26y&#38;misplaced=1"'));
    assert.ok(html.includes('rel="next" href="/?job=a+b&#38;label=env%3Dx%26y&#38;misplaced=1&#38;page=3"'));
    assert.match(html, /copies 101–200 of 250/);
    assert.match(html, /page 2 of 3/);
  });

  it('renders ages in two units at most', () => {
    assert.deepEqual([0, 59_999, 60_000, 61_000, 3_600_000, 3_660_000, 90_000_000].map(formatAge), ['0s', '59s', '1m', '1m 1s', '1h', '1h 1m', '1d 1h']);
  });
});
