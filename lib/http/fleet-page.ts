/**
 * The fleet page: server-rendered HTML, no script, no framework, no external asset. Its only style sheet is inline
 * and allowed by its hash in the Content-Security-Policy the page is sent with, so the page works on a network with
 * no internet and under `default-src 'none'`. Every piece of text from a node (labels above all) is escaped.
 * Filters are a GET form; pages are plain links. Pure rendering: the router hands in the model.
 */
import { createHash } from 'node:crypto';

import type { FleetCopy, FleetQuery, NodeSummary } from '../core/fleet';

/** NodeLine is a node's summary with its health as the page shows it (`up`, `down`, `in ring`, `draining`). */
export type NodeLine = NodeSummary & Readonly<{ health: string }>;

/** PageModel is what one rendering of the fleet page shows. */
export type PageModel = Readonly<{
  /** The path the page was asked for (`/` or `/groups`): the form and the page links point back at it. */
  path: string;
  nowMs: number;
  staleAfterMs: number;
  nodes: readonly NodeLine[];
  /** Distinct groups in the fleet, and copies of them. */
  groups: number;
  copies: number;
  query: FleetQuery;
  /** The copies the filter selects (`total`) and the page of them shown (`rows`). */
  total: number;
  rows: readonly FleetCopy[];
}>;

const CSS = `
:root{color-scheme:light dark;--fg:#1d2330;--muted:#5d6675;--bg:#fff;--panel:#f5f7fa;--line:#dde2ea;--accent:#1f6feb;
--warn-bg:#fff4d6;--warn-fg:#7a4b00;--bad-bg:#ffe3e0;--bad-fg:#a1160a;--ok-bg:#e2f5e6;--ok-fg:#1a6b2d}
@media (prefers-color-scheme:dark){:root{--fg:#e6e9ef;--muted:#9aa4b2;--bg:#111418;--panel:#1a1f26;--line:#2c333d;
--accent:#6ea8ff;--warn-bg:#3d3114;--warn-fg:#ffd27a;--bad-bg:#401a17;--bad-fg:#ff9c90;--ok-bg:#173421;--ok-fg:#8fe0a4}}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:var(--bg)}
header{padding:14px 20px;border-bottom:1px solid var(--line);background:var(--panel)}
header h1{margin:0;font-size:19px;font-weight:600}
header p{margin:4px 0 0;color:var(--muted)}
main{padding:16px 20px;max-width:1400px}
h2{font-size:16px;margin:22px 0 10px}
a{color:var(--accent)}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:baseline}
th{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
code,.labels{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
.labels{overflow-wrap:anywhere}
.muted{color:var(--muted)}
footer{padding:10px 20px 24px;color:var(--muted);font-size:13px}
.label{display:inline-block;margin:0 6px 2px 0}
.mark{display:inline-block;border-radius:4px;padding:0 6px;font-size:12px;font-weight:600;margin:0 4px 2px 0;white-space:nowrap}
.mark.misplaced{background:var(--warn-bg);color:var(--warn-fg)}
.mark.stale,.mark.failed,.mark.down{background:var(--bad-bg);color:var(--bad-fg)}
.mark.up,.mark.ok{background:var(--ok-bg);color:var(--ok-fg)}
.mark.in-ring,.mark.draining{background:var(--panel);color:var(--muted);border:1px solid var(--line)}
tr.misplaced td:first-child{box-shadow:inset 3px 0 var(--warn-fg)}
tr.stale td:first-child{box-shadow:inset 3px 0 var(--bad-fg)}
.error{color:var(--bad-fg)}
form.filters{display:flex;flex-wrap:wrap;gap:10px 14px;align-items:flex-end;padding:12px;background:var(--panel);border:1px solid var(--line);border-radius:6px}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:var(--muted);gap:3px}
form.filters label.check{flex-direction:row;align-items:center;gap:6px;font-size:14px;color:var(--fg)}
input[type=text],select{font:inherit;padding:5px 8px;border:1px solid var(--line);border-radius:4px;background:var(--bg);color:var(--fg);min-width:10em}
button{font:inherit;padding:5px 14px;border:0;border-radius:4px;background:var(--accent);color:#fff;cursor:pointer}
.summary{color:var(--muted);margin:12px 0 6px}
nav.pages{display:flex;gap:16px;margin:12px 0}
.scroll{overflow-x:auto}
@media (max-width:700px){
body{font-size:14px}header,main{padding-left:12px;padding-right:12px}
table.stack thead{display:none}
table.stack tr{display:block;border:1px solid var(--line);border-radius:6px;margin:0 0 10px;padding:4px 0}
table.stack td{display:flex;gap:10px;border:0;padding:3px 10px}
table.stack td::before{content:attr(data-label);flex:0 0 6.5em;color:var(--muted);font-size:12px;text-transform:uppercase}
table.stack td.num{text-align:left}
table.stack td:empty{display:none}
table.stack tr.misplaced{border-left:4px solid var(--warn-fg)}
table.stack tr.stale{border-left:4px solid var(--bad-fg)}
table.stack tr td:first-child{box-shadow:none}
form.filters label{flex:1 1 40%}
input[type=text],select{min-width:0;width:100%}
}
`;

