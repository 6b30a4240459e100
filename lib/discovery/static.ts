/**
 * Static discovery: the nodes named by flags or the config file, set once.
 */
import type { Node } from '../core/node';
import type { Placement } from '../placement';

/** startStatic puts the static nodes on the ring. */
export function startStatic(placement: Placement, nodes: readonly Node[]): void {
  placement.update(nodes);
}
