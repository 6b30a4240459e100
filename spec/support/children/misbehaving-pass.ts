/**
 * A stand-in for lib/reconcile/child.ts that misbehaves as PGW_SPEC_MISBEHAVE says (the child inherits the director's
 * environment, less what may hold a secret), for the pass-process specs: `throw` throws at once (uncaught: Node
 * prints the stack and exits 1), `fail` reports a failure with a `failed` message, `exit` ends the process with code 3
 * midway (after one output batch), `garbage` sends a message of no known type, `hog` allocates until the heap limit
 * makes V8 abort the process, `silent` ends without a word, `sleep` waits for its setup and says nothing more.
 */
const how = process.env['PGW_SPEC_MISBEHAVE'];
const send = process.send?.bind(process);
if (send === undefined) throw new Error('not a child with an IPC channel');

if (how === 'throw') throw new Error('the pass broke');
if (how === 'fail') send({ type: 'failed', message: 'the pass broke\nand this line is not logged' }, undefined, undefined, () => process.exit(1));
if (how === 'exit') {
  send({ type: 'output', lines: '{"level":30,"msg":"half a pass"}\n', counts: { misplaced: 2 }, drained: [] }, undefined, undefined, () => process.exit(3));
}
if (how === 'garbage') send({ type: 'surprise' });
if (how === 'silent') process.disconnect();
if (how === 'hog') {
  const kept: string[][] = [];
  for (;;) kept.push(Array.from({ length: 1000 }, (_, i) => `${i}-${kept.length}-${Math.random()}`));
}
if (how === 'sleep') process.on('message', () => undefined);