/** FLEET_PAGE_CSP is the page's Content-Security-Policy: nothing but its own inline style sheet, by hash. */
export const FLEET_PAGE_CSP = [
  "default-src 'none'",
  `style-src 'sha256-${createHash('sha256').update(CSS).digest('base64')}'`,
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** escapeHtml escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** formatAge renders a duration in the largest two units: `42s`, `5m 3s`, `3h 2m`, `4d 3h`. */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const two = (big: number, bigUnit: string, small: number, smallUnit: string): string =>
    small === 0 ? `${big}${bigUnit}` : `${big}${bigUnit} ${small}${smallUnit}`;
  if (s < 3600) return two(Math.floor(s / 60), 'm', s % 60, 's');
  if (s < 86_400) return two(Math.floor(s / 3600), 'h', Math.floor((s % 3600) / 60), 'm');
  return two(Math.floor(s / 86_400), 'd', Math.floor((s % 86_400) / 3600), 'h');
}

function link(path: string, query: FleetQuery, page: number): string {
  const params = new URLSearchParams();
  if (query.job !== undefined) params.append('job', query.job);
  for (const [name, value] of Object.entries(query.labels)) params.append('label', `${name}=${value}`);
  if (query.node !== undefined) params.append('node', query.node);
  if (query.misplaced) params.append('misplaced', '1');
  if (query.stale) params.append('stale', '1');
  if (page > 1) params.append('page', String(page));
  const search = params.toString();
  return escapeHtml(search === '' ? path : `${path}?${search}`);
}

function healthClass(health: string): string {
  return health.replace(/[^a-z]+/g, '-');
}

function nodeRow(line: NodeLine): string {
  const listing = line.reachable
    ? '<span class="mark ok">listed</span>'
    : `<span class="mark down">unreachable</span> <span class="error">${escapeHtml(line.error ?? '')}</span>`;
  return (
    `<tr class="node${line.reachable ? '' : ' unreachable'}" data-node="${escapeHtml(line.node.id)}">` +
    `<td data-label="node"><a href="${escapeHtml(line.node.url)}/">${escapeHtml(line.node.id)}</a></td>` +
    `<td data-label="health"><span class="mark ${healthClass(line.health)}">${escapeHtml(line.health)}</span></td>` +
    `<td data-label="share" class="num">${line.role === 'member' ? `${(line.share * 100).toFixed(1)}%` : '–'}</td>` +
    `<td data-label="groups" class="num">${line.reachable ? line.groups : '?'}</td>` +
    `<td data-label="misplaced" class="num">${line.reachable ? line.misplaced : '?'}</td>` +
    `<td data-label="listing">${listing}</td></tr>`
  );
}

function labelsCell(labels: Readonly<Record<string, string>>): string {
  const parts = Object.keys(labels)
    .filter((name) => name !== 'job')
    .sort()
    .map((name) => `<span class="label">${escapeHtml(name)}="${escapeHtml(labels[name] as string)}"</span>`);
  return parts.length === 0 ? '<span class="muted">–</span>' : parts.join('');
}

function groupRow(copy: FleetCopy, model: PageModel): string {
  const { group } = copy;
  const stale = group.pushTime <= 0 || model.nowMs - group.pushTime * 1000 > model.staleAfterMs;
  const marks: string[] = [];
  if (copy.misplaced) marks.push(`<span class="mark misplaced" title="owner ${escapeHtml(copy.owner?.id ?? '')}">misplaced: owner ${escapeHtml(copy.owner?.id ?? '')}</span>`);
  if (stale) marks.push('<span class="mark stale">stale</span>');
  if (!group.lastPushSuccessful) marks.push('<span class="mark failed">last push failed</span>');
  const age = group.pushTime > 0 ? `${formatAge(model.nowMs - group.pushTime * 1000)} ago` : 'never';
  const when = group.pushTime > 0 ? new Date(group.pushTime * 1000).toISOString() : '';
  const classes = ['group', ...(copy.misplaced ? ['misplaced'] : []), ...(stale ? ['stale'] : [])].join(' ');
  return (
    `<tr class="${classes}" data-node="${escapeHtml(copy.node.id)}">` +
    `<td data-label="job"><code>${escapeHtml(copy.job)}</code></td>` +
    `<td data-label="labels" class="labels">${labelsCell(group.labels)}</td>` +
    `<td data-label="node"><a href="${escapeHtml(copy.node.url)}/">${escapeHtml(copy.node.id)}</a></td>` +
    `<td data-label="last push"><time datetime="${when}" title="${when}">${age}</time></td>` +
    `<td data-label="marks">${marks.join('')}</td></tr>`
  );
}

