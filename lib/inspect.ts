/**
 * Typed, read-only views of the placement: the ring and where a push path lands. The Express app serves them on
 * /api/v1/ring and /api/v1/lookup and the command line prints them, from the same functions.
 */
import { parseGroupingKey, toDisplayLabels } from './core/grouping-key';
import type { HashKeyMode } from './core/key-hash';
import { canonicalKey } from './core/key-hash';
import type { Placement } from './placement';

/** RingMember is one node on the ring and the share of the hash space it owns (0 to 1). */
export type RingMember = Readonly<{ id: string; url: string; share: number }>;

/** RingView is the ring as /api/v1/ring shows it. */
export type RingView = Readonly<{
  members: readonly RingMember[];
  vnodes: number;
  points: number;
  hash_key: HashKeyMode;
  /** When the membership last changed, ISO 8601. */
  last_change: string;
  /** Why the ring has no members yet (`waiting for consul`); absent once the first membership is known. */
  pending?: string;
}>;

/** LookupView is where one push path lands, as /api/v1/lookup shows it. */
export type LookupView = Readonly<{
  path: string;
  labels: Readonly<Record<string, string>>;
  canonical_key: string;
  hash_key: HashKeyMode;
  hash: number;
  /** The owner, or null when the ring is empty. */
  node: Readonly<{ id: string; url: string }> | null;
}>;

/** LookupResult is a LookupView, or the parser's 400 message for a path the Pushgateway would refuse. */
export type LookupResult = { ok: true; view: LookupView } | { ok: false; status: 400; message: string };

/** describeRing returns a view of the current ring. */
export function describeRing(placement: Placement): RingView {
  const ring = placement.ring;
  const shares = ring.shares();
  return {
    members: ring.nodes.map((node, i) => ({ id: node.id, url: node.url, share: shares[i] ?? 0 })),
    vnodes: ring.vnodes,
    points: ring.points,
    hash_key: placement.hashKey,
    last_change: placement.changedAt.toISOString(),
    ...(placement.pendingReason === undefined ? {} : { pending: placement.pendingReason }),
  };
}

/**
 * pushPathOf takes what an operator pastes, a push path or a whole push URL (`http://director:9292/metrics/job/a`),
 * and returns the request target's path, byte for byte: no URL normalisation, which would resolve dot segments and
 * re-escape what the Pushgateway reads as it is. The query string is dropped.
 */
export function pushPathOf(input: string): string {
  const target = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i.test(input) ? input.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, '') : input;
  return target.split(/[?#]/, 1)[0] ?? '';
}

/** describeLookup returns where a push path (or URL) lands on the current ring. */
export function describeLookup(placement: Placement, input: string): LookupResult {
  const rawPath = pushPathOf(input);
  // Node hands request targets over one byte per code unit; a path typed by a person is text: make it bytes.
  const parsed = parseGroupingKey(Buffer.from(rawPath, 'utf8').toString('latin1'));
  if (!parsed.ok) {
    // The push handler's 404 is for a request; an operator asking about a path wants to know why it is none.
    const message = parsed.status === 404 ? `not a push path: ${JSON.stringify(rawPath)} (push paths start with /metrics/job/)` : parsed.message;
    return { ok: false, status: 400, message };
  }
  const hash = placement.hash(parsed.key, parsed.path);
  const node = placement.ring.lookup(hash);
  return {
    ok: true,
    view: {
      path: input,
      labels: toDisplayLabels(parsed.key),
      canonical_key: canonicalKey(parsed.key),
      hash_key: placement.hashKey,
      hash,
      node: node === undefined ? null : { id: node.id, url: node.url },
    },
  };
}
