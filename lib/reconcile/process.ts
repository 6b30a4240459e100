/**
 * Reconciliation passes in a child process. A pass over tens of thousands of groups allocates hundreds of MiB of
 * short-lived objects (listings, families, 20,000 requests). On the thread that answers pushes, collecting them paused
 * every push for tens of milliseconds; in a worker thread the collections still ran on V8's helper threads, which a
 * process shares, at the pushes' priority. Here each pass runs in a child process of its own (lib/reconcile/child.ts),
 * started for the pass and ended after it, with its own V8, heap, collector and helper threads, every one of them
 * under Linux's idle scheduling policy from birth (`chrt --idle 0`: the kernel gives a core to the pass only when
 * nothing else wants it, and takes it back the moment a push arrives) and niced (`nice -n 10`, which also lowers its
 * I/O priority), collecting on its main thread only (`--single-threaded-gc`), its old generation
 * bounded by --reconcile.max-heap (`--max-old-space-size`). The director keeps the ring and the tombstones: it hands the
 * child a snapshot of the ring over the IPC channel, answers its tombstone reads and lookups, writes its log lines and
 * adds its counts to the director's metrics (lib/reconcile/protocol.ts). A child that fails, throws, exits, sends
 * garbage, runs out of memory or cannot start is a failed pass: pass() rejects with one line, the errors counter goes
 * up, and the director goes on.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import type { LookupFunction, Socket } from 'node:net';
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
/**
 * The arguments that put a command under SCHED_IDLE (util-linux's `chrt`; any process may lower its own policy). Under
 * the normal policy, even at nice 19, a push that wakes the director may wait for the pass to use up its time slice;
 * under the idle policy it never waits for the pass.
 */
const IDLE_POLICY = ['--idle', '0'];
/**
 * The arguments that have the kernel send SIGKILL to a command when the thread that started it (the director's main
 * thread) ends (prctl PR_SET_PDEATHSIG, kept across chrt's, nice's and node's exec): a director killed with SIGKILL
 * leaves no pass behind even when the pass gets no core to see its channel close.
 */
const DEATH_SIGNAL = ['--pdeathsig', 'KILL'];
/**
 * SETUP_WAIT_MS is how long a child waits for its pass's setup before it exits on its own: a prepared child whose pass
 * never comes (the director stopped scheduling, or was stopped without ending it) does not linger.
 */
export const SETUP_WAIT_MS = 60_000;
/**
 * STOP_WAIT_MS is how long a pass asked to stop (the director shutting down) has to end before its process is killed.
 * A pass stops between two requests, in well under a second, when it gets a core; under the idle policy on a machine
 * whose cores are busy with other work it may not run for minutes, and would hold the director's shutdown that long.
 * Killed, it stops as it does when its channel closes: mid-move at worst (every step of a pass is idempotent, the next
 * pass settles a group left on two nodes). Ten seconds leave a busy pass time to stop cleanly, and the director's
 * shutdown the rest of its 30 s.
 */
export const STOP_WAIT_MS = 10_000;
/**
 * A pass under the idle policy that has been starved this long (runnable at most of the checks within it, yet given
 * under 1% of a core) is ended and run again under the normal policy, niced: the idle policy gives the pass only what
 * nothing else on the machine wants, and on cores kept busy by other work that can be nothing for as long as the work
 * lasts. A pass that stops before it starts is no loss; one ended mid-move leaves a group on two nodes for the next pass
 * to settle, as a pass ended by SIGKILL does.
 */
