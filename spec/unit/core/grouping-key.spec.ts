import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { decodeBase64, parseGroupingKey, toDisplayLabels } from '../../../lib/core/grouping-key';
import { canonicalKey } from '../../../lib/core/key-hash';

type Accepted = { name: string; path: string; labels: Record<string, string> };
type Rejected = { name: string; path: string; status: number; message: string };

// The Pushgateway's splitLabels cases (handler/push.go), reached through full push paths, plus its routing rules.
const accepted: Accepted[] = [
  { name: 'reads a job alone', path: '/metrics/job/j', labels: { job: 'j' } },
  { name: 'allows one trailing slash after the job', path: '/metrics/job/j/', labels: { job: 'j' } },
  { name: 'reads one label pair', path: '/metrics/job/j/instance/i1', labels: { job: 'j', instance: 'i1' } },
  {
    name: 'reads several label pairs',
    path: '/metrics/job/j/label_name1/label_value1/label_name2/label_value2',
    labels: { job: 'j', label_name1: 'label_value1', label_name2: 'label_value2' },
  },
  { name: 'decodes a base64 label value', path: '/metrics/job/j/a@base64/Zm9vL2Jhcg', labels: { job: 'j', a: 'foo/bar' } },
  { name: 'ignores base64 padding', path: '/metrics/job/j/a@base64/YQ==', labels: { job: 'j', a: 'a' } },
  { name: 'takes a lone = as the empty value', path: '/metrics/job/j/a@base64/=', labels: { job: 'j', a: '' } },
  { name: 'takes == as the empty value too', path: '/metrics/job/j/a@base64/==', labels: { job: 'j', a: '' } },
  { name: 'decodes a base64 job', path: '/metrics/job@base64/dGVzdC9qb2I=', labels: { job: 'test/job' } },
  { name: 'percent-decodes before splitting', path: '/metrics/job/j/v/a%20b', labels: { job: 'j', v: 'a b' } },
  { name: 'keeps + as a literal +', path: '/metrics/job/j/v/a+b', labels: { job: 'j', v: 'a+b' } },
  { name: 'decodes percent-encoded UTF-8', path: '/metrics/job/j/v/%CE%A0', labels: { job: 'j', v: 'Π' } },
  { name: 'lets the last of repeated labels win', path: '/metrics/job/j/x/1/x/2', labels: { job: 'j', x: '2' } },
  { name: 'lets the path job override a job label', path: '/metrics/job/d2/job/other', labels: { job: 'd2' } },
  { name: 'takes a trailing empty value as empty', path: '/metrics/job/j/y/', labels: { job: 'j', y: '' } },
  { name: 'skips CR and LF in base64 like Go', path: '/metrics/job/j/x@base64/YQ%0A', labels: { job: 'j', x: 'a' } },
];

