import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';

import { DataArrayScanner, ListingError, readListing } from '../../../lib/nodes/listing';
import { createPacer } from '../../../lib/pace';

/** A seeded generator (mulberry32), so a failing document can be reproduced from the seed in the message. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = () => number;
const pick = <T>(rand: Rand, items: readonly T[]): T => items[Math.floor(rand() * items.length)] as T;

// The characters that matter to a scanner: structure, quotes, escapes, multi-byte UTF-8 (2, 3 and 4 bytes).
const ALPHABET = ['a', 'z', ' ', '"', '\\', '[', ']', '{', '}', ',', ':', '\n', '\t', '\u0000', '\u001f', 'é', 'Π', '€', '😀', '\u2028', 'data', '/'];

function randomString(rand: Rand): string {
  let text = '';
  const length = Math.floor(rand() * 12);
  for (let i = 0; i < length; i++) text += pick(rand, ALPHABET);
  return text;
}

/** writeString renders a string as JSON, escaping some characters that need no escape (`\/`, `\u00e9`) at random. */
function writeString(rand: Rand, text: string): string {
  let out = '"';
  for (const char of text) {
    const roll = rand();
    const code = char.codePointAt(0) as number;
    if (char === '/' && roll < 0.5) out += '\\/';
    else if (code < 0x10000 && roll < 0.2) {
      const hex = code.toString(16).padStart(4, '0');
      out += `\\u${rand() < 0.5 ? hex : hex.toUpperCase()}`;
    } else out += JSON.stringify(char).slice(1, -1);
  }
  return `${out}"`;
}

const space = (rand: Rand): string => (rand() < 0.7 ? '' : pick(rand, [' ', '\n', '\t', '\r\n', '  ']));

function randomValue(rand: Rand, depth: number): unknown {
  const roll = rand();
  if (depth > 4 || roll < 0.3) return pick(rand, [0, -1.5e-7, 1.2345678901234567e19, true, false, null, randomString(rand)]);
  if (roll < 0.6) return Array.from({ length: Math.floor(rand() * 4) }, () => randomValue(rand, depth + 1));
  const object: Record<string, unknown> = {};
  for (let i = Math.floor(rand() * 4); i > 0; i--) object[randomString(rand)] = randomValue(rand, depth + 1);
  return object;
}

/** writeValue renders a value as JSON with random whitespace between tokens and random spellings of strings. */
function writeValue(rand: Rand, value: unknown): string {
  if (typeof value === 'string') return writeString(rand, value);
  if (Array.isArray(value)) return `[${space(rand)}${value.map((v) => `${writeValue(rand, v)}${space(rand)}`).join(`,${space(rand)}`)}]`;
  if (value !== null && typeof value === 'object') {
    const members = Object.entries(value).map(([k, v]) => `${writeString(rand, k)}${space(rand)}:${space(rand)}${writeValue(rand, v)}${space(rand)}`);
    return `{${space(rand)}${members.join(`,${space(rand)}`)}}`;
  }
  return JSON.stringify(value);
}

/** A listing: a `data` array of groups-like objects and of any other values, among other top-level members. */
function randomListing(rand: Rand): string {
  const data = Array.from({ length: Math.floor(rand() * 6) }, () =>
    rand() < 0.7 ? { labels: { job: randomString(rand), instance: randomString(rand) }, metric: randomValue(rand, 1) } : randomValue(rand, 1),
  );
  const members = [`${writeString(rand, 'data')}${space(rand)}:${space(rand)}${writeValue(rand, data)}`];
  // Decoys: `data` as a value and as a nested key, and other members before and after.
  for (let i = Math.floor(rand() * 3); i > 0; i--) {
    const member = pick(rand, [
      `"status":${space(rand)}"success"`,
      `"error":"data"`,
      `"nested":{"data":[1,2,["x"]]}`,
      `${writeString(rand, randomString(rand))}:${writeValue(rand, randomValue(rand, 2))}`,
    ]);
    if (!member.startsWith('"data"') && !members.some((m) => m.slice(0, 8) === member.slice(0, 8))) {
      if (rand() < 0.5) members.unshift(member);
      else members.push(member);
    }
  }
  return `${space(rand)}{${space(rand)}${members.join(`${space(rand)},${space(rand)}`)}${space(rand)}}${space(rand)}`;
}

/** cut splits bytes into chunks at random places, through multi-byte characters too. */
function cut(rand: Rand, bytes: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  let at = 0;
  while (at < bytes.length) {
    const size = 1 + Math.floor(rand() * (rand() < 0.3 ? 3 : 64));
    chunks.push(bytes.subarray(at, at + size));
    at += size;
  }
  return chunks;
}

