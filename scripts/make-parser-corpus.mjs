// Writes spec/e2e/parser-corpus.json: push paths for the differential test of the grouping-key parser against a
// real Pushgateway. Hand-picked cases first, then generated ones (seeded, so the file is reproducible).
import { writeFileSync } from 'node:fs';

const handPicked = [
  '/metrics/job/j', '/metrics/job/j/', '/metrics/job/j/instance/i1', '/metrics/job/j/a/1/b/2', '/metrics/job/j/b/2/a/1',
  '/metrics/job@base64/YQ', '/metrics/job@base64/YQ==', '/metrics/job@base64/YQ=', '/metrics/job@base64/=', '/metrics/job@base64/==',
  '/metrics/job@base64/dGVzdC9qb2I=', '/metrics/job@base64/dGVzdC9qb2I', '/metrics/job@base64/a+b', '/metrics/job@base64/a*b',
  '/metrics/job@base64/Y', '/metrics/job/j/x@base64/YQ', '/metrics/job/j/x@base64/YQ==', '/metrics/job/j/x@base64/=',
  '/metrics/job/j/x@base64/a+b', '/metrics/job/j/x@base64/a%2Fb', '/metrics/job/j/x@base64/YWJjZ', '/metrics/job/j/x@base64/_-8',
  '/metrics/job/j/x@base64/YQ=Q', '/metrics/job/j/x@base64@base64/YQ', '/metrics/job/j/__x/1', '/metrics/job/j/__x@base64/YQ',
  '/metrics/job/j/_x/1', '/metrics/job/j/a-b/1', '/metrics/job/j/1a/1', '/metrics/job/j/a.b/1', '/metrics/job/j/%C3%A9/1',
  '/metrics/job/j/x', '/metrics/job/j/x/1/', '/metrics/job/j/x/1/y', '/metrics/job/j/x/1/y/', '/metrics/job/j/x/1/x/2',
  '/metrics/job/j/job/other', '/metrics/job/j/job@base64/b3RoZXI', '/metrics/job/j/v/a+b', '/metrics/job/j/v/a%20b',
  '/metrics/job/j/v/a%2Bb', '/metrics/job/j/v/%CE%A0', '/metrics/job/%CE%A0', '/metrics/job/j/v/%E2%82%AC', '/metrics/job/p%2Fq',
  '/metrics/job/p%2Fq/r', '/metrics/job/j/v/x%2Fy', '/metrics/job/j/v/%2F', '/metrics/job/j/x//y/1', '/metrics/job//x/1',
  '/metrics/job/j/x/%2E%2E', '/metrics/job/%2E%2E/x/1', '/metrics/job/j/x/./y/1', '/metrics/job/j/x/.', '/metrics/job/.',
  '/metrics/job/j/x/..a', '/metrics/job/j/x/a..', '/metrics/job/', '/metrics/job', '/metrics/jobs/a', '/metrics/job/j/x/%zz',
  '/metrics/job/j/x/%2', '/metrics/job/j/x/a%', '/metrics/job/j/v/%00', '/metrics/job/j/v/%7F', '/metrics/job/j/v/%09',
  '/metrics/job/j/instance/', '/metrics/job/j/instance@base64/', '/metrics/job/j/le/0.5', '/metrics/job/j/quantile/0.99',
  '/metrics/job/j/__name__/x', '/metrics/job/j/x@base64/YQ%0A', '/metrics/job/j/X/1/x/2', '/metrics/job/j/a/%3D', '/metrics/job/j/a/=',
  '/metrics/job/j/a/==', '/metrics/job/j/a@base64/==', '/metrics/job/j/a/@base64', '/metrics/job/j@base64/x/1',
  '/metrics/job/j/a@BASE64/YQ', '/metrics/job/j/a/%40base64', '/metrics/job/j/a%40base64/YQ', '/metrics/job/j/a/b%3Fc',
  '/metrics/job/j/a/b;c', '/metrics/job/j/a/b,c', '/metrics/job/j/a/b:c', '/metrics/job/j/a/~', '/metrics/job/j/a/%7E',
];

let seed = 42;
const random = () => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return seed / 2 ** 31;
};
const pick = (items) => items[Math.floor(random() * items.length)];
const b64 = (text, pad) => {
  const s = Buffer.from(text, 'utf8').toString('base64url');
  return pad ? s + '='.repeat((4 - (s.length % 4)) % 4) : s;
};
const values = ['a', 'a+b', 'a%20b', 'Z%C3%BCrich', 'x%2Fy', '0.5', 'host-1.example', 'v_1', '%F0%9F%98%80', 'UPPER'];
const names = ['x', 'instance', 'zone', 'shard', '_private', 'Mixed_Case', 'job', 'le'];
const badNames = ['__x', 'a-b', '1a', 'x.y', '%C3%A9'];
const jobs = ['backup', 'nightly_report', 'a%20b', 'Z%C3%BCrich'];

const generated = new Set();
while (generated.size < 170) {
  const count = Math.floor(random() * 4);
  const job = random() < 0.25 ? `@base64/${b64(decodeURIComponent(pick(jobs)), random() < 0.5)}` : `/${pick(jobs)}`;
  let path = `/metrics/job${job}`;
  for (let i = 0; i < count; i++) {
    const roll = random();
    const name = roll < 0.06 ? pick(badNames) : pick(names);
    const raw = decodeURIComponent(pick(values));
    if (roll > 0.94) path += `/${name}@base64/${pick(['a+b', '!!', 'Y', 'YQ=Q'])}`;
    else if (roll > 0.6) path += `/${name}@base64/${b64(raw, random() < 0.5)}`;
    else if (roll > 0.55) path += `/${name}@base64/=`;
    else path += `/${name}/${pick(values)}`;
  }
  if (random() < 0.05) path += '/';
  if (random() < 0.04) path += '/odd';
  generated.add(path);
}

const corpus = [...new Set([...handPicked, ...generated])];
writeFileSync(new URL('../spec/e2e/parser-corpus.json', import.meta.url), `${JSON.stringify(corpus, null, 1)}\n`);
console.log(`wrote ${corpus.length} paths`);