/** renderFleetPage returns the whole page. */
export function renderFleetPage(model: PageModel): string {
  const { query, path } = model;
  const page = Math.floor(query.offset / query.limit) + 1;
  const pages = Math.max(1, Math.ceil(model.total / query.limit));
  const members = model.nodes.filter((line) => line.role === 'member').length;
  const draining = model.nodes.length - members;
  const unreachable = model.nodes.filter((line) => !line.reachable).length;
  const misplaced = model.nodes.reduce((sum, line) => sum + line.misplaced, 0);
  const nodeOptions = model.nodes
    .map((line) => `<option value="${escapeHtml(line.node.id)}"${query.node === line.node.id ? ' selected' : ''}>${escapeHtml(line.node.id)}</option>`)
    .join('');
  const labelValue = Object.entries(query.labels).map(([name, value]) => `${name}=${value}`)[0] ?? '';
  const listedAgo = model.nodes.reduce((oldest, line) => Math.max(oldest, model.nowMs - line.listedAt), 0);
  const first = model.total === 0 ? 0 : query.offset + 1;
  const last = Math.min(model.total, query.offset + model.rows.length);
  const pageLinks = [
    page > 1 ? `<a rel="prev" href="${link(path, query, page - 1)}">← previous</a>` : '',
    `<span>page ${page} of ${pages}</span>`,
    page < pages ? `<a rel="next" href="${link(path, query, page + 1)}">next →</a>` : '',
  ].join('');
  const summary = [
    `${members} member${members === 1 ? '' : 's'}`,
    ...(draining > 0 ? [`${draining} draining`] : []),
    `${model.groups} group${model.groups === 1 ? '' : 's'} in ${model.copies} cop${model.copies === 1 ? 'y' : 'ies'}`,
    `${misplaced} misplaced`,
    ...(unreachable > 0 ? [`<span class="error">${unreachable} unreachable</span>`] : []),
    `stale after ${formatAge(model.staleAfterMs)}`,
  ].join(' · ');

  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Pushgateway fleet · pgw-director</title>
<style>${CSS}</style>
</head>
<body>
<header><h1>Pushgateway fleet</h1><p id="fleet-summary">${summary}</p></header>
<main>
<h2>Nodes</h2>
<div class="scroll"><table class="stack" id="nodes">
<thead><tr><th>node (its own UI)</th><th>health</th><th class="num">share</th><th class="num">groups</th><th class="num">misplaced</th><th>listing</th></tr></thead>
<tbody>${model.nodes.map(nodeRow).join('\n') || '<tr><td colspan="6">no pushgateway nodes available</td></tr>'}</tbody>
</table></div>
<h2>Groups</h2>
<form class="filters" method="get" action="${escapeHtml(path)}">
<label>job<input type="text" name="job" value="${escapeHtml(query.job ?? '')}" placeholder="exact job name"></label>
<label>label<input type="text" name="label" value="${escapeHtml(labelValue)}" placeholder="name=value"></label>
<label>node<select name="node"><option value="">all nodes</option>${nodeOptions}</select></label>
<label class="check"><input type="checkbox" name="misplaced" value="1"${query.misplaced ? ' checked' : ''}>misplaced only</label>
<label class="check"><input type="checkbox" name="stale" value="1"${query.stale ? ' checked' : ''}>stale only</label>
<button type="submit">Filter</button> <a href="${escapeHtml(path)}">clear</a>
</form>
<p class="summary" id="groups-summary">${model.total === 0 ? 'no copies match' : `copies ${first}–${last} of ${model.total}`}</p>
<div class="scroll"><table class="stack" id="groups">
<thead><tr><th>job</th><th>labels</th><th>node</th><th>last push</th><th>marks</th></tr></thead>
<tbody>
${model.rows.map((copy) => groupRow(copy, model)).join('\n')}
</tbody>
</table></div>
<nav class="pages">${pageLinks}</nav>
</main>
<footer>Listings are at most ${formatAge(listedAgo)} old. The same data as JSON: <a href="/api/v1/fleet/groups">/api/v1/fleet/groups</a> (every copy) and <a href="/api/v1/metrics">/api/v1/metrics</a> (the Pushgateway's API, newest copy of each group).</footer>
</body>
</html>
`;
}
