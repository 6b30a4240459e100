/**
 * Reading a node's `/api/v1/metrics` answer without blocking the event loop. A Pushgateway with 10,000 groups answers
 * some 17 MiB of JSON; one JSON.parse of it holds the push thread for hundreds of milliseconds. Instead, the body is
 * cut into the texts of its `data` array's elements as it streams in, and the elements are parsed one by one, the
 * reader yielding to the event loop whenever its slice is used up (a Pacer's, shared with the other background reads).
 *
 * The cutting does not parse JSON: the scanner tracks only whether it is inside a string (and after a backslash) and
 * the bracket depth, which is all it takes to find where an element ends. JSON.parse still decides the grammar: each
 * element text is parsed by it, and so is the rest of the document (the "skeleton", with `0` in place of each
 * element), so a document is accepted exactly when JSON.parse would accept it whole.
 */
import { BACKGROUND, type Pacer } from '../pace';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

const PLACEHOLDER = Buffer.from('0');

/** The skeleton (the document outside `data`'s elements) is a few dozen bytes from a Pushgateway; past this, refuse. */
const MAX_SKELETON_BYTES = 1 << 20;
/** Keys at the top level longer than this cannot spell `data`, even escaped. */
const MAX_KEY_BYTES = 64;

function isSpace(byte: number): boolean {
  return byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
}

/** ListingError is a malformed or unexpected listing; its message is one line. */
export class ListingError extends Error {}

/**
 * DataArrayScanner cuts a JSON document, fed in byte chunks, into the texts of the elements of its top-level `data`
 * array. `write` returns the element texts completed by a chunk; `end` checks the whole document and returns the
 * skeleton's value (the top-level object, `data` holding one `0` per element). Throws ListingError on input JSON.parse
 * would refuse. One scanner reads one document.
 */
export class DataArrayScanner {
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** Inside the top-level `data` array (depth 2 is its own level). */
  private inData = false;
  private sawData = false;
  /** Bytes of the element being cut, across chunks. */
  private element: Buffer[] = [];
  private inElement = false;
  private skeleton: Buffer[] = [];
  private skeletonBytes = 0;
  /** The raw text of the string last closed at depth 1, and the key it became once a colon followed. */
  private keyBytes: number[] | undefined;
  private key: string | undefined;
  private started = false;

