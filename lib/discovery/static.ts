/**
 * Static discovery: the nodes named by flags or the config file, set once.
 */
import type { Node } from '../core/node';
import type { CandidateSink } from '../health';

/** startStatic hands the static nodes to the candidates' sink (the health checker, then placement). */
export function startStatic(candidates: CandidateSink, nodes: readonly Node[]): void {
  candidates.update(nodes);
}