export const STARVED_MS = 30_000;
/** How often a pass under the idle policy is checked for starvation. */
const STARVE_CHECK_MS = 5_000;
/** How much of a core a pass must get, over the starvation window, not to count as starved. */
const STARVED_SHARE = 0.01;

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
  /** How long a prepared child waits for its pass before it exits. @default SETUP_WAIT_MS (a minute) */
  setupWaitMs?: number;
  /** How long a pass asked to stop has to end before its process is killed. @default STOP_WAIT_MS (10 s) */
  stopWaitMs?: number;
  /**
   * How long a pass under the idle policy may be starved before it runs again under the normal policy, and how often
   * that is checked. @default STARVED_MS (30 s), checked every 5 s
   */
  starvation?: Readonly<{ afterMs: number; checkMs: number }>;
  /** The `nice` command that starts the child; when it cannot be found, the child runs at the director's priority. @default 'nice' */
  niceCommand?: string;
  /**
   * The `chrt` command that starts the child under the idle scheduling policy; when it cannot be found, or cannot set
   * that policy here (a sandbox may refuse it), the child runs under the normal policy, niced. @default 'chrt'
   */
  chrtCommand?: string;
  /**
   * The `setpriv` command that has the kernel kill the child when the director dies (`--pdeathsig KILL`); without it
   * the child exits when it sees its channel close, which a starved child sees only when it next runs. @default 'setpriv'
   */
  setprivCommand?: string;
}>;

/** How long `chrt` may take to say whether it can set the idle policy (a millisecond or two when it can) before it is ended. */
const IDLE_POLICY_ASK_MS = 5000;
/** What `chrt` said when asked for the idle policy, by its path: undefined when it gave it. */
const idlePolicyAnswers = new Map<string, string | undefined>();

/**
 * idlePolicyRefused asks `chrt` once per process whether it can put a process under the idle policy here, and returns
 * its refusal (a sandbox may refuse sched_setscheduler), or undefined. It sets the policy on itself, then runs itself
 * to print the policy it runs under (`chrt -p 0`), which must be SCHED_IDLE: a chrt that exits 0 without running its
 * command, or without setting the policy, would otherwise start no pass at all. A millisecond or two, once, when the
 * director starts.
 */
function idlePolicyRefused(chrt: string): string | undefined {
  if (!idlePolicyAnswers.has(chrt)) {
    // SIGKILL past the timeout: a chrt that hangs and ignores SIGTERM (spawnSync's default) would hold the director's
    // start, and its event loop, for as long as it hangs.
    const asked = spawnSync(chrt, [...IDLE_POLICY, chrt, '-p', '0'], {
      env: childEnvironment(process.env),
      encoding: 'utf8',
      timeout: IDLE_POLICY_ASK_MS,
      killSignal: 'SIGKILL',
    });
    const firstLine = (text: string | undefined): string => text?.trim().split('\n', 1)[0] ?? '';
    let refusal: string | undefined;
    // util-linux: "pid 4242's current scheduling policy: SCHED_IDLE".
    if (asked.status === 0) refusal = /\bSCHED_IDLE\b/.test(asked.stdout ?? '') ? undefined : `it did not report SCHED_IDLE: ${firstLine(asked.stdout).slice(0, 200)}`;
    else refusal = firstLine(asked.stderr) || (asked.error?.message ?? `exit ${asked.status ?? asked.signal}`);
    idlePolicyAnswers.set(chrt, refusal);
  }
  return idlePolicyAnswers.get(chrt);
}

/** Whether `setpriv --pdeathsig KILL` works, by the path of setpriv (util-linux 2.33 and later have the option). */
const deathSignalAnswers = new Map<string, boolean>();

/** hasDeathSignal asks `setpriv` once per process whether it can set the parent-death signal (a millisecond). */
function hasDeathSignal(setpriv: string): boolean {
  if (!deathSignalAnswers.has(setpriv)) {
    const asked = spawnSync(setpriv, [...DEATH_SIGNAL, 'true'], { env: childEnvironment(process.env), timeout: IDLE_POLICY_ASK_MS, killSignal: 'SIGKILL', stdio: 'ignore' });
    deathSignalAnswers.set(setpriv, asked.status === 0);
  }
  return deathSignalAnswers.get(setpriv) === true;
}

/** Started is a child process as started, before or during its pass; `idle`: under the idle policy. */
type Started = { child: ChildProcess; stderr: string; ended: boolean; startError: string | undefined; idle: boolean };