/** stream delivers the chunks as a body does once it is all buffered: each read resolves at once. */
function stream(chunks: readonly Buffer[]): AsyncIterable<Uint8Array> {
  return Readable.from(chunks.map((chunk) => new Uint8Array(chunk)));
}

type Outcome = { ok: true; data: unknown[]; texts: string[] } | { ok: false; message: string };

async function viaReader(chunks: readonly Buffer[]): Promise<Outcome> {
  const data: unknown[] = [];
  const texts: string[] = [];
  try {
    await readListing(stream(chunks), (value, text) => {
      data.push(value);
      texts.push(text);
    });
    return { ok: true, data, texts };
  } catch (error) {
    assert.ok(error instanceof ListingError, `not a ListingError: ${String(error)}`);
    return { ok: false, message: error.message };
  }
}

/** The reference: the whole document through JSON.parse, as fetch's json() would read it. */
function viaJsonParse(bytes: Buffer): Outcome {
  try {
    const doc = JSON.parse(new TextDecoder().decode(bytes)) as { data?: unknown } | null;
    if (doc === null || typeof doc !== 'object' || !Array.isArray(doc.data)) return { ok: false, message: 'no data array' };
    return { ok: true, data: doc.data as unknown[], texts: [] };
  } catch (error) {
    return { ok: false, message: (error as Error).message };
  }
}

async function assertSameAsJsonParse(bytes: Buffer, chunks: readonly Buffer[], context: string): Promise<Outcome> {
  const expected = viaJsonParse(bytes);
  const actual = await viaReader(chunks);
  // The one deliberate difference: JSON.parse keeps the last of two `data` members; elements of the first are read
  // by then, so the reader refuses the listing.
  if (!actual.ok && actual.message === 'the listing has two data members') return actual;
  assert.equal(actual.ok, expected.ok, `${context}: reader ${actual.ok ? 'accepted' : `refused (${actual.ok ? '' : actual.message})`}, JSON.parse ${expected.ok ? 'accepted' : 'refused'}: ${JSON.stringify(bytes.toString())}`);
  if (actual.ok && expected.ok) {
    assert.deepEqual(actual.data, expected.data, context);
    // Each text is its element exactly: parsed again it gives the element.
    assert.deepEqual(actual.texts.map((t) => JSON.parse(t) as unknown), expected.data, context);
  }
  return actual;
}

describe('readListing against JSON.parse', () => {
  it('agrees on 3,000 random listings cut into random chunks', async () => {
    for (let seed = 1; seed <= 3000; seed++) {
      const rand = random(seed);
      const bytes = Buffer.from(randomListing(rand), 'utf8');
      const outcome = await assertSameAsJsonParse(bytes, cut(rand, bytes), `seed ${seed}`);
      assert.ok(outcome.ok, `seed ${seed}: a valid listing was refused: ${outcome.ok ? '' : outcome.message} ${JSON.stringify(bytes.toString())}`);
    }
  });

  it('agrees on 6,000 random listings with a byte deleted, inserted or the end cut off', async () => {
    let refused = 0;
    for (let seed = 1; seed <= 6000; seed++) {
      const rand = random(seed);
      const valid = Buffer.from(randomListing(rand), 'utf8');
      const at = Math.floor(rand() * valid.length);
      const mutation = seed % 3;
      const bytes =
        mutation === 0
          ? Buffer.concat([valid.subarray(0, at), valid.subarray(at + 1)])
          : mutation === 1
            ? Buffer.concat([valid.subarray(0, at), Buffer.from(pick(rand, ['"', '\\', '[', ']', '{', '}', ',', ':', '0', 'x', ' '])), valid.subarray(at)])
            : valid.subarray(0, at);
      const outcome = await assertSameAsJsonParse(bytes, cut(rand, bytes), `seed ${seed}, mutation ${mutation} at ${at}`);
      if (!outcome.ok) refused++;
    }
    // Most mutations break the document: the comparison above covered refusals, not only acceptances.
    assert.ok(refused > 3000, `only ${refused} mutated documents were refused`);
  });
});

