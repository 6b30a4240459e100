import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { FALLBACK, fastCanonicalHash } from '../../../lib/core/fast-key';
import { parseGroupingKey } from '../../../lib/core/grouping-key';
import { canonicalKeyBytes } from '../../../lib/core/key-hash';
import { murmur3 } from '../../../lib/core/hash';

const corpus = JSON.parse(readFileSync(join(__dirname, '..', '..', '..', '..', 'spec', 'e2e', 'parser-corpus.json'), 'utf8')) as string[];

function reference(path: string): number {
  const parsed = parseGroupingKey(path);
  return parsed.ok ? murmur3(canonicalKeyBytes(parsed.key)) : FALLBACK;
}

function randomPath(random: () => number): string {
  const names = ['job', 'a', 'b', 'instance', 'A', '_x', '__x', 'a1', '1a', 'x-y', 'aa', 'ab', 'b'];
  const values = ['1', '2', 'v', 'host.example', 'a+b', '', '.', '..', 'x@y'];
  const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)] as T;
  let path = `/metrics/job/${pick(['j', 'job', 'x', ''])}`;
  const count = Math.floor(random() * 6);
  for (let i = 0; i < count; i++) path += `/${pick(names)}/${pick(values)}`;
  if (random() < 0.1) path += '/';
  if (random() < 0.1) path += '/dangling';
  return path;
}

describe('fastCanonicalHash', () => {
  it('hashes every plain corpus path exactly as the full parser does, and falls back on the rest', () => {
    let fast = 0;
    for (const path of corpus) {
      const h = fastCanonicalHash(path);
      if (h === FALLBACK) continue;
      fast++;
      assert.equal(h, reference(path), path);
    }
    assert.ok(fast > 20, `only ${fast} corpus paths took the fast lane`);
  });

  it('agrees with the full parser on 20,000 random paths: repeated names, job labels, odd counts', () => {
    let seed = 7;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    let fast = 0;
    for (let i = 0; i < 20000; i++) {
      const path = randomPath(random);
      const h = fastCanonicalHash(path);
      if (h === FALLBACK) continue;
      fast++;
      assert.equal(h, reference(path), path);
    }
    assert.ok(fast > 2000, `only ${fast} random paths took the fast lane`);
  });

  const fallbacks = ['/metrics/job/a%20b', '/metrics/job/a/x@base64/YQ', '/metrics/job/a/x//y/1', '/metrics/job/a/x/.', '/metrics/job/a/x', '/metrics/job/a/x/1/', '/metrics/job/', '/metrics/jobs/a', '/metrics/job/a/__x/1', '/metrics/job/a/a-b/1'];
  for (const path of fallbacks) {
    it(`leaves ${path} to the full parser`, () => assert.equal(fastCanonicalHash(path), FALLBACK));
  }
});
