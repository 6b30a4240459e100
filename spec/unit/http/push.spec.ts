import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { followsRedirects, locationFor } from '../../../lib/http/push';

describe('locationFor', () => {
  const node = { id: '127.0.0.11:9091', url: 'http://127.0.0.11:9091/pgw' };
  it('appends the target exactly as received', () => {
    assert.equal(locationFor(node, '/metrics/job/a/v/a%20b?x=1'), 'http://127.0.0.11:9091/pgw/metrics/job/a/v/a%20b?x=1');
  });
  it('percent-encodes bytes that are not visible ASCII', () => {
    assert.equal(locationFor(node, '/metrics/job/\xce\xa0 x'), 'http://127.0.0.11:9091/pgw/metrics/job/%CE%A0%20x');
  });
  it('leaves no CR or LF', () => {
    assert.doesNotMatch(locationFor(node, '/metrics/job/a\r\nSet-Cookie: x'), /[\r\n]/);
  });
  it('percent-encodes backslash and #, which a WHATWG URL parser would resolve or drop', () => {
    const location = locationFor(node, '/metrics/job/a/x/..\\..\\b#c');
    assert.equal(location, 'http://127.0.0.11:9091/pgw/metrics/job/a/x/..%5C..%5Cb%23c');
    // Followed by a browser-grade parser, it still names the same group on the same node.
    assert.equal(new URL(location).pathname, '/pgw/metrics/job/a/x/..%5C..%5Cb%23c');
  });
});

describe('followsRedirects', () => {
  const cases: [string, Record<string, string>, boolean][] = [
    ['Go client_golang', { 'user-agent': 'Go-http-client/1.1' }, true],
    ['curl', { 'user-agent': 'curl/7.88.1' }, true],
    ['curl with credentials', { 'user-agent': 'curl/7.88.1', authorization: 'Basic eDp5' }, false],
    ['Python urllib', { 'user-agent': 'Python-urllib/3.11' }, false],
    ['prom-client (no agent)', {}, false],
  ];
  for (const [name, headers, expected] of cases) {
    it(`${expected ? 'redirects' : 'proxies'} ${name}`, () => assert.equal(followsRedirects(headers['user-agent'], headers['authorization'] !== undefined), expected));
  }
});
