/**
 * The fast lane's request grammar: the few pieces of HTTP/1.1 (RFC 9110, RFC 9112) it reads itself. Everything the
 * director receives from a node is parsed by llhttp inside undici instead (see proxy.ts); this module is only for
 * requests, and only for the strict subset the fast lane takes (fast-lane.ts readPush). What it does not match is
 * left to Node's server, which parses with llhttp too.
 */

/** CRLF ends a line. */
export const CRLF = Buffer.from('\r\n');

/** CRLFCRLF ends a message head. */
export const CRLFCRLF = Buffer.from('\r\n\r\n');

/**
 * FIELD_LINE matches one header line at `lastIndex` (it is sticky): an RFC 9110 token, a colon, and a value of
 * visible characters, spaces, tabs and obs-text, without the whitespace around it. Nothing else passes: no bare CR
 * or LF, no NUL, no obs-fold, no space before the colon. Callers set `lastIndex` and exec in one synchronous loop.
 */
// eslint-disable-next-line no-control-regex
export const FIELD_LINE = /([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*?)[ \t]*\r\n/y;

/** DIGITS is a Content-Length's value: decimal digits only, no sign or space, within a safe integer. */
export const DIGITS = /^\d{1,15}$/;

/**
 * REQUEST_LINE matches a push's request line at `lastIndex` (sticky): PUT, POST or DELETE, an origin-form target of
 * `/metrics/` and only characters RFC 3986 allows unescaped in a path and query, plus `%`; HTTP/1.1 only.
 */
export const REQUEST_LINE = /(PUT|POST|DELETE) (\/metrics\/[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*) HTTP\/1\.1\r\n/y;