describe('readListing', () => {
  const cases: { name: string; body: string; data?: unknown[]; error?: RegExp }[] = [
    { name: 'reads a Pushgateway answer', body: '{"status":"success","data":[{"labels":{"job":"a"}},{"labels":{"job":"b"}}]}', data: [{ labels: { job: 'a' } }, { labels: { job: 'b' } }] },
    { name: 'reads an empty data array', body: '{"status":"success","data":[]}', data: [] },
    { name: 'finds data after other members, brackets in strings and escaped quotes', body: '{"x":"]\\"[,","y":[[],{}],"data":[{"a":"}\\\\"},"]"]}', data: [{ a: '}\\' }, ']'] },
    { name: 'finds a data key spelled with escapes', body: '{"d\\u0061ta":[1]}', data: [1] },
    { name: 'skips a UTF-8 byte order mark', body: '\ufeff{"data":[1]}', data: [1] },
    { name: 'refuses an answer without data', body: '{"status":"error","error":"x"}', error: /^no data array$/ },
    { name: 'refuses data that is not an array', body: '{"data":{"labels":{}}}', error: /^no data array$/ },
    { name: 'refuses a top-level array', body: '[{"labels":{}}]', error: /^no data array$/ },
    { name: 'refuses two data members', body: '{"data":[1],"data":[2]}', error: /two data members/ },
    { name: 'refuses a truncated answer', body: '{"data":[{"labels":{"job":"a"}},{"lab', error: /ends early/ },
    { name: 'refuses an empty answer', body: '', error: /ends early|not valid JSON/ },
    { name: 'refuses a hole in the array', body: '{"data":[1,,2]}', error: /not valid JSON/ },
    { name: 'refuses a trailing comma', body: '{"data":[1,]}', error: /not valid JSON/ },
    { name: 'refuses junk after the document', body: '{"data":[1]} x', error: /not valid JSON/ },
    { name: 'refuses an element that is not JSON', body: '{"data":[{"a":tru}]}', error: /not valid JSON/ },
    { name: 'refuses mismatched brackets inside an element', body: '{"data":[{"a":[1}]]}', error: /not valid JSON/ },
    { name: 'refuses an unbalanced closing bracket', body: ']', error: /unbalanced/ },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const outcome = await viaReader([Buffer.from(c.body, 'utf8')]);
      if (c.error === undefined) assert.deepEqual(outcome, { ok: true, data: c.data, texts: (c.data ?? []).map((v) => JSON.stringify(v)) });
      else {
        assert.equal(outcome.ok, false);
        assert.match(outcome.ok ? '' : outcome.message, c.error);
      }
    });
  }

  it('refuses a listing with a megabyte outside its data array', async () => {
    const outcome = await viaReader([Buffer.from(`{"x":"${'a'.repeat(1 << 20)}","data":[]}`)]);
    assert.deepEqual(outcome, { ok: false, message: 'the listing is not a Pushgateway listing: too much outside its data array' });
  });

  it('neither parses nor passes on the elements the caller says it knows, and still checks the whole document', async () => {
    const body = Buffer.from('{"status":"success","data":[{"a":1},{"b":2},{"a":1}]}');
    const asked: string[] = [];
    const passed: unknown[] = [];
    await readListing(stream([body]), (value) => passed.push(value), { known: (text) => (asked.push(text), text === '{"a":1}') });
    assert.deepEqual(asked, ['{"a":1}', '{"b":2}', '{"a":1}']);
    assert.deepEqual(passed, [{ b: 2 }]);
    await assert.rejects(readListing(stream([Buffer.from('{"data":[{"a":1}],}')]), () => undefined, { known: () => true }), ListingError);
  });

  it('lets timers run while it reads a large listing that is already buffered', async () => {
    const group = JSON.stringify({ labels: { job: 'j', instance: 'i' }, m: { metrics: [{ value: '1', labels: { a: 'b' } }] } });
    const body = Buffer.from(`{"status":"success","data":[${Array.from({ length: 50_000 }, () => group).join(',')}]}`);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    let count = 0;
    await readListing(stream([body.subarray(0, body.length >> 1), body.subarray(body.length >> 1)]), () => count++, { pacer: createPacer({ sliceMs: 2 }) });
    clearInterval(timer);
    assert.equal(count, 50_000);
    assert.ok(ticks > 0, 'no timer ran while the listing was read');
  });
});

describe('DataArrayScanner', () => {
  it('keeps multi-byte characters whole when a chunk ends inside one', () => {
    const scanner = new DataArrayScanner();
    const bytes = Buffer.from('{"data":["€😀"]}', 'utf8');
    const texts = [...bytes].flatMap((byte) => scanner.write(Uint8Array.of(byte)));
    assert.deepEqual(texts, ['"€😀"']);
    assert.deepEqual(scanner.end(), { data: [0] });
  });
});
