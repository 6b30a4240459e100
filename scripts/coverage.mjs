#!/usr/bin/env node
// Line coverage of chosen compiled files from raw V8 coverage, without c8: Node 20's --experimental-test-coverage
// stops at this project's source maps ("Cannot read properties of undefined (reading 'line')").
//
//   NODE_V8_COVERAGE=/tmp/cov node --test dist/spec/...   (any runs; their files accumulate in the directory)
//   node scripts/coverage.mjs /tmp/cov dist/lib/reconcile.js dist/lib/reconcile/
//
// A line counts when it holds code (not blank, not only a brace or a comment). It is covered when the innermost V8
// range around its first character ran at least once, merged over every process that loaded the file.
import { readFileSync, readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [dir, ...targets] = process.argv.slice(2);
if (dir === undefined || targets.length === 0) {
  console.error('usage: coverage.mjs COVERAGE_DIR FILE_OR_DIR_PREFIX...');
  process.exit(2);
}
const prefixes = targets.map((target) => pathToFileURL(resolve(target)).href + (target.endsWith('/') ? '/' : ''));

/** @type {Map<string, {ranges: {start: number, end: number, count: number}[]}[]>} */
const byFile = new Map();
for (const name of readdirSync(dir)) {
  if (!name.endsWith('.json')) continue;
  const doc = JSON.parse(readFileSync(`${dir}/${name}`, 'utf8'));
  for (const script of doc.result ?? []) {
    if (!prefixes.some((prefix) => script.url === prefix || (prefix.endsWith('/') && script.url.startsWith(prefix)))) continue;
    const ranges = script.functions.flatMap((fn) => fn.ranges.map((r) => ({ start: r.startOffset, end: r.endOffset, count: r.count })));
    byFile.set(script.url, [...(byFile.get(script.url) ?? []), { ranges }]);
  }
}

let total = 0;
let covered = 0;
for (const [url, runs] of [...byFile.entries()].sort()) {
  const source = readFileSync(new URL(url), 'utf8');
  let offset = 0;
  let lines = 0;
  let hit = 0;
  const missed = [];
  source.split('\n').forEach((line, i) => {
    const trimmed = line.trim();
    const first = offset + (line.length - line.trimStart().length);
    offset += line.length + 1;
    if (trimmed === '' || /^[{}()[\];,]*$/.test(trimmed) || trimmed.startsWith('//') || trimmed.startsWith('*') || trimmed.startsWith('/*')) return;
    if (trimmed.startsWith('"use strict"') || trimmed.startsWith('Object.defineProperty(exports')) return;
    lines++;
    const ran = runs.some(({ ranges }) => {
      let best;
      for (const range of ranges) {
        if (range.start <= first && first < range.end && (best === undefined || range.end - range.start <= best.end - best.start)) best = range;
      }
      return best !== undefined && best.count > 0;
    });
    if (ran) hit++;
    else missed.push(i + 1);
  });
  total += lines;
  covered += hit;
  const name = url.slice(url.indexOf('/dist/') + 1);
  console.log(`${name}\t${((100 * hit) / lines).toFixed(1)}% of ${lines} lines${missed.length > 0 ? `\tmissed: ${missed.join(',')}` : ''}`);
}
if (total > 0) console.log(`all\t${((100 * covered) / total).toFixed(1)}% of ${total} lines`);
else console.log('no matching file was loaded');
