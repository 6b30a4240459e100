/**
 * npm run soak: a fixed request rate against the director, in redirect mode and then in proxy mode (to node:http
 * sinks that answer at once), for SOAK_SECONDS (default 60) after a warm-up of the same length (SOAK_WARMUP_SECONDS). Reports throughput, p50/p99/p99.9 latency measured
 * from each request's scheduled time (so a stall is not hidden by the generator waiting), errors, and the
 * director's RSS at start and end. Exits 1 on any error; with --strict also when a target is missed:
 * p99 < 5 ms at 5,000 redirects per second, RSS growth < 10%.
 */
import net from 'node:net';
import { join } from 'node:path';

import { SINK, freePort, rssBytes, startChild, stopChild, waitForPort } from '../spec/support/processes';

const ROOT = join(__dirname, '..', '..');
const seconds = Number(process.env['SOAK_SECONDS'] ?? 60);
const rate = Number(process.env['SOAK_RATE'] ?? 5000);
const connections = Number(process.env['SOAK_CONNECTIONS'] ?? 64);
const strict = process.argv.includes('--strict');
// The warm-up runs at the same rate, as long as the measured run (at most 60s), before RSS is first read. V8 sizes
// its young generation to the allocation rate over the first minute or so; read before that, "growth" is heap sizing.
// After it, growth means a leak.
const warmupSeconds = Number(process.env['SOAK_WARMUP_SECONDS'] ?? Math.min(60, seconds));
const modes = (process.env['SOAK_MODES'] ?? 'redirect,proxy').split(',');

type Result = { sent: number; done: number; errors: number; latenciesMs: Float64Array; count: number; elapsedS: number };

/** Connection is one keep-alive client connection that carries one request at a time. */
class Connection {
  busy = false;
  private buffer = '';
  private scheduledAt = 0;
  constructor(
    private readonly socket: net.Socket,
    private readonly expect: number,
    private readonly onDone: (connection: Connection, ok: boolean, scheduledAt: number) => void,
  ) {
    socket.setNoDelay(true);
    socket.setEncoding('latin1');
    socket.on('data', (text: string) => this.read(text));
    socket.on('error', () => this.fail());
    socket.on('close', () => this.fail());
  }

  send(request: string, scheduledAt: number): void {
    this.busy = true;
    this.scheduledAt = scheduledAt;
    this.socket.write(request, 'latin1');
  }

  private read(text: string): void {
    this.buffer += text;
    const end = this.buffer.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = this.buffer.slice(0, end);
    const length = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? 0);
    if (this.buffer.length < end + 4 + length) return;
    const status = Number(head.slice(9, 12));
    this.buffer = this.buffer.slice(end + 4 + length);
    this.busy = false;
    this.onDone(this, status === this.expect, this.scheduledAt);
  }

  private fail(): void {
    if (!this.busy) return;
    this.busy = false;
    this.onDone(this, false, this.scheduledAt);
  }
}

async function drive(port: number, expect: number, durationS: number): Promise<Result> {
  const latencies = new Float64Array(Math.ceil(rate * durationS * 1.1) + 1000);
  const result: Result = { sent: 0, done: 0, errors: 0, latenciesMs: latencies, count: 0, elapsedS: 0 };
  const idle: Connection[] = [];
  const backlog: number[] = [];
  let i = 0;
  const request = (): string => {
    i++;
    return `PUT /metrics/job/soak_${i % 997}/instance/host-${i % 10007} HTTP/1.1\r\nHost: soak\r\nContent-Length: 4\r\n\r\nm 1\n`;
  };
  const onDone = (connection: Connection, ok: boolean, scheduledAt: number): void => {
    result.done++;
    if (!ok) result.errors++;
    if (result.count < latencies.length) latencies[result.count++] = performance.now() - scheduledAt;
    const next = backlog.shift();
    if (next !== undefined) {
      result.sent++;
      connection.send(request(), next);
    } else idle.push(connection);
  };
  await Promise.all(
    Array.from(
      { length: connections },
      () =>
        new Promise<void>((resolve, reject) => {
          const socket = net.connect(port, '127.0.0.1', () => {
            idle.push(new Connection(socket, expect, onDone));
            resolve();
          });
          socket.once('error', reject);
        }),
    ),
  );

  const start = performance.now();
  let scheduled = 0;
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const now = performance.now();
      const elapsed = (now - start) / 1000;
      const due = Math.min(Math.floor(elapsed * rate), Math.floor(durationS * rate));
      while (scheduled < due) {
        // Latency counts from when the request was due, not from when a connection was free.
        const at = start + (scheduled / rate) * 1000;
        scheduled++;
        const connection = idle.pop();
        if (connection === undefined) backlog.push(at);
        else {
          result.sent++;
          connection.send(request(), at);
        }
      }
      if (elapsed >= durationS) {
        clearInterval(tick);
        const wait = setInterval(() => {
          if (result.done >= result.sent && backlog.length === 0) {
            clearInterval(wait);
            resolve();
          }
        }, 10);
        setTimeout(() => {
          clearInterval(wait);
          result.errors += result.sent - result.done + backlog.length;
          resolve();
        }, 10_000);
      }
    }, 1);
  });
  result.elapsedS = (performance.now() - start) / 1000;
  return result;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] as number;
}