  write(chunk: Uint8Array): string[] {
    let bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (!this.started && bytes.length > 0) {
      this.started = true;
      // A UTF-8 byte order mark, which fetch's json() drops too.
      if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) bytes = bytes.subarray(3);
    }
    const out: string[] = [];
    // `from` marks where the current run (skeleton or element bytes) started in this chunk.
    let from = 0;
    const n = bytes.length;
    for (let i = 0; i < n; i++) {
      const byte = bytes[i] as number;
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (byte === BACKSLASH) this.escaped = true;
        else if (byte === QUOTE) {
          this.inString = false;
          if (this.depth === 1 && this.keyBytes !== undefined) this.keyBytes.push(byte);
          continue;
        } else {
          // Run to the next quote or backslash: nothing else inside a string matters.
          let stop = i + 1;
          while (stop < n && bytes[stop] !== QUOTE && bytes[stop] !== BACKSLASH) stop++;
          if (this.depth === 1 && this.keyBytes !== undefined) this.recordKey(bytes, i, stop);
          i = stop - 1;
          continue;
        }
        if (this.depth === 1 && this.keyBytes !== undefined) this.keyBytes.push(byte);
        continue;
      }
      if (this.inData && this.depth === 2) {
        // Directly inside `data`: separators belong to the skeleton, anything else starts or continues an element.
        if (byte === COMMA || byte === CLOSE_BRACKET) {
          if (this.inElement) {
            this.element.push(bytes.subarray(from, i));
            out.push(this.finishElement());
            from = i;
          }
          if (byte === CLOSE_BRACKET) {
            this.inData = false;
            this.depth = 1;
          }
          continue;
        }
        if (!this.inElement && !isSpace(byte)) {
          this.addSkeleton(bytes.subarray(from, i));
          this.addSkeleton(PLACEHOLDER);
          this.inElement = true;
          from = i;
        }
      }
      if (byte === QUOTE) {
        this.inString = true;
        if (this.depth === 1) this.keyBytes = [byte];
      } else if (byte === OPEN_BRACE || byte === OPEN_BRACKET) {
        if (this.depth === 1 && byte === OPEN_BRACKET && this.key === 'data' && !this.inData) {
          if (this.sawData) throw new ListingError('the listing has two data members');
          this.sawData = true;
          this.inData = true;
        }
        this.depth++;
      } else if (byte === CLOSE_BRACE || byte === CLOSE_BRACKET) {
        if (this.depth === 0) throw new ListingError(`the listing is not valid JSON: unbalanced ${String.fromCharCode(byte)}`);
        this.depth--;
      } else if (this.depth === 1 && byte === COLON) {
        this.key = this.decodeKey();
      } else if (this.depth === 1 && byte === COMMA) {
        this.key = undefined;
        this.keyBytes = undefined;
      }
    }
    if (this.inElement) this.element.push(Buffer.from(bytes.subarray(from)));
    else this.addSkeleton(bytes.subarray(from));
    return out;
  }

  end(): unknown {
    if (this.inElement || this.inString || this.depth !== 0 || this.inData) throw new ListingError('the listing ends early (truncated JSON)');
    try {
      return JSON.parse(Buffer.concat(this.skeleton).toString('utf8'));
    } catch (error) {
      throw new ListingError(`the listing is not valid JSON: ${(error as Error).message}`);
    }
  }

  private recordKey(bytes: Buffer, from: number, to: number): void {
    const keyBytes = this.keyBytes as number[];
    if (keyBytes.length + (to - from) > MAX_KEY_BYTES) {
      this.keyBytes = undefined;
      return;
    }
    for (let j = from; j < to; j++) keyBytes.push(bytes[j] as number);
  }

  private decodeKey(): string | undefined {
    const raw = this.keyBytes;
    this.keyBytes = undefined;
    if (raw === undefined) return undefined;
    try {
      const key: unknown = JSON.parse(Buffer.from(raw).toString('utf8'));
      return typeof key === 'string' ? key : undefined;
    } catch {
      return undefined; // the skeleton check reports it
    }
  }

  private finishElement(): string {
    // Most elements lie within one chunk: decode the view, no copy.
    const text = (this.element.length === 1 ? (this.element[0] as Buffer) : Buffer.concat(this.element)).toString('utf8');
    this.element = [];
    this.inElement = false;
    return text;
  }

  private addSkeleton(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.skeletonBytes += bytes.length;
    if (this.skeletonBytes > MAX_SKELETON_BYTES) throw new ListingError('the listing is not a Pushgateway listing: too much outside its data array');
    // Copied: a view would keep the whole network chunk alive.
    this.skeleton.push(bytes === PLACEHOLDER ? bytes : Buffer.from(bytes));
  }
}

/** ReadListingOptions configures readListing. */
export type ReadListingOptions = Readonly<{
  /**
   * Hands out the reader's slices of the event loop.
   * @default BACKGROUND (lib/pace.ts), shared with the other background reads
   */
  pacer?: Pacer;
  /**
   * Called with each element's text before it is parsed: true says the caller already holds an identical element it
   * read (and had parsed) before, so this one is neither parsed nor passed to `onElement`. Identical text parses to
   * an identical value, so nothing is lost but the work.
   * @default none: every element is parsed
   */
  known?: (text: string) => boolean;
}>;

/**
 * readListing reads a `/api/v1/metrics` body and calls `onElement` with each element of its `data` array, parsed,
 * and its text, in order. Resolves once the whole document has been checked; rejects with ListingError when it is
 * malformed or has no `data` array (elements already delivered must then be discarded by the caller).
 */
export async function readListing(
  body: AsyncIterable<Uint8Array>,
  onElement: (value: unknown, text: string) => void,
  options: ReadListingOptions = {},
): Promise<void> {
  const pacer = options.pacer ?? BACKGROUND;
  const { known } = options;
  const scanner = new DataArrayScanner();
  for await (const chunk of body) {
    for (const text of scanner.write(chunk)) {
      if (known?.(text) === true) {
        if (pacer.due()) await pacer.next();
        continue;
      }
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (error) {
        throw new ListingError(`the listing is not valid JSON: ${(error as Error).message}`);
      }
      onElement(value, text);
      // Chunks already buffered arrive as resolved promises, which never let the event loop run: yield by the slice.
      if (pacer.due()) await pacer.next();
    }
    if (pacer.due()) await pacer.next();
  }
  const doc = scanner.end() as { data?: unknown } | null;
  if (doc === null || typeof doc !== 'object' || !Array.isArray(doc.data)) throw new ListingError('no data array');
}