/**
 * Outcome is how a pass in a child ended: its report, or why it failed, whether the child had heard of it, and whether
 * it was ended because the idle policy starved it.
 */
type Outcome = Readonly<{ ok: true; report: PassReport } | { ok: false; why: string; heard: boolean; starved?: true }>;

/**
 * threadState reads whether a thread is runnable (running, or waiting for a core) and how long it has run, in
 * nanoseconds (Linux: the state in /proc/<pid>/stat, the run time in /proc/<pid>/schedstat), or undefined where
 * there are no such files or the thread is gone.
 */
function threadState(pid: number): { runnable: boolean; runNs: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses: the state is the field after its closing one.
    const state = stat.charAt(stat.lastIndexOf(')') + 2);
    const runNs = Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ', 1)[0]);
    return Number.isNaN(runNs) ? undefined : { runnable: state === 'R', runNs };
  } catch {
    return undefined;
  }
}

/** LogDestination is where a pino logger writes its lines. */
type LogDestination = { write(text: string): unknown };

/**
 * findCommand returns the path of an executable named like a shell would find it, or undefined. A directory of that
 * name is passed over as a shell passes over it: access(X_OK) says yes to a directory, which cannot be run.
 */
function findCommand(command: string, path: string | undefined): string | undefined {
  const candidates = command.includes('/') ? [command] : (path ?? '').split(delimiter).filter((dir) => dir !== '').map((dir) => join(dir, command));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
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
 * has its own child); the director runs one at a time. `prepare()` starts the next pass's child ahead of the pass, so
 * that the Node runtime's start-up (half a second of CPU) is over before the pass begins; the next pass uses it if it
 * is still alive, and starts one of its own otherwise. `close()` ends a prepared child.
 */
