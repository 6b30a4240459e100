/**
 * Health checks that feed placement, never the push path. Discovery (static, Consul, DNS) hands its candidates to
 * the HealthChecker; the checker hands the candidates that are up to Placement. Each candidate is checked with
 * `GET <node URL>/-/healthy` through the NodeClient (so the node credentials apply), and a failed connection the
 * proxy reports counts as one failed check at once.
 */
import type { Logger } from 'pino';

import { type HealthThresholds, NEW_NODE, type NodeHealth, nextHealth } from './core/health';
import type { Node } from './core/node';
import type { DirectorMetrics } from './metrics';
import type { NodeClient } from './nodes/client';
import type { UpdateReasons } from './placement';

/** HealthConfig configures the checks. */
export type HealthConfig = Readonly<{
  /** Milliseconds between the starts of two checks of one node; 0 turns checks (active and passive) off. */
  intervalMs: number;
  /** Milliseconds one check may take. */
  timeoutMs: number;
  /** Failed checks in a row that take an up node out of the ring. */
  fall: number;
  /** Passed checks in a row that bring a down node back. */
  rise: number;
}>;

/** MemberTarget is where the members that are up go: Placement, in the director. */
export type MemberTarget = Readonly<{ update(nodes: readonly Node[], why?: UpdateReasons): unknown }>;

/** CandidateSink is what discovery feeds: the nodes it found, before health is applied. Placement is one too. */
export type CandidateSink = Readonly<{ update(nodes: readonly Node[]): unknown }>;

/** NodeStatus is one candidate as the checker sees it, for inspection. */
export type NodeStatus = Readonly<{ node: Node; health: NodeHealth; lastError: string | undefined }>;

/** HealthChecker filters discovery's candidates down to the nodes that are up. */
export type HealthChecker = CandidateSink &
  Readonly<{
    /** update takes discovery's candidates (all of them, every time) and puts those that are up on the ring. */
    update(candidates: readonly Node[]): void;
    /**
     * reportFailure counts a failure seen outside the checks (the proxy could not connect) as one failed check of
     * the node, at once. Ignored while checks are off or for a node that is not a candidate.
     */
    reportFailure(node: Node | string, reason: string): void;
    /** statuses lists every candidate and its health. */
    statuses(): readonly NodeStatus[];
    /** start begins checking; until then (and after stop) candidates pass through unchecked. */
    start(): void;
    /** stop cancels the timers and waits for checks in flight. */
    stop(): Promise<void>;
  }>;

/** HealthDeps are what the checker talks to. */
export type HealthDeps = Readonly<{
  target: MemberTarget;
  client: NodeClient;
  logger: Logger;
  metrics?: Pick<DirectorMetrics, 'nodeUp'>;
}>;

type Entry = {
  node: Node;
  health: NodeHealth;
  lastError: string | undefined;
  timer: NodeJS.Timeout | undefined;
  checking: Promise<void> | undefined;
};

