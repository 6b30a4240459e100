import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { createPacer } from '../../lib/pace';

/** A clock the spec moves by hand. */
function manualClock() {
  let t = 0;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

/** countTurns counts turns of the event loop (one immediate per turn) until stopped. */
function countTurns() {
  let turn = 0;
  let running = true;
  const tick = (): void => {
    turn++;
    if (running) setImmediate(tick);
  };
  setImmediate(tick);
  return { turn: () => turn, stop: () => (running = false) };
}

describe('createPacer', () => {
  it('says a slice is due once it has run sliceMs, and not before', () => {
    const clock = manualClock();
    const pacer = createPacer({ sliceMs: 5, now: clock.now });
    assert.equal(pacer.due(), false);
    clock.advance(4.9);
    assert.equal(pacer.due(), false);
    clock.advance(0.1);
    assert.equal(pacer.due(), true);
  });

  it('starts at most one slice per turn of the event loop, in the order asked', async () => {
    const pacer = createPacer({ sliceMs: 5, now: manualClock().now });
    const turns = countTurns();
    const woken: [string, number][] = [];
    await Promise.all(['a', 'b', 'c'].map((name) => pacer.next().then(() => woken.push([name, turns.turn()]))));
    turns.stop();
    assert.deepEqual(woken.map(([name]) => name), ['a', 'b', 'c']);
    const at = woken.map(([, turn]) => turn);
    assert.ok(at[0] !== undefined && at[1] !== undefined && at[2] !== undefined && at[0] < at[1] && at[1] < at[2], `turns ${at.join(', ')}`);
  });

  it('takes pieces of work in turns, so one that keeps working never starves another', async () => {
    const clock = manualClock();
    const pacer = createPacer({ sliceMs: 5, now: clock.now });
    const order: string[] = [];
    const work = async (name: string): Promise<void> => {
      for (let slice = 0; slice < 3; slice++) {
        if (pacer.due()) await pacer.next();
        order.push(name);
        clock.advance(10); // each slice overruns: the next unit must wait for a turn
      }
    };
    clock.advance(10);
    await Promise.all([work('a'), work('b')]);
    assert.deepEqual(order, ['a', 'b', 'a', 'b', 'a', 'b']);
  });

  it('lets timers run between the slices of two pieces of work', async () => {
    const pacer = createPacer({ sliceMs: 1 });
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const spin = async (): Promise<number> => {
      let seenTicks = 0;
      const until = performance.now() + 30;
      while (performance.now() < until) {
        if (pacer.due()) {
          await pacer.next();
          seenTicks = Math.max(seenTicks, ticks);
        }
      }
      return seenTicks;
    };
    const seen = await Promise.all([spin(), spin()]);
    clearInterval(timer);
    assert.ok(seen.every((n) => n > 0), `timers seen: ${seen.join(', ')}`);
  });
});
