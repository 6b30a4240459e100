/**
 * What the ring hashes for a push: the canonical grouping key (the default) or, for a drop-in migration from
 * dynamic-sharding, the percent-decoded request path. Pure.
 */
import { type GroupingKey, toText } from './grouping-key';
import { type HashFn, murmur3, scratchBytes, writeByteString } from './hash';

/** HashKeyMode names what is hashed: `grouping-key` (canonical, order- and spelling-independent) or `path`. */
export type HashKeyMode = 'grouping-key' | 'path';

/** HASH_KEY_MODES lists the valid modes. */
export const HASH_KEY_MODES: readonly HashKeyMode[] = ['grouping-key', 'path'];

// Like the Pushgateway's groupingKeyFor: names sorted, each name and value followed by 0xFF, a byte that never
// occurs in UTF-8 text and so cannot be confused with the text around it.
const SEPARATOR = 0xff;

/** canonicalKeyBytes returns the canonical bytes of a grouping key, in a scratch array (see scratchBytes). */
export function canonicalKeyBytes(key: GroupingKey): Uint8Array {
  const pairs = key.pairs;
  let length = pairs.length;
  for (let i = 0; i < pairs.length; i++) length += (pairs[i] as string).length;
  const bytes = scratchBytes(length);
  let at = 0;
  for (let i = 0; i < pairs.length; i++) {
    at = writeByteString(bytes, at, pairs[i] as string);
    bytes[at++] = SEPARATOR;
  }
  return bytes;
}

/** canonicalKey renders the canonical key as text, 0xFF shown as `\xff`, for inspection endpoints. */
export function canonicalKey(key: GroupingKey): string {
  return key.pairs.map((part) => `${toText(part)}\\xff`).join('');
}

/** KeyHasher maps a parsed push (its grouping key and percent-decoded path, byte strings) to its ring hash. */
export type KeyHasher = (key: GroupingKey, decodedPath: string) => number;

/** createKeyHasher returns the KeyHasher for a mode. */
export function createKeyHasher(mode: HashKeyMode, hash: HashFn = murmur3): KeyHasher {
  if (mode === 'path') {
    return (_key, decodedPath) => {
      const bytes = scratchBytes(decodedPath.length);
      writeByteString(bytes, 0, decodedPath);
      return hash(bytes);
    };
  }
  return (key) => hash(canonicalKeyBytes(key));
}
