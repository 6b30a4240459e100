/**
 * Reconciliation passes in a child process. A pass over tens of thousands of groups allocates hundreds of MiB of
 * short-lived objects (listings, families, 20,000 requests). On the thread that answers pushes, collecting them paused
 * every push for tens of milliseconds; in a worker thread the collections still ran on V8's helper threads, which a
 * process shares, at the pushes' priority. Here each pass runs in a child process of its own (lib/reconcile/child.ts),
 * started for the pass and ended after it, with its own V8, heap, collector and helper threads, every one of them
 * niced from birth (`nice -n 10`), collecting on its main thread only (`--single-threaded-gc`), its old generation
 * bounded by --reconcile.max-heap (`--max-old-space-size`). The director keeps the ring and the tombstones: it hands the
 * child a snapshot of the ring over the IPC channel, answers its tombstone reads and lookups, writes its log lines and
 * adds its counts to the director's metrics (lib/reconcile/protocol.ts). A child that fails, throws, exits, sends
 * garbage, runs out of memory or cannot start is a failed pass: pass() rejects with one line, the errors counter goes
 * up, and the director goes on.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import type { LookupFunction } from 'node:net';
import { delimiter, join } from 'node:path';

import pino, { type Logger } from 'pino';

import type { LogLevel } from '../config';
import type { Placement } from '../placement';
import { COUNTED_METRICS, type PassReport, type ReconcileMetrics, type ReconcileOptions, type Reconciler, type TombstoneReader } from '../reconcile';
import type { FromChild, PassSetup, ToChild, TombstonesAnswer } from './protocol';
import { answerLookup } from '../threads/lookup';

/** CHILD_FILE is the compiled entry point of a pass's child process, beside this file. */
const CHILD_FILE = join(__dirname, 'child.js');
/** How much nicer than the director the pass runs (Linux nice steps; `nice` stops at 19). */
const NICER = 10;
/** How much of the child's stderr is kept to explain its end (V8's out-of-memory report is a few KiB). */
const STDERR_KEEP = 64 * 1024;

/** ProcessReconcilerOptions configures createProcessReconciler. */
export type ProcessReconcilerOptions = Readonly<{
  /** The placement whose ring each pass reconciles against (read once, when the pass starts). */
  placement: Placement;
  /** The ring's vnodes per node (--ring.vnodes), so the child builds the same ring. */
  vnodes: number;
  options: ReconcileOptions;
  client: Readonly<{ timeoutMs: number; authorization: string | undefined }>;
  logLevel: LogLevel;
  metrics: ReconcileMetrics;
  /** The director's logger: the child's lines are written to its destination. */
  logger: Logger;
  tombstones: TombstoneReader | undefined;
  /** How node names resolve (DNS discovery's resolver), when not the system's: the child's lookups come here. */
  lookup?: LookupFunction | undefined;
  /** The child's largest old generation in MiB (--reconcile.max-heap); Node's default when absent. */
  maxHeapMb?: number | undefined;
  /** The child's entry point. @default lib/reconcile/child.js (specs start a misbehaving one) */
  childFile?: string;
  /** The Node.js binary the child runs. @default process.execPath */
  execPath?: string;
  /** The `nice` command that starts the child; when it cannot be found, the child runs at the director's priority. @default 'nice' */
  niceCommand?: string;
}>;

/** LogDestination is where a pino logger writes its lines. */
type LogDestination = { write(text: string): unknown };

/** findCommand returns the path of an executable named like a shell would find it, or undefined. */
function findCommand(command: string, path: string | undefined): string | undefined {
  const candidates = command.includes('/') ? [command] : (path ?? '').split(delimiter).filter((dir) => dir !== '').map((dir) => join(dir, command));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not there, or not executable: the next one
    }
  }
  return undefined;
}

/**
 * childEnvironment is the director's environment without what may hold a secret (Consul's token and the like): a
 * process's environment is as readable as its command line (/proc/<pid>/environ), and the pass needs neither.
 */
export function childEnvironment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([name]) => !/TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|KEY|COOKIE/i.test(name)));
}

/** explainExit says in one line why a child ended before its pass did, from its exit and the end of its stderr. */
function explainExit(code: number | null, signal: NodeJS.Signals | null, stderr: string): string {
  // V8 aborts a process whose old generation reaches --max-old-space-size: "... JavaScript heap out of memory".
  if (/heap out of memory/.test(stderr)) return 'it needed more memory than --reconcile.max-heap allows (JavaScript heap out of memory)';
  const how = signal === null ? `code ${code}` : `signal ${signal}`;
  // Node prints an uncaught exception's stack, starting "Error: message"; `nice` and a missing file say why in one line.
  const lines = stderr.split('\n').map((line) => line.trim()).filter((line) => line !== '' && !/^Node\.js v\d/.test(line));
  const why = lines.find((line) => /^\w*(Error|Exception)\b.*?: /.test(line)) ?? lines[lines.length - 1];
  return `the pass process exited (${how}) before the pass ended${why === undefined ? '' : `: ${why.slice(0, 200)}`}`;
}

/**
 * createProcessReconciler returns a Reconciler whose passes each run in a child process. Passes may overlap (each
 * has its own child); the director runs one at a time.
 */
