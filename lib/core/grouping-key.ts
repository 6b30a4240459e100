/**
 * The grouping key of a push, read exactly as the Pushgateway 1.x reads it (`handler/push.go`, `splitLabels`,
 * `decodeBase64`, and the `net/url` + `ServeMux` steps before them). Pure: no I/O, no Node-specific imports.
 *
 * Strings inside a GroupingKey are byte strings: one UTF-16 code unit per byte (0-255), exactly the bytes the
 * Pushgateway keeps in its Go strings. That keeps invalid UTF-8 (which the Pushgateway accepts in the URL and only
 * rejects later, after creating the group) distinct and byte-exact. `toDisplayLabels` turns them into text.
 */

/** PUSH_PREFIX is the path prefix of every push. */
export const PUSH_PREFIX = '/metrics/job';

/** GroupingKey is a decoded grouping key: label names sorted bytewise, `job` included, duplicates resolved. */
export type GroupingKey = Readonly<{
  /** Flat, sorted pairs `[name0, value0, name1, value1, ...]` as byte strings. */
  pairs: readonly string[];
}>;

/** ParseResult is the outcome of parseGroupingKey: a key, or the Pushgateway's 4xx for the path. */
export type ParseResult =
  | Readonly<{ ok: true; key: GroupingKey; /** The percent-decoded path, a byte string. */ path: string }>
  | Readonly<{ ok: false; status: 400 | 404; message: string }>;

const BASE64_SUFFIX = '@base64';

function fail(status: 400 | 404, message: string): ParseResult {
  return { ok: false, status, message };
}

/** quote renders a byte string for an error message, like Go's %q would (approximated by JSON). */
export function quote(byteString: string): string {
  return JSON.stringify(toText(byteString));
}

/** toText decodes a byte string as UTF-8 text (invalid bytes become U+FFFD). */
export function toText(byteString: string): string {
  // Fast path: pure ASCII is its own UTF-8.
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(byteString)) return byteString;
  const bytes = new Uint8Array(byteString.length);
  for (let i = 0; i < byteString.length; i++) bytes[i] = byteString.charCodeAt(i);
  return new TextDecoder('utf-8').decode(bytes);
}

/**
 * isValidUtf8 tells whether a byte string is well-formed UTF-8: no overlong forms, no surrogates, nothing past
 * U+10FFFF (RFC 3629), which is what the Pushgateway's consistency check demands of label values.
 */
