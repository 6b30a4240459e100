/**
 * Name lookups across threads and processes. The fleet reads' worker thread and the reconcile pass's child process
 * resolve node names through the director's main-thread lookup (DNS discovery's resolver and its last good answers),
 * by message: they ask with a `lookup` request, the main thread answers with a LookupAnswer. Both sides of that
 * exchange are here, once.
 */
import type { LookupAddress } from 'node:dns';
import type { LookupFunction } from 'node:net';

/** LookupAnswer is the main thread's answer to a `lookup` request: every address of the name, or the error. */
export type LookupAnswer = Readonly<
  { type: 'lookup'; id: number } & ({ ok: true; addresses: readonly LookupAddress[] } | { ok: false; message: string; code: string | undefined })
>;

/** answerLookup resolves `hostname` with the main thread's `lookup` and sends the answer to request `id`. */
export function answerLookup(
  lookup: LookupFunction | undefined,
  id: number,
  hostname: string,
  family: number,
  send: (answer: LookupAnswer) => void,
): void {
  if (lookup === undefined) {
    send({ type: 'lookup', id, ok: false, message: 'no lookup on the main thread', code: undefined });
    return;
  }
  lookup(hostname, { family, all: true }, (error, addresses) => {
    if (error !== null) send({ type: 'lookup', id, ok: false, message: error.message, code: error.code });
    else send({ type: 'lookup', id, ok: true, addresses: Array.isArray(addresses) ? addresses : [{ address: addresses, family }] });
  });
}

/**
 * lookupThrough returns a LookupFunction for a worker: `ask` sends the request to the main thread and resolves with
 * its answer, which is handed to the caller as `dns.lookup` would (one address, or all of them).
 */
export function lookupThrough(ask: (hostname: string, family: number) => Promise<LookupAnswer>): LookupFunction {
  return (hostname, options, callback) => {
    const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : Number(options.family ?? 0);
    void ask(hostname, family).then((answer) => {
      if (!answer.ok) {
        const error: NodeJS.ErrnoException = Object.assign(new Error(answer.message), { code: answer.code, hostname, syscall: 'getaddrinfo' });
        callback(error, options.all === true ? [] : '', undefined);
      } else if (options.all === true) callback(null, [...answer.addresses]);
      else if (answer.addresses[0] === undefined) callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }), '', undefined);
      else callback(null, answer.addresses[0].address, answer.addresses[0].family);
    });
  };
}
