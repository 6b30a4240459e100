/**
 * The load generator of `npm run bench reconcile`, in a process of its own (spawned with IPC; argv: port, pushes per
 * second). It pushes to the director at a steady rate and times each push as a client sees it: from just before the
 * request is written to its socket to the first thing its event loop runs when the last byte of the answer is there.
 *
 * It is a minimal client on node:net, so that its own work stays small next to what it measures: one kept-alive
 * connection per push in flight (a connection is reused once its answer is complete, a new one opened when none is
 * free), the request written in one piece, the answer read by a parser that knows only what the director sends (a
 * status line, headers, a Content-Length body). node:http's client costs several times more per request, and every
 * microsecond of it is a microsecond the loop may be late to see the next answer.
 *
 * What it cannot take out: a push's latency includes the time this process waits for a CPU before its loop sees the
 * answer. So it reports its own event-loop delay next to the latencies (before and during the pass).
 *
 * With `http` as its third argument (BENCH_LOADGEN=http) it pushes through node:http's client with a keep-alive agent
 * instead, as the bench's first load generator did, for an A/B of the two clients.
 *
 * Messages from the bench: `quiet` and `pass` mark the windows (its loop delays are read and reset at each); `stop`
 * ends the pushes and answers with { samples: [sentAtWallMs, latencyMs, status][], quiet, pass }.
 */
import http from 'node:http';
import net from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';

type Delays = { eventLoopMaxMs: number; eventLoopP99Ms: number };

const [port, rate] = process.argv.slice(2, 4).map(Number) as [number, number];
const viaHttp = process.argv[4] === 'http';
const delay = monitorEventLoopDelay({ resolution: 1 });
delay.enable();
const delays = (): Delays => ({ eventLoopMaxMs: delay.max / 1e6, eventLoopP99Ms: delay.percentile(99) / 1e6 });

const samples: [number, number, number][] = [];
/** One connection: the push in flight on it (if any) and what has arrived of its answer. */
type Connection = { socket: net.Socket; sentAt: number; wall: number; received: string; busy: boolean };
const idle: Connection[] = [];

/** complete returns the status of a whole answer in `text`, or 0 while it is not all there. */
function complete(text: string): number {
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return 0;
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, end));
  if (text.length < end + 4 + Number(length?.[1] ?? 0)) return 0;
  return Number(text.slice(9, 12));
}

function open(): Connection {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.setNoDelay(true);
  socket.setEncoding('latin1');
  const connection: Connection = { socket, sentAt: 0, wall: 0, received: '', busy: false };
  socket.on('data', (chunk: string) => {
    const now = performance.now();
    connection.received += chunk;
    const status = complete(connection.received);
    if (status === 0) return;
    samples.push([connection.wall, now - connection.sentAt, status]);
    connection.received = '';
    connection.busy = false;
    idle.push(connection);
  });
  const lost = (): void => {
    if (connection.busy) samples.push([connection.wall, performance.now() - connection.sentAt, 0]);
    connection.busy = false;
    const at = idle.indexOf(connection);
    if (at >= 0) idle.splice(at, 1);
  };
  socket.on('error', lost);
  socket.on('close', lost);
  return connection;
}

const BODY = 'm 1\n';
const pathOf = (i: number): string => `/metrics/job/load_${i % 97}/instance/host-${i}`;

const sendNet = (i: number): void => {
  const connection = idle.pop() ?? open();
  const request = `POST ${pathOf(i)} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Length: ${BODY.length}\r\n\r\n${BODY}`;
  connection.busy = true;
  connection.wall = Date.now();
  connection.sentAt = performance.now();
  connection.socket.write(request, 'latin1');
};

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const sendHttp = (i: number): void => {
  const wall = Date.now();
  const at = performance.now();
  const req = http.request({ host: '127.0.0.1', port, agent, method: 'POST', path: pathOf(i), headers: { 'Content-Length': BODY.length } }, (res) => {
    res.resume();
    res.on('end', () => samples.push([wall, performance.now() - at, res.statusCode ?? 0]));
  });
  req.on('error', () => samples.push([wall, performance.now() - at, 0]));
  req.end(BODY);
};

let sent = 0;
let stopping = false;
const send = (): void => (viaHttp ? sendHttp : sendNet)(sent++);

const t0 = performance.now();
const tick = (): void => {
  if (stopping) return;
  const due = Math.floor(((performance.now() - t0) * rate) / 1000);
  while (sent < due) send();
  setTimeout(tick, 1);
};
tick();

let quiet: Delays | undefined;
process.on('message', (cmd: string) => {
  if (cmd === 'quiet') return delay.reset();
  if (cmd === 'pass') {
    quiet = delays();
    return delay.reset();
  }
  const pass = delays();
  stopping = true;
  // Answers still in flight get half a second to arrive.
  setTimeout(() => process.send?.({ samples, quiet, pass }, () => process.exit(0)), 500);
});
