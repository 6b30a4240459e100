/**
 * Sharing the event loop between long pieces of background work (reading a node's listing, building the fleet view,
 * rendering /api/v1/metrics) so that they never hold the pushes up, even when several run at once.
 *
 * Each piece of work is cut into slices by checking `due()` between small units and awaiting `next()` when its slice
 * is used up. A slice that yields with setImmediate alone is not enough once several pieces run together: their
 * immediates all run in the same turn of the loop, one slice each, back to back (three listings and a view being
 * built made one turn four slices long). A Pacer hands out one slice per turn instead: the callers that used their
 * slice queue up, first come first served, and one of them is woken per turn, after the loop has served its I/O and
 * timers.
 */

/** PacerOptions configures createPacer. */
export type PacerOptions = Readonly<{
  /**
   * How long one slice of work may run before it waits for the next turn of the loop.
   * @default 5
   */
  sliceMs?: number;
  /** The clock, in milliseconds. @default performance.now */
  now?: () => number;
}>;

/** Pacer hands out slices of the event loop to background work. Share one between every piece that should take turns. */
export type Pacer = Readonly<{
  /** due tells whether the slice running now is used up: the caller should then await `next()`. Cheap: call it often. */
  due(): boolean;
  /** next resolves when the caller's new slice starts: at most one slice starts per turn of the loop, in the order asked. */
  next(): Promise<void>;
}>;

/** createPacer returns a Pacer. */
export function createPacer(options: PacerOptions = {}): Pacer {
  const sliceMs = options.sliceMs ?? 5;
  const now = options.now ?? (() => performance.now());
  let sliceStart = now();
  const waiting: (() => void)[] = [];
  let woken = false;

  const wake = (): void => {
    const first = waiting.shift();
    sliceStart = now();
    // The next waiter's turn is the next turn of the loop: an immediate set while immediates run waits for it.
    if (waiting.length > 0) setImmediate(wake);
    else woken = false;
    first?.();
  };

  return Object.freeze({
    due: () => now() - sliceStart >= sliceMs,
    next: () =>
      new Promise<void>((resolve) => {
        waiting.push(resolve);
        if (!woken) {
          woken = true;
          setImmediate(wake);
        }
      }),
  });
}

/**
 * BACKGROUND is the pacer the director's background reads share: node listings (lib/nodes/listing.ts), the fleet
 * view and its /api/v1/metrics answer. 5 ms slices: with a collection or two, the loop still turns within 50 ms.
 */
export const BACKGROUND: Pacer = createPacer({ sliceMs: 5 });
