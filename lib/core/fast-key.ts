/**
 * The push path's fast lane: for the paths nearly every client sends (no `%` escape, no `@base64`, no empty or dot
 * segment), compute the canonical key's bytes straight from the request path, without building a GroupingKey.
 * Anything else, including every path the Pushgateway would refuse, returns FALLBACK and goes through
 * parseGroupingKey, which is the reference: specs check that both give the same hash for every path. Pure.
 */
import { type HashFn, murmur3, scratchBytes } from './hash';

/** FALLBACK means "not a plain path: use parseGroupingKey". */
export const FALLBACK = -1;

const MAX_PAIRS = 32;
// Per pair: name start, name end, value start, value end; indexes into the path. Reused: the lane is synchronous.
const spans = new Int32Array(MAX_PAIRS * 4);
const order = new Int32Array(MAX_PAIRS);
const JOB = 'job';
const JOB_START = 13; // '/metrics/job/'.length
const SEPARATOR = 0xff;

function isNameStart(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f;
}

/** compareNames compares two names given as spans of `path` (a start of -1 means the literal "job"). */
function compareNames(path: string, aStart: number, aEnd: number, bStart: number, bEnd: number): number {
  const aLength = aEnd - aStart;
  const bLength = bEnd - bStart;
  const length = aLength < bLength ? aLength : bLength;
  for (let i = 0; i < length; i++) {
    const a = aStart < 0 ? JOB.charCodeAt(i) : path.charCodeAt(aStart + i);
    const b = bStart < 0 ? JOB.charCodeAt(i) : path.charCodeAt(bStart + i);
    if (a !== b) return a - b;
  }
  return aLength - bLength;
}

/**
 * fastCanonicalHash returns the ring hash of a plain push path's canonical key (the same bytes as
 * canonicalKeyBytes(parseGroupingKey(path).key)), or FALLBACK.
 */
export function fastCanonicalHash(path: string, hash: HashFn = murmur3): number {
  if (!path.startsWith('/metrics/job/')) return FALLBACK;
  if (path.indexOf('%') >= 0 || path.indexOf('@') >= 0 || path.indexOf('//') >= 0 || path.indexOf('/.') >= 0) return FALLBACK;
  const end = path.length;
  const slash = path.indexOf('/', JOB_START);
  const jobEnd = slash < 0 ? end : slash;
  if (jobEnd === JOB_START) return FALLBACK;

  // Pair 0 is the job: name "job" (start -1), value the job segment.
  spans[0] = -1;
  spans[1] = JOB.length - 1;
  spans[2] = JOB_START;
  spans[3] = jobEnd;
  let pairs = 1;
  if (slash >= 0 && end - slash > 1) {
    let at = slash + 1;
    for (;;) {
      const nameEnd = path.indexOf('/', at);
      if (nameEnd < 0 || pairs === MAX_PAIRS) return FALLBACK;
      const valueEnd0 = path.indexOf('/', nameEnd + 1);
      const valueEnd = valueEnd0 < 0 ? end : valueEnd0;
      if (!isNameStart(path.charCodeAt(at))) return FALLBACK;
      if (nameEnd - at > 1 && path.charCodeAt(at) === 0x5f && path.charCodeAt(at + 1) === 0x5f) return FALLBACK;
      for (let i = at + 1; i < nameEnd; i++) {
        const c = path.charCodeAt(i);
        if (!isNameStart(c) && (c < 0x30 || c > 0x39)) return FALLBACK;
      }
      const base = pairs * 4;
      spans[base] = at;
      spans[base + 1] = nameEnd;
      spans[base + 2] = nameEnd + 1;
      spans[base + 3] = valueEnd;
      pairs++;
      if (valueEnd0 < 0) break;
      at = valueEnd0 + 1;
      if (at === end) return FALLBACK; // an odd count: a trailing slash after a value
    }
  }

  // Order the pairs by name; among equal names the later one wins, except that the path's job always wins. Keep
  // `job` (index 0) sorted after the equal label-part names, so it is the last of its run, then skip all but the last.
  let count = 0;
  for (let p = 1; p < pairs; p++) order[count++] = p;
  order[count++] = 0;
  for (let i = 1; i < count; i++) {
    const p = order[i] as number;
    let j = i - 1;
    while (j >= 0) {
      const q = order[j] as number;
      const cmp = compareNames(path, spans[q * 4] as number, spans[q * 4 + 1] as number, spans[p * 4] as number, spans[p * 4 + 1] as number);
      if (cmp <= 0) break;
      order[j + 1] = q;
      j--;
    }
    order[j + 1] = p;
  }

  let length = 0;
  for (let i = 0; i < count; i++) {
    const p = order[i] as number;
    const next = order[i + 1];
    if (next !== undefined && i + 1 < count && sameName(path, p, next)) continue;
    length += (p === 0 ? JOB.length : (spans[p * 4 + 1] as number) - (spans[p * 4] as number)) + ((spans[p * 4 + 3] as number) - (spans[p * 4 + 2] as number)) + 2;
  }
  const bytes = scratchBytes(length);
  let w = 0;
  for (let i = 0; i < count; i++) {
    const p = order[i] as number;
    const next = order[i + 1];
    if (next !== undefined && i + 1 < count && sameName(path, p, next)) continue;
    if (p === 0) {
      bytes[w++] = 0x6a; // j
      bytes[w++] = 0x6f; // o
      bytes[w++] = 0x62; // b
    } else {
      for (let k = spans[p * 4] as number, e = spans[p * 4 + 1] as number; k < e; k++) bytes[w++] = path.charCodeAt(k);
    }
    bytes[w++] = SEPARATOR;
    for (let k = spans[p * 4 + 2] as number, e = spans[p * 4 + 3] as number; k < e; k++) bytes[w++] = path.charCodeAt(k);
    bytes[w++] = SEPARATOR;
  }
  return hash(bytes);
}

function sameName(path: string, p: number, q: number): boolean {
  return compareNames(path, spans[p * 4] as number, spans[p * 4 + 1] as number, spans[q * 4] as number, spans[q * 4 + 1] as number) === 0;
}