export function createProcessReconciler(settings: ProcessReconcilerOptions): Reconciler {
  const { placement, metrics, logger, tombstones } = settings;
  // pino.symbols.streamSym is pino's documented handle on a logger's destination: the child formats its lines with
  // the same options (lib/logger.ts), and here they are written out unchanged.
  const destination = (logger as unknown as Record<symbol, LogDestination | undefined>)[pino.symbols.streamSym] ?? process.stdout;
  const nice = findCommand(settings.niceCommand ?? 'nice', process.env['PATH']);
  let warnedNoNice = false;
  const chrt = findCommand(settings.chrtCommand ?? 'chrt', process.env['PATH']);
  const refused = chrt === undefined ? undefined : idlePolicyRefused(chrt);
  if (refused !== undefined) logger.info({ component: 'reconcile', command: chrt, err: refused }, 'the idle scheduling policy is not available: reconciliation passes run niced only');
  const idlePolicy = chrt !== undefined && refused === undefined;
  const setpriv = findCommand(settings.setprivCommand ?? 'setpriv', process.env['PATH']);
  const deathSignal = setpriv !== undefined && hasDeathSignal(setpriv) ? [setpriv, ...DEATH_SIGNAL] : [];
  const heapFlags = settings.maxHeapMb === undefined ? [] : [`--max-old-space-size=${Math.max(1, Math.floor(settings.maxHeapMb))}`];
  // One collector thread per pass: V8's helper threads would otherwise do much of the collection, several at once.
  const setupWaitMs = Math.max(1, Math.floor(settings.setupWaitMs ?? SETUP_WAIT_MS));
  const nodeArgs = ['--single-threaded-gc', ...heapFlags, settings.childFile ?? CHILD_FILE, String(setupWaitMs)];
  const execPath = settings.execPath ?? process.execPath;
  const stopWaitMs = Math.max(0, settings.stopWaitMs ?? STOP_WAIT_MS);
  const starvation = settings.starvation ?? { afterMs: STARVED_MS, checkMs: STARVE_CHECK_MS };

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

  /** start spawns a child, which loads its modules and waits for a setup; its stderr is kept from birth. */
  const start = (idle = idlePolicy): Started => {
    const niced = nice === undefined ? [execPath, ...nodeArgs] : [nice, '-n', String(NICER), execPath, ...nodeArgs];
    const underIdle = idle && chrt !== undefined;
    const line = [...deathSignal, ...(underIdle ? [chrt, ...IDLE_POLICY, ...niced] : niced)];
    const child = spawn(line[0] as string, line.slice(1), {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      serialization: 'advanced',
      env: childEnvironment(process.env),
    });
    const started: Started = { child, stderr: '', ended: false, startError: undefined, idle: underIdle };
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => {
      started.stderr += text;
      if (started.stderr.length > 2 * STDERR_KEEP) started.stderr = started.stderr.slice(-STDERR_KEEP);
    });
    // 'error' without a pid: it could not be spawned. Either way it is remembered, never thrown at the director.
    child.on('error', (error) => {
      if (child.pid === undefined) started.startError = error.message;
    });
    child.once('close', () => (started.ended = true));
    return started;
  };

  /**
   * runIn runs one pass in a started child: it sends the setup and settles with the report or why the pass failed,
   * and whether the child said anything about this pass before it ended (a prepared child that died idle did not).
   */
  const runIn = (started: Started, setup: PassSetup, stop: AbortSignal | undefined): Promise<Outcome> =>
    new Promise((resolve) => {
      const running = started.child;
      let settled = false;
      let heard = false;
      let stopping: NodeJS.Timeout | undefined;
      let watching: NodeJS.Timeout | undefined;
      const end = (outcome: Outcome): void => {
        settled = true;
        clearTimeout(stopping);
        clearInterval(watching);
        resolve(outcome);
      };
      const fail = (why: string, starved?: true): void => {
        if (settled) return;
        running.kill('SIGKILL');
        end(starved === undefined ? { ok: false, why, heard } : { ok: false, why, heard, starved });
      };
      if (started.ended) {
        fail(started.startError === undefined ? explainExit(running.exitCode, running.signalCode, started.stderr) : `it could not be started: ${started.startError}`);
        return;
      }
      // A prepared child was let go of while it waited; a pass holds the director's loop as it always did.
      running.ref();
      running.channel?.ref();
      (running.stderr as Socket | null)?.ref();
      const send = (message: ToChild): void => {
        // A child gone is reported by its 'close'; the send's own error adds nothing.
        if (running.connected) running.send(message, (error) => void error);
      };
      // Stopping is the child's to do, between requests: a process ended mid-move would leave a group on two nodes,
      // for the next pass to settle. One that has not stopped within stopWaitMs (it got no core) is ended all the same.
      const askToStop = (): void => {
        if (settled) return;
        send({ type: 'stop' });
        stopping ??= setTimeout(() => fail(`it did not stop within ${stopWaitMs / 1000}s of being asked to`), stopWaitMs);
      };
      if (stop?.aborted === true) askToStop();
      else stop?.addEventListener('abort', askToStop, { once: true });
      running.once('close', () => stop?.removeEventListener('abort', askToStop));
      running.on('message', (message: FromChild) => {
        if (settled) return;
        // `ready` says the child has started, which a prepared child may say as the pass begins: not about the pass.
        if (message?.type === 'ready') return;
        heard = true;
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
            // The child exits when its channel closes.
            if (running.connected) running.disconnect();
            end({ ok: true, report: message.report });
            return;
          case 'failed':
            fail(String(message.message).split('\n', 1)[0] ?? '');
            return;
          default:
            fail(`unexpected message ${JSON.stringify(message)?.slice(0, 100)}`);
        }
      });
      // 'error' with a pid: the process was killed, or a message could not be sent.
      running.on('error', (error) => fail(running.pid === undefined ? `it could not be started: ${error.message}` : error.message));
      running.on('close', (code, signal) => {
        if (started.startError !== undefined) fail(`it could not be started: ${started.startError}`);
        else fail(explainExit(code, signal, started.stderr));
      });
      if (started.idle && running.pid !== undefined) watching = watchStarvation(running.pid, () => fail('it got no CPU under the idle policy', true));
      send({ type: 'setup', setup });
    });

  /**
   * watchStarvation calls `starved` once the pass process's main thread has run for under 1% of the last
   * `starvation.afterMs` while it was runnable at most of the checks within it: a thread that waits for its nodes is
   * not runnable, and is not starved. (The kernel updates a thread's wait time only when it next runs: not read.)
   */
  const watchStarvation = (pid: number, starved: () => void): NodeJS.Timeout => {
    // What each check read; the oldest kept is starvation.afterMs old or less.
    const seen: { at: number; runNs: number; runnable: boolean }[] = [];
    const watch = setInterval(() => {
      const state = threadState(pid);
      if (state === undefined) return;
      const now = performance.now();
      seen.push({ at: now, ...state });
      while (seen.length > 1 && (seen[0] as { at: number }).at < now - starvation.afterMs) seen.shift();
      const first = seen[0] as { at: number; runNs: number };
      const spanMs = now - first.at;
      const runnable = seen.filter((check) => check.runnable).length;
      if (spanMs >= starvation.afterMs - starvation.checkMs && runnable * 2 > seen.length && state.runNs - first.runNs < STARVED_SHARE * spanMs * 1e6) starved();
    }, starvation.checkMs);
    // The pass's own handles keep the director running while it lasts; the watch does not.
    watch.unref();
    return watch;
  };

  let prepared: Started | undefined;
  let closed = false;

  const prepare = (): void => {
    if (closed || (prepared !== undefined && !prepared.ended)) return;
    let started: Started;
    try {
      started = start();
    } catch (error) {
      // The pass tries again, and says why it could not.
      logger.debug({ component: 'reconcile', err: error }, 'the pass process could not be prepared');
      prepared = undefined;
      return;
    }
    prepared = started;
    started.child.once('close', () => {
      if (prepared === started) prepared = undefined;
    });
    // An idle child never keeps the director running: close() ends it, and it ends itself after setupWaitMs.
    started.child.unref();
    started.child.channel?.unref();
    (started.child.stderr as Socket | null)?.unref();
  };

  /** takePrepared hands the prepared child to a pass, if there is one that has not ended. */
  const takePrepared = (): Started | undefined => {
    const taken = prepared;
    prepared = undefined;
    return taken !== undefined && !taken.ended ? taken : undefined;
  };

  const pass = async (stop?: AbortSignal): Promise<PassReport> => {
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
    let outcome: Outcome | undefined;
    const ready = takePrepared();
    if (ready !== undefined) {
      outcome = await runIn(ready, setup, stop);
      // A prepared child that ended before it heard of the pass (killed, or ended by its setup bound as the pass
      // began) is replaced by a fresh one: the pass has not started anywhere. Unless the pass was asked to stop.
      if (!outcome.ok && !outcome.heard && stop?.aborted !== true) outcome = undefined;
    }
    const runFresh = async (idle: boolean): Promise<Outcome> => {
      try {
        return await runIn(start(idle), setup, stop);
      } catch (error) {
        return { ok: false, why: `it could not be started: ${(error as Error).message}`, heard: false };
      }
    };
    outcome ??= await runFresh(idlePolicy);
    if (!outcome.ok && outcome.starved === true && stop?.aborted !== true) {
      logger.warn(
        { component: 'reconcile', starved_s: starvation.afterMs / 1000 },
        'the pass got no CPU under the idle scheduling policy (other work keeps every core busy): it runs again, niced only',
      );
      outcome = await runFresh(false);
    }
    if (outcome.ok) return outcome.report;
    metrics.errors.inc();
    metrics.passes.inc();
    throw new Error(`the reconciliation pass failed in its process: ${outcome.why}`);
  };

  /** close ends a prepared child that waits for a pass, and prepares no more. */
  const close = (): void => {
    closed = true;
    const idle = prepared;
    prepared = undefined;
    idle?.child.kill('SIGKILL');
  };

  return Object.freeze({ pass, prepare, close });
}
