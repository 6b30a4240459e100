import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { type ThreadSystem, createThreadPriorities, nicer } from '../../../lib/reconcile/priority';

/** fakeThreads is a process of threads 1 (main), 2, 3 and 4 at the given nice values; it records every change. */
function fakeThreads(nices: Record<number, number>, options: { mayRaise?: boolean; gone?: number[] } = {}) {
  const changes: [number, number][] = [];
  const system: ThreadSystem = {
    threads: () => Object.keys(nices).map(Number),
    mainThread: 1,
    get: (tid) => {
      if (options.gone?.includes(tid)) throw new Error('ESRCH');
      return nices[tid] as number;
    },
    set: (tid, nice) => {
      if (options.gone?.includes(tid)) throw new Error('ESRCH');
      changes.push([tid, nice]);
      nices[tid] = nice;
    },
    mayRaiseTo: () => options.mayRaise ?? true,
  };
  return { system, nices, changes };
}

describe('pass thread priorities', () => {
  it('lowers every thread but the main one by 10 nice steps, 19 at most', () => {
    assert.equal(nicer(0), 10);
    assert.equal(nicer(5), 15);
    assert.equal(nicer(12), 19);
    assert.equal(nicer(19), 19);
  });

  it('lowers the helper threads while a pass runs and restores them when it ends', () => {
    const { system, nices } = fakeThreads({ 1: 0, 2: 0, 3: 4, 4: 15 });
    const priorities = createThreadPriorities(system);
    const restore = priorities.lower();
    assert.deepEqual(nices, { 1: 0, 2: 10, 3: 14, 4: 19 });
    restore();
    assert.deepEqual(nices, { 1: 0, 2: 0, 3: 4, 4: 15 });
  });

  it('restores only when the last of overlapping passes ends, and once per pass', () => {
    const { system, nices, changes } = fakeThreads({ 1: 0, 2: 0 });
    const priorities = createThreadPriorities(system);
    const first = priorities.lower();
    const second = priorities.lower();
    assert.deepEqual(changes, [[2, 10]], 'the second pass finds them lowered already');
    first();
    first();
    assert.equal(nices[2], 10, 'a pass still runs');
    second();
    assert.deepEqual(changes, [[2, 10], [2, 0]]);
    priorities.lower();
    assert.deepEqual(changes, [[2, 10], [2, 0], [2, 10]], 'a later pass lowers them again');
  });

  it('leaves the threads alone when it could not put them back (no CAP_SYS_NICE, no RLIMIT_NICE)', () => {
    const { system, changes } = fakeThreads({ 1: 0, 2: 0, 3: 0 }, { mayRaise: false });
    createThreadPriorities(system).lower()();
    assert.deepEqual(changes, []);
  });

  it('skips a thread that ended, and changes the others', () => {
    const { system, nices } = fakeThreads({ 1: 0, 2: 0, 3: 0 }, { gone: [2] });
    const restore = createThreadPriorities(system).lower();
    assert.equal(nices[3], 10);
    restore();
    assert.equal(nices[3], 0);
  });

  it('changes the threads of this process on Linux and puts them back', { skip: process.platform !== 'linux' }, async () => {
    const { readdirSync } = await import('node:fs');
    const { getPriority } = await import('node:os');
    const tids = readdirSync('/proc/self/task').map(Number).filter((tid) => tid !== process.pid);
    const before = tids.map((tid) => getPriority(tid));
    const restore = createThreadPriorities().lower();
    const during = tids.map((tid) => getPriority(tid));
    restore();
    assert.deepEqual(tids.map((tid) => getPriority(tid)), before);
    assert.equal(getPriority(process.pid), getPriority(0), 'the main thread is never changed');
    // With CAP_SYS_NICE (root, as in CI) the helper threads are lowered; without it nothing may be put back, so nothing changes.
    const { readFileSync } = await import('node:fs');
    const capabilities = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0';
    const maySysNice = ((BigInt(`0x${capabilities}`) >> 23n) & 1n) === 1n;
    if (maySysNice) assert.deepEqual(during, before.map((nice) => nicer(nice)));
    else if (before.every((nice) => nice === 0)) assert.deepEqual(during, before);
  });
});