/** createHealthChecker returns a checker that feeds `deps.target`. */
export function createHealthChecker(config: HealthConfig, deps: HealthDeps): HealthChecker {
  const { target, client, metrics } = deps;
  const log = deps.logger.child({ component: 'health' });
  const thresholds: HealthThresholds = { fall: config.fall, rise: config.rise };
  const enabled = config.intervalMs > 0;
  const entries = new Map<string, Entry>();
  let running = false;

  const publish = (reasons: Record<string, string>): void => {
    const candidates = [...entries.values()];
    const up = candidates.filter((entry) => entry.health.up).map((entry) => entry.node);
    const why: UpdateReasons =
      up.length === 0 && candidates.length > 0
        ? { reasons, emptyReason: `all ${candidates.length} nodes failed their health checks` }
        : { reasons };
    target.update(up, why);
  };

  const record = (entry: Entry, passed: boolean, reason: string | undefined, passive: boolean): void => {
    if (entries.get(entry.node.id) !== entry) return; // left discovery meanwhile
    const step = nextHealth(entry.health, passed, thresholds);
    entry.health = step.health;
    if (!passed) entry.lastError = reason;
    if (step.changed === undefined) {
      if (!passed) log.debug({ node: entry.node.id, failures: step.health.failures, reason, passive }, 'health check failed');
      return;
    }
    metrics?.nodeUp.set({ node: entry.node.id }, step.changed === 'up' ? 1 : 0);
    let why: string;
    if (step.changed === 'down') {
      const count = step.health.failures === 1 ? 'its first health check' : `${step.health.failures} health checks in a row`;
      why = `failed ${count}${passive ? ' (the last one a failed connection)' : ''}: ${reason ?? 'unknown'}`;
      log.warn({ node: entry.node.id, reason: why }, 'node is down: leaving the ring');
    } else {
      why = `passed ${step.health.successes} health checks in a row`;
      log.info({ node: entry.node.id, reason: why }, 'node is up again: joining the ring');
    }
    publish({ [entry.node.id]: why });
  };

  const check = async (entry: Entry): Promise<void> => {
    const answer = await client.checkHealth(entry.node, config.timeoutMs);
    const passed = answer.ok && answer.status >= 200 && answer.status < 300;
    record(entry, passed, answer.ok ? `HTTP ${answer.status}` : answer.reason, false);
  };

  const schedule = (entry: Entry, delayMs: number): void => {
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      const started = Date.now();
      entry.checking = check(entry).finally(() => {
        entry.checking = undefined;
        // The next check starts one interval after this one started, never while it runs.
        if (running && entries.get(entry.node.id) === entry) schedule(entry, Math.max(0, config.intervalMs - (Date.now() - started)));
      });
    }, delayMs);
    entry.timer.unref();
  };

  const forget = (entry: Entry): void => {
    clearTimeout(entry.timer);
    entry.timer = undefined;
    metrics?.nodeUp.remove({ node: entry.node.id });
  };

  return Object.freeze({
    update(candidates: readonly Node[]) {
      const reasons: Record<string, string> = {};
      const next = new Map<string, Node>();
      for (const node of candidates) if (!next.has(node.id)) next.set(node.id, node);
      for (const [id, entry] of entries) {
        const node = next.get(id);
        if (node !== undefined && node.url === entry.node.url) continue;
        forget(entry);
        entries.delete(id);
        if (entry.health.up) reasons[id] = 'left discovery';
      }
      for (const node of next.values()) {
        if (entries.has(node.id)) continue;
        // A new candidate starts up (a director with static nodes serves at once) but unproven: its first check
        // runs now, and a failure takes it out at once.
        const entry: Entry = { node, health: NEW_NODE, lastError: undefined, timer: undefined, checking: undefined };
        entries.set(node.id, entry);
        reasons[node.id] = 'joined discovery';
        metrics?.nodeUp.set({ node: node.id }, 1);
        if (running && enabled) schedule(entry, 0);
      }
      publish(reasons);
    },
    reportFailure(node: Node | string, reason: string) {
      if (!enabled) return;
      const entry = entries.get(typeof node === 'string' ? node : node.id);
      if (entry === undefined || !entry.health.up) return;
      record(entry, false, reason, true);
    },
    statuses() {
      return [...entries.values()].map((entry) => ({ node: entry.node, health: entry.health, lastError: entry.lastError }));
    },
    start() {
      if (running || !enabled) return;
      running = true;
      for (const entry of entries.values()) if (entry.timer === undefined && entry.checking === undefined) schedule(entry, 0);
    },
    async stop() {
      running = false;
      for (const entry of entries.values()) {
        clearTimeout(entry.timer);
        entry.timer = undefined;
      }
      await Promise.allSettled([...entries.values()].flatMap((entry) => (entry.checking === undefined ? [] : [entry.checking])));
    },
  });
}
