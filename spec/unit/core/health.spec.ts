import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { NEW_NODE, type NodeHealth, nextHealth } from '../../../lib/core/health';

const THRESHOLDS = { fall: 3, rise: 2 };

/** run applies results ('+' passed, '-' failed) from a state; returns the end state and every transition in order. */
function run(from: NodeHealth, results: string): { health: NodeHealth; changes: string } {
  let health = from;
  let changes = '';
  for (const result of results) {
    const step = nextHealth(health, result === '+', THRESHOLDS);
    health = step.health;
    changes += step.changed === undefined ? '.' : step.changed === 'up' ? 'U' : 'D';
  }
  return { health, changes };
}

describe('nextHealth (fall 3, rise 2)', () => {
  // results: what the checks said, in order; changes: '.' nothing, 'D' went down, 'U' came back, per result.
  const cases: { name: string; results: string; changes: string; up: boolean }[] = [
    { name: 'keeps a new node that passes up', results: '+++', changes: '...', up: true },
    { name: 'takes a new node that never passed out at its first failure', results: '-', changes: 'D', up: false },
    { name: 'takes a proven node out after 3 failures in a row', results: '+---', changes: '...D', up: false },
    { name: 'keeps a proven node when a success breaks the failures', results: '+--+--', changes: '......', up: true },
    { name: 'brings a down node back after 2 successes in a row', results: '+---++', changes: '...D.U', up: true },
    { name: 'keeps a down node out when a failure breaks the successes', results: '+---+-+', changes: '...D...', up: false },
    { name: 'needs 3 failures again after coming back', results: '-++--', changes: 'D.U..', up: true },
    { name: 'takes a node that came back out after 3 more failures', results: '-++---', changes: 'D.U..D', up: false },
    { name: 'counts nothing more once down', results: '+------', changes: '...D...', up: false },
  ];
  for (const { name, results, changes, up } of cases) {
    it(`${name} (${results})`, () => {
      const end = run(NEW_NODE, results);
      assert.equal(end.changes, changes);
      assert.equal(end.health.up, up);
    });
  }

  it('takes a node out at its first failure with fall 1 and back at its first success with rise 1', () => {
    const one = { fall: 1, rise: 1 };
    const proven = nextHealth(NEW_NODE, true, one).health;
    const down = nextHealth(proven, false, one);
    assert.equal(down.changed, 'down');
    assert.equal(nextHealth(down.health, true, one).changed, 'up');
  });

  it('never mutates the state it is given', () => {
    const before = JSON.stringify(NEW_NODE);
    nextHealth(NEW_NODE, false, THRESHOLDS);
    assert.equal(JSON.stringify(NEW_NODE), before);
  });
});