export function createProcessReconciler(settings: ProcessReconcilerOptions): Reconciler {
  const { placement, metrics, logger, tombstones } = settings;
  // pino.symbols.streamSym is pino's documented handle on a logger's destination: the child formats its lines with
  // the same options (lib/logger.ts), and here they are written out unchanged.
  const destination = (logger as unknown as Record<symbol, LogDestination | undefined>)[pino.symbols.streamSym] ?? process.stdout;
  const nice = findCommand(settings.niceCommand ?? 'nice', process.env['PATH']);
  let warnedNoNice = false;
  const heapFlags = settings.maxHeapMb === undefined ? [] : [`--max-old-space-size=${Math.max(1, Math.floor(settings.maxHeapMb))}`];
  // One collector thread per pass: V8's helper threads would otherwise do much of the collection, several at once.
  const nodeArgs = ['--single-threaded-gc', ...heapFlags, settings.childFile ?? CHILD_FILE];
  const execPath = settings.execPath ?? process.execPath;

  const answerTombstones = (send: (answer: ToChild) => void, id: number, now: number): void => {
    if (tombstones === undefined) {
      send({ type: 'tombstones', id, ok: true, entries: [] });
      return;
    }
    tombstones.read(now).then(
      (map) => send({ type: 'tombstones', id, ok: true, entries: [...map] } satisfies TombstonesAnswer),
      (error: unknown) => send({ type: 'tombstones', id, ok: false, message: (error as Error).message }),
    );
  };

  const pass = (stop?: AbortSignal): Promise<PassReport> =>
    new Promise((resolve, reject) => {
      const setup: PassSetup = {
        ring: { nodes: placement.ring.nodes, vnodes: settings.vnodes, hashKey: placement.hashKey },
        options: settings.options,
        client: { ...settings.client, lookupOnMain: settings.lookup !== undefined },
        logLevel: settings.logLevel,
        tombstones: tombstones !== undefined,
      };
      if (nice === undefined && !warnedNoNice) {
        warnedNoNice = true;
        logger.warn({ component: 'reconcile', command: settings.niceCommand ?? 'nice' }, 'nice not found: reconciliation passes run at the priority of the pushes');
      }
      let settled = false;
      let child: ChildProcess | undefined;
      const fail = (why: string): void => {
        if (settled) return;
        settled = true;
        metrics.errors.inc();
        metrics.passes.inc();
        child?.kill('SIGKILL');
        reject(new Error(`the reconciliation pass failed in its process: ${why}`));
      };
      try {
        const [command, args] = nice === undefined ? [execPath, nodeArgs] : [nice, ['-n', String(NICER), execPath, ...nodeArgs]];
        child = spawn(command, args, {
          stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
          serialization: 'advanced',
          env: childEnvironment(process.env),
        });
      } catch (error) {
        fail(`it could not be started: ${(error as Error).message}`);
        return;
      }
      const running = child;
      const send = (message: ToChild): void => {
        // A child gone is reported by its 'close'; the send's own error adds nothing.
        if (running.connected) running.send(message, (error) => void error);
      };
      let stderr = '';
      running.stderr?.setEncoding('utf8');
      running.stderr?.on('data', (text: string) => {
        stderr += text;
        if (stderr.length > 2 * STDERR_KEEP) stderr = stderr.slice(-STDERR_KEEP);
      });
      // Stopping is the child's to do, between requests: a process ended mid-move would leave a group on two nodes.
      const askToStop = (): void => {
        if (!settled) send({ type: 'stop' });
      };
      if (stop?.aborted === true) askToStop();
      else stop?.addEventListener('abort', askToStop, { once: true });
      running.once('close', () => stop?.removeEventListener('abort', askToStop));
      running.on('message', (message: FromChild) => {
        if (settled) return;
        switch (message?.type) {
          case 'output':
            if (message.lines !== '') destination.write(message.lines);
            for (const name of COUNTED_METRICS) {
              const by = message.counts[name];
              if (by !== undefined && by > 0) metrics[name].inc(by);
            }
            for (const [node, value] of message.drained) metrics.drainedEmpty.set({ node }, value);
            if (message.durationS !== undefined) metrics.duration.set(message.durationS);
            return;
          case 'tombstones':
            answerTombstones(send, message.id, message.now);
            return;
          case 'lookup':
            answerLookup(settings.lookup, message.id, message.hostname, message.family, send);
            return;
          case 'done':
            settled = true;
            // The child exits when its channel closes.
            if (running.connected) running.disconnect();
            resolve(message.report);
            return;
          case 'failed':
            fail(String(message.message).split('\n', 1)[0] ?? '');
            return;
          default:
            fail(`unexpected message ${JSON.stringify(message)?.slice(0, 100)}`);
        }
      });
      // 'error': the process could not be spawned (no pid then), killed, or sent a message.
      running.on('error', (error) => fail(running.pid === undefined ? `it could not be started: ${error.message}` : error.message));
      running.on('close', (code, signal) => fail(explainExit(code, signal, stderr)));
      send({ type: 'setup', setup });
    });

  return Object.freeze({ pass });
}
