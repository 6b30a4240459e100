/**
 * A stand-in for lib/reconcile/worker.ts that misbehaves as PGW_SPEC_MISBEHAVE says (a worker starts with a copy
 * of the process's environment), for the thread specs: `throw`
 * throws at once, `exit` ends the thread with code 3 midway (after one output batch), `garbage` sends a message of no
 * known type, `hog` allocates until the heap limit ends it, `silent` ends without a word.
 */
import { parentPort } from 'node:worker_threads';

const how = process.env['PGW_SPEC_MISBEHAVE'];
const port = parentPort;
if (port === null) throw new Error('not a worker');

if (how === 'throw') throw new Error('the worker broke');
if (how === 'exit') {
  port.postMessage({ type: 'output', lines: '{"level":30,"msg":"half a pass"}\n', counts: { misplaced: 2 }, drained: [] });
  setImmediate(() => process.exit(3));
}
if (how === 'garbage') port.postMessage({ type: 'surprise' });
if (how === 'hog') {
  const kept: string[][] = [];
  for (;;) kept.push(Array.from({ length: 1000 }, (_, i) => `${i}-${kept.length}-${Math.random()}`));
}