const rejected: Rejected[] = [
  { name: 'rejects an odd number of components', path: '/metrics/job/j/a', status: 400, message: 'odd number of components in label string "/a"' },
  {
    name: 'rejects a trailing slash after a pair',
    path: '/metrics/job/j/x/1/',
    status: 400,
    message: 'odd number of components in label string "/x/1/"',
  },
  { name: 'rejects a reserved label name', path: '/metrics/job/j/__x/1', status: 400, message: 'improper label name "__x"' },
  { name: 'rejects a dash in a label name', path: '/metrics/job/j/a-b/1', status: 400, message: 'improper label name "a-b"' },
  { name: 'rejects a leading digit', path: '/metrics/job/j/1abc/1', status: 400, message: 'improper label name "1abc"' },
  {
    name: 'rejects a reserved name behind @base64',
    path: '/metrics/job/j/__a@base64/YQ',
    status: 400,
    message: 'improper label name "__a"',
  },
  {
    name: 'rejects the standard base64 alphabet',
    path: '/metrics/job/j/x@base64/a+b',
    status: 400,
    message: 'invalid base64 encoding for label x="a+b": illegal base64 data at input byte 1',
  },
  {
    name: 'rejects a lone base64 character',
    path: '/metrics/job/j/x@base64/YWJjZ',
    status: 400,
    message: 'invalid base64 encoding for label x="YWJjZ": illegal base64 data at input byte 4',
  },
  {
    name: 'rejects bad base64 in the job',
    path: '/metrics/job@base64/a*b',
    status: 400,
    // The Pushgateway quotes what Go decoded before the error: nothing here.
    message: 'invalid base64 encoding in job name "": illegal base64 data at input byte 1',
  },
  {
    name: 'quotes the whole quanta decoded before a base64 error, as Go does',
    path: '/metrics/job@base64/YWJjZ',
    status: 400,
    message: 'invalid base64 encoding in job name "abc": illegal base64 data at input byte 4',
  },
  { name: 'rejects an empty base64 job', path: '/metrics/job@base64/=', status: 400, message: 'job name is required' },
  { name: 'rejects a missing job', path: '/metrics/job/', status: 400, message: 'job name is required' },
  {
    name: 'rejects an empty segment, telling how to send empty values',
    path: '/metrics/job/a/x//y/2',
    status: 400,
    message: 'empty path segment in "/metrics/job/a/x//y/2": encode an empty job or label value as "@base64/="',
  },
  {
    name: 'rejects a %2F that makes an empty segment',
    path: '/metrics/job/a/x/%2F',
    status: 400,
    message: 'empty path segment in "/metrics/job/a/x//": encode an empty job or label value as "@base64/="',
  },
  {
    name: 'rejects %2F that splits a value into an odd count',
    path: '/metrics/job/p%2Fq',
    status: 400,
    message: 'odd number of components in label string "/q"',
  },
  {
    name: 'rejects dot-dot segments, even encoded',
    path: '/metrics/job/%2E%2E/x/1',
    status: 400,
    message: 'path "/metrics/job/../x/1" is not canonical: "." and ".." segments are not allowed',
  },
  {
    name: 'trims only one @base64 suffix',
    path: '/metrics/job/j/a@base64@base64/x',
    status: 400,
    message: 'improper label name "a@base64"',
  },
  { name: 'rejects an invalid escape', path: '/metrics/job/a/x/ab%zz', status: 400, message: 'invalid URL escape "%zz"' },
  { name: 'rejects a truncated escape', path: '/metrics/job/a/x/ab%2', status: 400, message: 'invalid URL escape "%2"' },
  { name: 'answers 404 for /metrics/job itself', path: '/metrics/job', status: 404, message: '404 page not found' },
  { name: 'answers 404 for other /metrics paths', path: '/metrics/jobs/a', status: 404, message: '404 page not found' },
];

