/**
 * MurmurHash3 x86 32-bit, seed 0, from murmurhash3js-revisited: the hash of the ring's vnodes and of keys. Pure.
 *
 * The library reads `bytes.length`, so it wants an array of exactly the key's length. Allocating one per key (or a
 * subarray view of a bigger buffer) costs more than the hash itself, so `scratchBytes` keeps one reusable array per
 * length: a caller fills it completely and hashes it before asking for another.
 */
import murmur from 'murmurhash3js-revisited';

// The library checks every byte of every input by default (a loop per call). Our inputs are always Uint8Arrays,
// so the check could only cost time.
(murmur as unknown as { inputValidation: boolean }).inputValidation = false;

/** HashFn hashes bytes to an unsigned 32-bit integer. Injected so specs can use an identity hash. */
export type HashFn = (bytes: Uint8Array) => number;

/** murmur3 is MurmurHash3 x86 32-bit with seed 0, as dynamic-sharding uses it (spaolacci/murmur3 Sum32). */
export const murmur3: HashFn = (bytes) => murmur.x86.hash32(bytes, 0);

const UTF8 = new TextEncoder();
const MAX_SCRATCH = 4096;
const scratch: Uint8Array[] = [];

/**
 * scratchBytes returns a Uint8Array of exactly `length` bytes, shared by every caller asking for that length. Fill
 * it and use it before anything else may ask again (synchronously). Longer arrays are fresh allocations.
 */
export function scratchBytes(length: number): Uint8Array {
  if (length > MAX_SCRATCH) return new Uint8Array(length);
  return (scratch[length] ??= new Uint8Array(length));
}

/** writeByteString copies a string holding one byte per code unit into `target` at `offset`; returns the end. */
export function writeByteString(target: Uint8Array, offset: number, value: string): number {
  for (let i = 0; i < value.length; i++) target[offset++] = value.charCodeAt(i);
  return offset;
}

/** utf8Bytes returns a fresh array with the UTF-8 encoding of a string. */
export function utf8Bytes(value: string): Uint8Array {
  return UTF8.encode(value);
}

/** hashString hashes the UTF-8 bytes of a string (for tools and specs; the hot path uses scratchBytes). */
export function hashString(value: string, hash: HashFn = murmur3): number {
  return hash(utf8Bytes(value));
}
