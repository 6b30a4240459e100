/**
 * Placement owns the current ring and answers "which node owns this push". A membership change builds the new ring
 * aside and swaps one reference, so a request that read the ring once sees one consistent ring throughout.
 */
import { EventEmitter } from 'node:events';

import { FALLBACK, fastCanonicalHash } from './core/fast-key';
import type { GroupingKey } from './core/grouping-key';
import { type HashKeyMode, type KeyHasher, createKeyHasher } from './core/key-hash';
import { type Node, dedupeNodes, sameMembers } from './core/node';
import { type Ring, buildRing } from './core/ring';

const NO_KEY: GroupingKey = Object.freeze({ pairs: [] });

/** RingChange describes one swap: who joined, who left, why (by node id, when the source said), and the new ring. */
export type RingChange = Readonly<{
  ring: Ring;
  joined: readonly Node[];
  left: readonly Node[];
  reasons: Readonly<Record<string, string>>;
  at: Date;
}>;

/** UpdateReasons says why members change: per node id, and why the ring is empty when it ends up empty. */
export type UpdateReasons = Readonly<{ reasons?: Readonly<Record<string, string>>; emptyReason?: string }>;

/** PlacementOptions configures createPlacement. */
export type PlacementOptions = Readonly<{
  vnodes: number;
  hashKey: HashKeyMode;
  /** Why the ring is empty before the first membership is known (e.g. `waiting for consul`). */
  pendingReason?: string;
}>;

/** Placement is the director's one mutable piece of routing state. Emits `change` (RingChange) on every swap. */
export class Placement extends EventEmitter {
  private currentRing: Ring;
  private pending: string | undefined;
  private empty: string | undefined;
  private lastChange: Date = new Date();
  /** The hash key mode in force. */
  readonly hashKey: HashKeyMode;
  private readonly vnodes: number;
  private readonly hasher: KeyHasher;

  constructor(options: PlacementOptions) {
    super();
    this.vnodes = options.vnodes;
    this.hashKey = options.hashKey;
    this.hasher = createKeyHasher(options.hashKey);
    this.pending = options.pendingReason;
    this.currentRing = buildRing([], { vnodes: options.vnodes });
  }

  /** The current ring. Read it once per request. Only `update` replaces it. */
  get ring(): Ring {
    return this.currentRing;
  }

  /** Set while the first membership is still unknown; cleared by the first update. */
  get pendingReason(): string | undefined {
    return this.pending;
  }

  /** Why the ring is empty, when the last update said (e.g. every node failed its health checks). */
  get emptyReason(): string | undefined {
    return this.empty;
  }

  /** When the ring last changed (start-up counts). */
  get changedAt(): Date {
    return this.lastChange;
  }

  /**
   * update makes `nodes` the members. Builds and swaps a new ring only when the member set changed; returns the
   * change, or undefined when there was none. `why` travels with the change (for the log) and names the reason of
   * an empty ring in `unavailableMessage`.
   */
  update(nodes: readonly Node[], why: UpdateReasons = {}): RingChange | undefined {
    const next = dedupeNodes(nodes);
    const previous = this.currentRing.nodes;
    const wasPending = this.pending !== undefined;
    this.pending = undefined;
    this.empty = next.length === 0 ? why.emptyReason : undefined;
    if (sameMembers(previous, next) && !wasPending) return undefined;
    const ring = buildRing(next, { vnodes: this.vnodes });
    const before = new Map(previous.map((node) => [node.id, node.url]));
    const after = new Map(next.map((node) => [node.id, node.url]));
    const change: RingChange = {
      ring,
      joined: next.filter((node) => before.get(node.id) !== node.url),
      left: previous.filter((node) => after.get(node.id) !== node.url),
      reasons: why.reasons ?? {},
      at: new Date(),
    };
    this.currentRing = ring;
    this.lastChange = change.at;
    this.emit('change', change);
    return change;
  }

  /** unavailableMessage is the answer to a push (and to /-/ready) while the ring is empty. */
  unavailableMessage(): string {
    const why = this.pendingReason ?? this.emptyReason;
    return why === undefined ? 'no pushgateway nodes available' : `no pushgateway nodes available (${why})`;
  }

  /** hash returns the ring hash of a parsed push under the configured hash key mode. */
  hash(key: GroupingKey, decodedPath: string): number {
    return this.hasher(key, decodedPath);
  }

  /**
   * fastHash returns the ring hash of a plain push path (no escapes, no @base64, nothing the Pushgateway would
   * refuse) without parsing it into a GroupingKey, or FALLBACK: then parse it and call `hash`.
   */
  fastHash(rawPath: string): number {
    const canonical = fastCanonicalHash(rawPath);
    if (canonical === FALLBACK || this.hashKey === 'grouping-key') return canonical;
    // A plain path is its own percent-decoding; the path hasher reads no key.
    return this.hasher(NO_KEY, rawPath);
  }

  /** owner returns the node that owns a parsed push on the current ring, or undefined when it is empty. */
  owner(key: GroupingKey, decodedPath: string): Node | undefined {
    return this.ring.lookup(this.hasher(key, decodedPath));
  }
}