export function isValidUtf8(byteString: string): boolean {
  const n = byteString.length;
  for (let i = 0; i < n; i++) {
    const c = byteString.charCodeAt(i);
    if (c < 0x80) continue;
    let need: number;
    let min: number;
    let cp: number;
    if (c >= 0xc2 && c <= 0xdf) [need, min, cp] = [1, 0x80, c & 0x1f];
    else if (c >= 0xe0 && c <= 0xef) [need, min, cp] = [2, 0x800, c & 0x0f];
    else if (c >= 0xf0 && c <= 0xf4) [need, min, cp] = [3, 0x10000, c & 0x07];
    else return false;
    if (i + need >= n) return false;
    for (let k = 1; k <= need; k++) {
      const cc = byteString.charCodeAt(i + k);
      if (Number.isNaN(cc) || (cc & 0xc0) !== 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += need;
  }
  return true;
}

/** quoteBytes quotes a byte string like Go's %q: valid UTF-8 as text, other bytes as \xNN. */
export function quoteBytes(byteString: string): string {
  let out = '"';
  for (let i = 0; i < byteString.length; i++) {
    const c = byteString.charCodeAt(i);
    if (c === 0x22 || c === 0x5c) out += `\\${byteString[i] as string}`;
    else if (c >= 0x20 && c < 0x7f) out += byteString[i] as string;
    else if (c === 0x0a) out += '\\n';
    else if (c === 0x09) out += '\\t';
    else if (c === 0x0d) out += '\\r';
    else if (c >= 0x80) {
      let length = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
      const sequence = byteString.slice(i, i + length);
      if (length > 1 && sequence.length === length && isValidUtf8(sequence)) {
        out += toText(sequence);
        i += length - 1;
      } else {
        length = 1;
        out += `\\x${c.toString(16).padStart(2, '0')}`;
      }
    } else out += `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return `${out}"`;
}

/** toDisplayLabels returns the key's labels as a plain object of UTF-8 text (invalid bytes become U+FFFD). */
export function toDisplayLabels(key: GroupingKey): Record<string, string> {
  const labels: Record<string, string> = {};
  for (let i = 0; i < key.pairs.length; i += 2) labels[toText(key.pairs[i] ?? '')] = toText(key.pairs[i + 1] ?? '');
  return labels;
}

function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x41 && code <= 0x46) return code - 0x37;
  if (code >= 0x61 && code <= 0x66) return code - 0x57;
  return -1;
}

/**
 * percentDecode decodes a raw request path the way Go's `url.PathUnescape` does: `%XX` becomes the byte XX, `+`
 * stays `+`. The input holds one byte per code unit (Node hands request targets over as latin1). Returns the byte
 * string, or the Go error text.
 */
function percentDecode(rawPath: string): { ok: true; path: string } | { ok: false; message: string } {
  const first = rawPath.indexOf('%');
  if (first < 0) return { ok: true, path: rawPath };
  let out = rawPath.slice(0, first);
  for (let i = first; i < rawPath.length; i++) {
    const c = rawPath.charCodeAt(i);
    if (c !== 0x25) {
      out += rawPath[i];
      continue;
    }
    const hi = hexValue(rawPath.charCodeAt(i + 1));
    const lo = hexValue(rawPath.charCodeAt(i + 2));
    if (hi < 0 || lo < 0) return { ok: false, message: `invalid URL escape ${JSON.stringify(rawPath.slice(i, i + 3))}` };
    out += String.fromCharCode(hi * 16 + lo);
    i += 2;
  }
  return { ok: true, path: out };
}

const BASE64URL = new Int16Array(128).fill(-1);
{
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  for (let i = 0; i < alphabet.length; i++) BASE64URL[alphabet.charCodeAt(i)] = i;
}

/**
 * decodeBase64 decodes like the Pushgateway: strip every trailing `=`, then unpadded base64url (Go's
 * `base64.RawURLEncoding`, which skips CR and LF). Returns a byte string, or Go's error text.
 */
export function decodeBase64(
  encoded: string,
): { ok: true; value: string } | { ok: false; message: string; /** What Go returns alongside the error. */ partial: string } {
  let end = encoded.length;
  while (end > 0 && encoded.charCodeAt(end - 1) === 0x3d) end--;
  let out = '';
  let acc = 0;
  let bits = 0;
  let inQuantum = 0;
  // Go writes a quantum's bytes only once the quantum is complete: on an error, it has the bytes of whole quanta.
  let whole = '';
  for (let i = 0; i < end; i++) {
    const c = encoded.charCodeAt(i);
    if (c === 0x0a || c === 0x0d) continue;
    const v = c < 128 ? (BASE64URL[c] ?? -1) : -1;
    if (v < 0) return { ok: false, message: `illegal base64 data at input byte ${i}`, partial: whole };
    acc = (acc << 6) | v;
    bits += 6;
    inQuantum = (inQuantum + 1) % 4;
    if (bits >= 8) {
      bits -= 8;
      out += String.fromCharCode((acc >> bits) & 0xff);
      acc &= (1 << bits) - 1;
    }
    if (inQuantum === 0) whole = out;
  }
  if (inQuantum === 1) return { ok: false, message: `illegal base64 data at input byte ${end - 1}`, partial: whole };
  return { ok: true, value: out };
}

/**
 * isLabelName tells whether a name is a legacy Prometheus label name (`^[a-zA-Z_][a-zA-Z0-9_]*$`) that does not
 * start with the reserved `__`: what the Pushgateway accepts in a grouping key.
 */
function isLabelName(name: string): boolean {
  const length = name.length;
  if (length === 0 || (length > 1 && name.charCodeAt(0) === 0x5f && name.charCodeAt(1) === 0x5f)) return false;
  for (let i = 0; i < length; i++) {
    const c = name.charCodeAt(i);
    const letter = (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f;
    if (!letter && (i === 0 || c < 0x30 || c > 0x39)) return false;
  }
  return true;
}

function isDotSegment(segment: string): boolean {
  return segment.length <= 2 && (segment === '.' || segment === '..');
}

// Up to this many label pairs are kept sorted as they come; past it (hostile input: thousands of labels), the rest
// are appended and everything is sorted once, so a request costs O(n log n), not O(n^2).
const MANY_PAIRS = 32;

/** sortPairs sorts flat pairs by name, stably, and keeps the last value of each name. */
function sortPairs(pairs: string[]): void {
  const indexes = Array.from({ length: pairs.length / 2 }, (_, i) => i);
  indexes.sort((a, b) => {
    const x = pairs[a * 2] as string;
    const y = pairs[b * 2] as string;
    return x < y ? -1 : x > y ? 1 : a - b;
  });
  const sorted: string[] = [];
  for (let k = 0; k < indexes.length; k++) {
    const i = indexes[k] as number;
    const next = indexes[k + 1];
    if (next !== undefined && pairs[next * 2] === pairs[i * 2]) continue;
    sorted.push(pairs[i * 2] as string, pairs[i * 2 + 1] as string);
  }
  pairs.splice(0, pairs.length, ...sorted);
}

/** setSorted sets name=value in flat pairs kept sorted bytewise by name. */
function setSorted(pairs: string[], name: string, value: string): void {
  let at = pairs.length;
  while (at > 0 && (pairs[at - 2] as string) >= name) at -= 2;
  if (pairs[at] === name) {
    pairs[at + 1] = value;
    return;
  }
  // Shift the greater names right by one pair, then insert.
  for (let i = pairs.length; i > at; i -= 2) {
    pairs[i] = pairs[i - 2] as string;
    pairs[i + 1] = pairs[i - 1] as string;
  }
  pairs[at] = name;
  pairs[at + 1] = value;
}

/**
 * parseGroupingKey reads the grouping key from a push request's raw path (no query string), still percent-encoded,
 * one byte per code unit. It never throws: every failure is a value carrying the Pushgateway's status and words.
 * A path that is not a push path at all yields 404.
 */
export function parseGroupingKey(rawPath: string): ParseResult {
  const decoded = percentDecode(rawPath);
  if (!decoded.ok) return fail(400, decoded.message);
  const path = decoded.path;

  let jobStart: number;
  let jobIsBase64: boolean;
  if (path.startsWith('/metrics/job/')) {
    jobStart = 13;
    jobIsBase64 = false;
  } else if (path.startsWith('/metrics/job@base64/')) {
    jobStart = 20;
    jobIsBase64 = true;
  } else {
    return fail(404, '404 page not found');
  }

  // Go's ServeMux answers 301 to a path with an empty segment (but for a trailing slash) or a `.`/`..` segment, and
  // push clients then retry with a GET that fails: refuse such paths with advice instead.
  const emptySegment = (): ParseResult =>
    fail(400, `empty path segment in ${quote(path)}: encode an empty job or label value as "@base64/="`);
  const dotSegment = (): ParseResult =>
    fail(400, `path ${quote(path)} is not canonical: "." and ".." segments are not allowed`);

  // Indexes into `path` rather than substrings: fewer allocations on the push path.
  // Checked before anything else, as ServeMux redirects before the router or splitLabels see the path.
  if (path.indexOf('//') >= 0) return emptySegment();
  if (path.indexOf('/.') >= 0 && path.split('/').some(isDotSegment)) return dotSegment();

  const slash = path.indexOf('/', jobStart);
  const end = path.length;
  let job = path.slice(jobStart, slash < 0 ? end : slash);
  const labelString = (): string => (slash < 0 ? '' : path.slice(slash));
  if (job === '') return fail(400, 'job name is required');

  if (jobIsBase64) {
    const decodedJob = decodeBase64(job);
    // The Pushgateway quotes what Go's decoder produced before the error (whole quanta only), not the input.
    if (!decodedJob.ok) return fail(400, `invalid base64 encoding in job name ${quote(decodedJob.partial)}: ${decodedJob.message}`);
    job = decodedJob.value;
  }

  // splitLabels: "" and "/" mean no labels; otherwise the components after the leading slash come in pairs.
  // Pairs are kept sorted by name as they arrive (there are few): a repeated name replaces the earlier value.
  const pairs: string[] = [];
  if (slash >= 0 && end - slash > 1) {
    // Like splitLabels, count the components before reading any: an odd count wins over a bad name.
    let slashes = 0;
    for (let i = path.indexOf('/', slash + 1); i >= 0; i = path.indexOf('/', i + 1)) slashes++;
    if (slashes % 2 === 0) return fail(400, `odd number of components in label string ${quote(labelString())}`);
    // Walk the components without splitting: pairs of (name, value) after the leading slash.
    let at = slash + 1;
    for (;;) {
      const nameEnd = path.indexOf('/', at);
      const valueEnd = path.indexOf('/', nameEnd + 1);
      const name = path.slice(at, nameEnd);
      let value = path.slice(nameEnd + 1, valueEnd < 0 ? end : valueEnd);
      const isBase64 = name.endsWith(BASE64_SUFFIX);
      const trimmed = isBase64 ? name.slice(0, -BASE64_SUFFIX.length) : name;
      if (!isLabelName(trimmed)) return fail(400, `improper label name ${quote(trimmed)}`);
      if (isBase64) {
        const decodedValue = decodeBase64(value);
        if (!decodedValue.ok) {
          return fail(400, `invalid base64 encoding for label ${toText(trimmed)}=${quote(value)}: ${decodedValue.message}`);
        }
        value = decodedValue.value;
      }
      if (pairs.length < MANY_PAIRS * 2) setSorted(pairs, trimmed, value);
      else pairs.push(trimmed, value);
      if (valueEnd < 0) break;
      at = valueEnd + 1;
    }
  }
  if (pairs.length > MANY_PAIRS * 2) sortPairs(pairs);
  if (job === '') return fail(400, 'job name is required');
  // The Pushgateway takes such a key, then fails the push's consistency check but keeps a group whose labels are
  // not UTF-8, which breaks every later push of the same metric names on that node: refuse it here instead.
  if (!isValidUtf8(job)) return fail(400, `job name ${quoteBytes(job)} is not valid UTF-8`);
  for (let i = 0; i < pairs.length; i += 2) {
    const value = pairs[i + 1] as string;
    if (!isValidUtf8(value)) return fail(400, `label ${pairs[i] as string} has a value that is not valid UTF-8: ${quoteBytes(value)}`);
  }
  // The path's job always wins over a `job` pair in the label part.
  setSorted(pairs, 'job', job);

  return { ok: true, key: { pairs }, path };
}

/** isPushPath tells, cheaply and from the raw target, whether a request belongs to the push handler. */
export function isPushPath(rawTarget: string): boolean {
  return rawTarget.startsWith('/metrics/');
}