describe('parseGroupingKey', () => {
  for (const c of accepted) {
    it(c.name, () => {
      const result = parseGroupingKey(c.path);
      assert.ok(result.ok, `expected ${c.path} to be accepted, got ${JSON.stringify(result)}`);
      assert.deepEqual(toDisplayLabels(result.key), c.labels);
    });
  }
  for (const c of rejected) {
    it(c.name, () => {
      assert.deepEqual(parseGroupingKey(c.path), { ok: false, status: c.status, message: c.message });
    });
  }

  const notUtf8: [string, string][] = [
    ['/metrics/job/a/x/%C0%AF', 'label x has a value that is not valid UTF-8: "\\xc0\\xaf"'],
    ['/metrics/job/a/x/%ED%A0%80', 'label x has a value that is not valid UTF-8: "\\xed\\xa0\\x80"'],
    ['/metrics/job/a/x/%E2%82', 'label x has a value that is not valid UTF-8: "\\xe2\\x82"'],
    ['/metrics/job/a/x/%F4%90%80%80', 'label x has a value that is not valid UTF-8: "\\xf4\\x90\\x80\\x80"'],
    ['/metrics/job/a/x@base64/_w', 'label x has a value that is not valid UTF-8: "\\xff"'],
    ['/metrics/job/%FF', 'job name "\\xff" is not valid UTF-8'],
  ];
  for (const [path, message] of notUtf8) {
    it(`refuses a value that is not UTF-8: ${path}`, () => assert.deepEqual(parseGroupingKey(path), { ok: false, status: 400, message }));
  }

  it('accepts four-byte UTF-8', () => {
    const result = parseGroupingKey('/metrics/job/a/x/%F0%9F%98%80');
    assert.ok(result.ok);
    assert.deepEqual(toDisplayLabels(result.key), { job: 'a', x: '😀' });
  });

  it('sorts thousands of labels once, keeping the last of each name', () => {
    let path = '/metrics/job/j';
    for (let i = 0; i < 3000; i++) path += `/l${3000 - i}/v${i}`;
    path += '/l5/last/job/ignored';
    const result = parseGroupingKey(path);
    assert.ok(result.ok);
    const labels = toDisplayLabels(result.key);
    assert.equal(Object.keys(labels).length, 3001);
    assert.equal(labels['l5'], 'last');
    assert.equal(labels['job'], 'j');
    const names = result.key.pairs.filter((_, i) => i % 2 === 0);
    assert.deepEqual(names, [...names].sort());
  });

  it('reads raw non-ASCII bytes (latin1 code units from Node) like percent-encoded ones', () => {
    const raw = parseGroupingKey('/metrics/job/j/v/\xce\xa0');
    assert.ok(raw.ok);
    assert.deepEqual(toDisplayLabels(raw.key), { job: 'j', v: 'Π' });
  });
});

describe('canonical key', () => {
  const key = (path: string): string => {
    const result = parseGroupingKey(path);
    assert.ok(result.ok, path);
    return canonicalKey(result.key);
  };

  it('is the same whatever the label order and spelling', () => {
    const expected = 'job\\xffa\\xffx\\xff1\\xffy\\xff2\\xff';
    assert.equal(key('/metrics/job/a/x/1/y/2'), expected);
    assert.equal(key('/metrics/job/a/y/2/x/1'), expected);
    assert.equal(key('/metrics/job@base64/YQ/y@base64/Mg==/x/1'), expected);
    assert.equal(key('/metrics/job/a/y@base64/Mg/x@base64/MQ=='), expected);
  });

  it('treats the spellings every client uses for one value alike', () => {
    // Python and Ruby pad base64, Go does not; Go writes a space as +, which the Pushgateway keeps as +.
    assert.equal(key('/metrics/job/j/path@base64/YS9i'), key('/metrics/job/j/path@base64/YS9i'));
    assert.equal(key('/metrics/job/j/v@base64/YSBi'), key('/metrics/job/j/v/a%20b'));
    assert.equal(key('/metrics/job/j/v@base64/YQ=='), key('/metrics/job/j/v/a'));
    assert.notEqual(key('/metrics/job/j/v/a+b'), key('/metrics/job/j/v/a%20b'));
  });

  it('keeps an empty value, which the Pushgateway stores as its own group', () => {
    assert.notEqual(key('/metrics/job/j/y@base64/='), key('/metrics/job/j'));
    assert.equal(key('/metrics/job/j/y@base64/='), key('/metrics/job/j/y/'));
  });
});

describe('decodeBase64', () => {
  const cases: [string, string | RegExp][] = [
    ['', ''],
    ['=', ''],
    ['YQ', 'a'],
    ['YQ=', 'a'],
    ['YQ==', 'a'],
    ['YWI', 'ab'],
    ['YWJj', 'abc'],
    ['_-8', '\xff\xef'],
    ['Y', /input byte 0/],
    ['YQ=Q', /input byte 2/],
  ];
  for (const [input, expected] of cases) {
    it(`decodes ${JSON.stringify(input)}`, () => {
      const result = decodeBase64(input);
      if (typeof expected === 'string') assert.deepEqual(result, { ok: true, value: expected });
      else assert.ok(!result.ok && expected.test(result.message), JSON.stringify(result));
    });
  }
});
