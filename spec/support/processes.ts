/**
 * Processes on loopback for specs and benchmarks: free ports, waiting for a listener, node:http sinks, children
 * started and stopped, their children, their threads' nice values, and their memory.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';

/** SINK is a node:http server (run with `node -e SINK PORT`) that reads each request and answers 200 at once. */
export const SINK = `
const http = require('node:http');
http.createServer((req, res) => {
  req.resume();
  req.on('end', () => { res.writeHead(200, { 'Content-Length': 0 }); res.end(); });
}).listen(Number(process.argv[1]), '127.0.0.1');
`;

/** freePort asks the kernel for a free loopback port. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/** waitForPort resolves once something accepts connections on the port (10s at most). */
export async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}

/** startChild spawns a program with stdout ignored and stderr shown. */
export function startChild(command: string, argv: readonly string[]): ChildProcess {
  return spawn(command, [...argv], { stdio: ['ignore', 'ignore', 'inherit'] });
}

/** stopChild sends SIGTERM and resolves when the child has exited. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    child.on('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

/** rssBytes reads a process's resident set size from /proc. */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}

/** childPids lists the processes a process started that are still running (Linux: the children file of each of its threads in /proc). */
export function childPids(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((tid) => {
      try {
        return readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter((word) => word.trim() !== '').map(Number);
      } catch {
        return [];
      }
    });
  } catch {
    return [];
  }
}

/** statOfThreads reads field `field` (numbered as proc(5) numbers them) of /proc/<pid>/task/<tid>/stat for every thread. */
function statOfThreads(pid: number, field: number): number[] {
  return readdirSync(`/proc/${pid}/task`).flatMap((tid) => {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      // The command name (field 2) may hold spaces and parentheses: count fields after its closing one, field 3 first.
      return [Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[field - 3])];
    } catch {
      return []; // the thread ended between the listing and the read
    }
  });
}

/** niceOfThreads reads the nice value of every thread of a process (Linux: field 19 of its stat). */
export function niceOfThreads(pid: number): number[] {
  return statOfThreads(pid, 19);
}

/** SCHED_IDLE is Linux's number for the idle scheduling policy (SCHED_OTHER, the normal one, is 0). */
export const SCHED_IDLE = 5;

/** policyOfThreads reads the scheduling policy of every thread of a process (Linux: field 41 of its stat). */
export function policyOfThreads(pid: number): number[] {
  return statOfThreads(pid, 41);
}

/** isRunning says whether a process exists and is not a zombie. */
export function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
