/**
 * The health state of one node as its checks come in: rise and fall counting, like HAProxy's `rise`/`fall` and
 * Envoy's healthy/unhealthy thresholds. Pure: results in, state and transition out.
 */

/** HealthThresholds are the counts that move a node between up and down. */
export type HealthThresholds = Readonly<{ fall: number; rise: number }>;

/**
 * NodeHealth is what the director knows of one node. `proven` is false until the node passed a check since it
 * became a candidate: a node that never answered is taken out at its first failure rather than after `fall`.
 */
export type NodeHealth = Readonly<{ up: boolean; proven: boolean; failures: number; successes: number }>;

/** NEW_NODE is a candidate nothing is known of yet: up, so a director serves at once, but not proven. */
export const NEW_NODE: NodeHealth = Object.freeze({ up: true, proven: false, failures: 0, successes: 0 });

/** HealthStep is the state after one result, and `changed` when the node went up or down with it. */
export type HealthStep = Readonly<{ health: NodeHealth; changed: 'up' | 'down' | undefined }>;

/**
 * nextHealth applies one check result. Failures and successes count in a row: a success clears the failures and a
 * failure clears the successes. An up node goes down after `fall` failures (one, if it never passed a check); a
 * down node comes up after `rise` successes.
 */
export function nextHealth(health: NodeHealth, passed: boolean, thresholds: HealthThresholds): HealthStep {
  if (passed) {
    const successes = health.successes + 1;
    if (health.up) return { health: { up: true, proven: true, failures: 0, successes: Math.min(successes, thresholds.rise) }, changed: undefined };
    if (successes >= thresholds.rise) return { health: { up: true, proven: true, failures: 0, successes }, changed: 'up' };
    return { health: { up: false, proven: health.proven, failures: 0, successes }, changed: undefined };
  }
  const failures = health.failures + 1;
  if (health.up && (failures >= thresholds.fall || !health.proven)) {
    return { health: { up: false, proven: health.proven, failures, successes: 0 }, changed: 'down' };
  }
  return { health: { up: health.up, proven: health.proven, failures: Math.min(failures, thresholds.fall), successes: 0 }, changed: undefined };
}
