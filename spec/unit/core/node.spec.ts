import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { parseNodeUrl, sameMembers } from '../../../lib/core/node';

describe('parseNodeUrl', () => {
  const good: [string, string, string][] = [
    ['http://127.0.0.11:9091', '127.0.0.11:9091', 'http://127.0.0.11:9091'],
    ['127.0.0.11:9091', '127.0.0.11:9091', 'http://127.0.0.11:9091'],
    ['http://pgw.example', 'pgw.example:80', 'http://pgw.example:80'],
    ['https://pgw.example/', 'pgw.example:443', 'https://pgw.example:443'],
    ['https://pgw.example:8443/pgw/', 'pgw.example:8443', 'https://pgw.example:8443/pgw'],
    ['http://[::1]:9091', '[::1]:9091', 'http://[::1]:9091'],
    ['HTTP://PGW.example:9091', 'pgw.example:9091', 'http://pgw.example:9091'],
  ];
  for (const [input, id, url] of good) {
    it(`reads ${input}`, () => assert.deepEqual(parseNodeUrl(input), { ok: true, node: { id, url } }));
  }
  const bad: [string, RegExp][] = [
    ['ftp://pgw:21', /scheme must be http or https/],
    ['http://user:pw@pgw:9091', /no credentials/],
    ['http://pgw:9091/?a=1', /no credentials, query or fragment/],
    ['http://pgw:99999', /invalid pushgateway URL/],
    ['', /invalid pushgateway URL/],
  ];
  for (const [input, message] of bad) {
    it(`rejects ${JSON.stringify(input)}`, () => {
      const result = parseNodeUrl(input);
      assert.ok(!result.ok && message.test(result.message), JSON.stringify(result));
    });
  }
});

describe('parseNodeUrl never quotes credentials', () => {
  const cases: [string, string][] = [
    ['http://alice:s3cret@127.0.0.11:9091', '"http://xxxxx@127.0.0.11:9091"'],
    ['alice:s3cret@127.0.0.11:9091', '"xxxxx@127.0.0.11:9091"'],
    ['https://alice:s3@cret@pgw.example/prefix', '"https://xxxxx@pgw.example/prefix"'],
    ['http://s3cret@pgw:99999', '"http://xxxxx@pgw:99999"'],
    ['ftp://alice:s3cret@pgw:21', '"ftp://xxxxx@pgw:21"'],
    ['http://alice:s3cret@pgw:9091/?a=@', '"http://xxxxx@pgw:9091/?a=@"'],
  ];
  for (const [input, shown] of cases) {
    it(`shows ${input} as ${shown}`, () => {
      const result = parseNodeUrl(input);
      assert.ok(!result.ok);
      assert.ok(result.message.includes(shown), result.message);
      assert.doesNotMatch(result.message, /s3|cret/);
    });
  }
  it('leaves an @ after the host alone', () => {
    const result = parseNodeUrl('http://pgw:9091/a@b?c=1');
    assert.ok(!result.ok && result.message.includes('"http://pgw:9091/a@b?c=1"'), JSON.stringify(result));
  });
});

describe('sameMembers', () => {
  const a = { id: 'a:1', url: 'http://a:1' };
  const b = { id: 'b:1', url: 'http://b:1' };
  it('ignores order', () => assert.ok(sameMembers([a, b], [b, a])));
  it('sees a changed URL', () => assert.ok(!sameMembers([a], [{ id: 'a:1', url: 'https://a:1' }])));
  it('sees a missing member', () => assert.ok(!sameMembers([a, b], [a])));
});
