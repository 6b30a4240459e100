/**
 * A stand-in for lib/fleet/worker.ts that misbehaves as PGW_SPEC_FLEET_WORKER says (a worker starts with a copy of
 * the process's environment), for the fleet thread specs: `throw` throws at once, `exit` ends the thread with code 3
 * at its first read, `garbage` answers a read with a message of no known type, `hog` allocates at its first read
 * until the heap limit ends it, `silent` ends without a word, `stuck` spins forever at its first read; anything else runs the real worker.
 */
import { parentPort } from 'node:worker_threads';

const how = process.env['PGW_SPEC_FLEET_WORKER'];
const port = parentPort;
if (port === null) throw new Error('not a worker');

if (how === 'throw') throw new Error('the fleet worker broke');
else if (how === 'exit') port.on('message', () => process.exit(3));
else if (how === 'garbage') port.on('message', () => port.postMessage({ type: 'surprise' }));
else if (how === 'silent') {
  // listens for nothing: the thread ends at once, code 0
}
else if (how === 'stuck') {
  port.on('message', () => {
    // Never returns: the thread's event loop stops turning, as in a busy-loop bug.
    for (let spins = 0; spins >= 0; spins = (spins + 1) % 1e9) Math.sqrt(spins);
  });
} else if (how === 'hog') {
  port.on('message', () => {
    const kept: string[][] = [];
    for (;;) kept.push(Array.from({ length: 1000 }, (_, i) => `${i}-${kept.length}-${Math.random()}`));
  });
} else void import('../../../lib/fleet/worker');
