/**
 * What the kernel's scheduler did with a benchmark's processes, thread by thread (Linux /proc): how long each thread
 * ran, how long it waited on a run queue for a CPU while runnable, how many times it was put on a CPU, and its nice
 * value. The benchmarks use it to tell work from waiting: a thread that is late without running was waiting for a CPU.
 * Elsewhere than Linux every figure is 0.
 */
import { readFileSync, readdirSync } from 'node:fs';

/** ThreadStat is one thread's counters since it started. */
export type ThreadStat = Readonly<{ tid: number; nice: number; runNs: number; waitNs: number; slices: number }>;

/** readThreads returns the counters of every thread of a process, or none if it is gone or this is not Linux. */
export function readThreads(pid: number | undefined): ThreadStat[] {
  if (pid === undefined || process.platform !== 'linux') return [];
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const threads: ThreadStat[] = [];
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      // Fields after the command's closing parenthesis, from field 3 (state): nice is field 19.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // schedstat: time on a CPU (ns), time waiting on a run queue (ns), timeslices run.
      const [runNs, waitNs, slices] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').trim().split(' ').map(Number);
      threads.push({ tid: Number(tid), nice: Number(fields[16]), runNs: runNs ?? 0, waitNs: waitNs ?? 0, slices: slices ?? 0 });
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return threads;
}

/** Usage is what a set of threads did over an interval. */
export type Usage = { runNs: number; waitNs: number; slices: number };

/** usageBetween sums what the threads picked by `pick` did between two readings (threads born since count from 0). */
export function usageBetween(before: readonly ThreadStat[], after: readonly ThreadStat[], pick: (thread: ThreadStat) => boolean = () => true): Usage {
  const start = new Map(before.map((thread) => [thread.tid, thread]));
  const usage: Usage = { runNs: 0, waitNs: 0, slices: 0 };
  for (const thread of after) {
    if (!pick(thread)) continue;
    const from = start.get(thread.tid);
    usage.runNs += thread.runNs - (from?.runNs ?? 0);
    usage.waitNs += thread.waitNs - (from?.waitNs ?? 0);
    usage.slices += thread.slices - (from?.slices ?? 0);
  }
  return usage;
}

/** machineBusyNs returns the CPU time every CPU of the machine has spent busy (not idle, not waiting for I/O) since boot. */
export function machineBusyNs(): number {
  if (process.platform !== 'linux') return 0;
  // /proc/stat's first line: user nice system idle iowait irq softirq steal ..., in USER_HZ (100 per second).
  const fields = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
  const busy = fields.slice(0, 8).reduce((sum, value, i) => (i === 3 || i === 4 ? sum : sum + value), 0);
  return busy * 1e7;
}