async function soak(mode: 'redirect' | 'proxy', sinkPorts: number[]): Promise<boolean> {
  const port = await freePort();
  const director = startChild(process.execPath, [
    join(ROOT, 'dist', 'bin', 'pgw-director.js'),
    `--web.listen-address=127.0.0.1:${port}`,
    '--reconcile.interval=0',
    `--mode=${mode}`,
    ...sinkPorts.flatMap((p) => ['--node', `http://127.0.0.1:${p}`]),
  ]);
  try {
    await waitForPort(port);
    // Warm up (JIT, pools, the heap's working size), then measure RSS from there.
    await drive(port, mode === 'redirect' ? 307 : 200, warmupSeconds);
    const rssStart = rssBytes(director.pid as number);
    const result = await drive(port, mode === 'redirect' ? 307 : 200, seconds);
    const rssEnd = rssBytes(director.pid as number);
    const sorted = result.latenciesMs.slice(0, result.count).sort();
    const growth = (rssEnd - rssStart) / rssStart;
    const p99 = percentile(sorted, 0.99);
    console.log(
      `| ${mode} | ${rate} | ${(result.done / result.elapsedS).toFixed(0)} | ${percentile(sorted, 0.5).toFixed(2)} | ${p99.toFixed(2)} | ` +
        `${percentile(sorted, 0.999).toFixed(2)} | ${result.errors} | ${(rssStart / 2 ** 20).toFixed(1)} | ${(rssEnd / 2 ** 20).toFixed(1)} | ${(growth * 100).toFixed(1)}% |`,
    );
    let ok = result.errors === 0;
    if (strict) ok &&= growth < 0.1 && (mode !== 'redirect' || p99 < 5);
    return ok;
  } finally {
    await stopChild(director);
  }
}

async function main(): Promise<void> {
  const sinkPorts = [await freePort(), await freePort(), await freePort()];
  const sinks = sinkPorts.map((p) => startChild(process.execPath, ['-e', SINK, String(p)]));
  try {
    await Promise.all(sinkPorts.map(waitForPort));
    console.log(`## Soak: ${seconds}s at ${rate} requests/s over ${connections} keep-alive connections, after a ${warmupSeconds}s warm-up\n`);
    console.log('| mode | target req/s | achieved req/s | p50 ms | p99 ms | p99.9 ms | errors | RSS start MiB | RSS end MiB | RSS growth |');
    console.log('|---|---|---|---|---|---|---|---|---|---|');
    const redirectOk = modes.includes('redirect') ? await soak('redirect', sinkPorts) : true;
    const proxyOk = modes.includes('proxy') ? await soak('proxy', sinkPorts) : true;
    console.log(`\ntargets: no errors, RSS growth < 10%, redirect p99 < 5 ms${strict ? ' (enforced: --strict)' : ''}`);
    if (!redirectOk || !proxyOk) process.exitCode = 1;
  } finally {
    await Promise.all(sinks.map(stopChild));
  }
}

void main();
