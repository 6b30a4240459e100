/**
 * The CPU priority of the threads that work for a reconciliation pass. The pass's worker thread lowers its own (Linux
 * keeps a nice value per thread), but a third of the pass's CPU time is not spent on that thread: V8 runs the
 * garbage collection of every isolate partly on the process's shared platform threads (concurrent marking and
 * sweeping, parallel scavenges), and those stayed at the process's priority, level with the main thread that answers
 * pushes. While a pass runs, those helper threads are lowered too, and put back when the last pass ends.
 *
 * Putting a thread back is raising its priority, which Linux allows only with CAP_SYS_NICE or a RLIMIT_NICE that
 * reaches the old value (an unprivileged process has neither by default). Without that, the helper threads are left
 * alone: lowered for good, they would slow the main thread's own garbage collection between passes too.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

/** PASS_NICENESS is how many nice steps below the process a pass's threads run (19, the lowest, at most). */
export const PASS_NICENESS = 10;

/** nicer returns the nice value PASS_NICENESS steps below `nice`. */
export function nicer(nice: number): number {
  return Math.min(19, nice + PASS_NICENESS);
}

/** ThreadPriorities lowers and restores the priority of the process's helper threads. */
export type ThreadPriorities = Readonly<{
  /** lower lowers every thread of the process but the main one, for one pass; call the function it returns when that pass ends. */
  lower(): () => void;
}>;

/** ThreadSystem is how the threads are found and changed (Linux's /proc and setpriority; specs pass their own). */
export type ThreadSystem = Readonly<{
  /** The ids of the process's threads, or none where threads have no priority of their own. */
  threads(): readonly number[];
  mainThread: number;
  get(tid: number): number;
  set(tid: number, nice: number): void;
  /** Whether a thread of this process may be set back to `nice` once it has been lowered. */
  mayRaiseTo(nice: number): boolean;
}>;

/** CAP_SYS_NICE is the capability number that allows raising a priority (linux/capability.h). */
const CAP_SYS_NICE = 23n;

/** mayRaiseTo tells from /proc/self whether this process may set a thread's nice value back down to `nice`. */
function linuxMayRaiseTo(nice: number): boolean {
  try {
    const capabilities = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    if (capabilities !== undefined && ((BigInt(`0x${capabilities}`) >> CAP_SYS_NICE) & 1n) === 1n) return true;
    // RLIMIT_NICE's soft limit r allows nice values down to 20 - r (getrlimit(2)); "unlimited" allows any.
    const limit = /^Max nice priority\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1];
    if (limit === 'unlimited') return true;
    return limit !== undefined && nice >= 20 - Number(limit);
  } catch {
    return false;
  }
}

const LINUX: ThreadSystem = {
  threads: () => {
    if (process.platform !== 'linux') return [];
    try {
      return readdirSync('/proc/self/task').map(Number);
    } catch {
      return [];
    }
  },
  mainThread: process.pid,
  get: (tid) => getPriority(tid),
  set: (tid, nice) => setPriority(tid, nice),
  mayRaiseTo: linuxMayRaiseTo,
};

/**
 * createThreadPriorities returns the process's ThreadPriorities. Passes may overlap: the threads are lowered when the
 * first starts and restored to what they were when the last ends. A thread that cannot be changed (gone, not allowed,
 * or not allowed back) is left as it is.
 */
export function createThreadPriorities(system: ThreadSystem = LINUX): ThreadPriorities {
  let passes = 0;
  let restore: [number, number][] = [];
  const lowerAll = (): void => {
    for (const tid of system.threads()) {
      if (tid === system.mainThread) continue;
      try {
        const before = system.get(tid);
        const after = nicer(before);
        if (after === before || !system.mayRaiseTo(before)) continue;
        system.set(tid, after);
        restore.push([tid, before]);
      } catch {
        // the thread ended, or lowering is not allowed: it runs at its priority
      }
    }
  };
  const restoreAll = (): void => {
    for (const [tid, nice] of restore) {
      try {
        system.set(tid, nice);
      } catch {
        // the thread ended; raising back may also be refused (RLIMIT_NICE): it stays lower, which only slows it
      }
    }
    restore = [];
  };
  return Object.freeze({
    lower: () => {
      if (passes++ === 0) lowerAll();
      let done = false;
      return () => {
        if (done) return;
        done = true;
        if (--passes === 0) restoreAll();
      };
    },
  });
}
