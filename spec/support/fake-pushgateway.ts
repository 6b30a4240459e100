/**
 * A Pushgateway stand-in over real HTTP for integration specs: it keeps groups by grouping key as the Pushgateway
 * does (PUT replaces, POST merges by family name, DELETE removes and answers 202), lists them on /api/v1/metrics in
 * the Pushgateway's shape with its own push_time_seconds, and can be taken down and brought back on the same port.
 * The end-to-end specs use the real one; this one is for the director's own requests and many fast cases.
 */
import type http from 'node:http';

import { groupIdentity } from '../../lib/core/group';
import { parseGroupingKey, toDisplayLabels } from '../../lib/core/grouping-key';
import { RestartableListener } from './restartable';

type Family = { time_stamp: string; type: string; help: string; metrics: { labels: Record<string, string>; value: string }[] };
type StoredGroup = { labels: Record<string, string>; families: Record<string, Family>; pushTime: number };

/** FakePushgateway is one running stand-in. */
export class FakePushgateway {
  readonly groups = new Map<string, StoredGroup>();
  readonly requests: { method: string; url: string }[] = [];
  /** Answer every request with this status instead (e.g. 503), when set. */
  failWith: number | undefined;
  private readonly listener = new RestartableListener((req, res) => {
    let body = '';
    req.setEncoding('latin1');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => this.handle(req.method ?? '', req.url ?? '', Buffer.from(body, 'latin1').toString('utf8'), res));
  });

  get port(): number {
    return this.listener.port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get id(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    await this.listener.start();
    return this;
  }

  /** down closes the port (connections refused) until `up`; the groups are kept, as a restarted persistent node's. */
  down(): Promise<void> {
    return this.listener.down();
  }

  async up(): Promise<void> {
    await this.listener.start();
  }

  stop(): Promise<void> {
    return this.down();
  }

  /** push stores a group directly, as a push that reached this node at `pushTime` (seconds). */
  push(labels: Record<string, string>, values: Record<string, number>, pushTime: number): void {
    const families: Record<string, Family> = {};
    for (const [name, value] of Object.entries(values)) families[name] = this.family(labels, String(value), pushTime);
    this.groups.set(groupIdentity(labels), { labels, families, pushTime });
  }

  /** has tells whether the node holds a group with exactly these labels. */
  has(labels: Record<string, string>): boolean {
    return this.groups.has(groupIdentity(labels));
  }

  private family(labels: Record<string, string>, value: string, at: number): Family {
    return { time_stamp: new Date(at * 1000).toISOString(), type: 'UNTYPED', help: '', metrics: [{ labels: { ...labels }, value }] };
  }

  private handle(method: string, url: string, body: string, res: http.ServerResponse): void {
    this.requests.push({ method, url });
    const reply = (status: number, text = ''): void => {
      res.writeHead(status, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(text) });
      res.end(text);
    };
    if (this.failWith !== undefined) return reply(this.failWith, 'failing on purpose\n');
    if (method === 'GET' && url === '/api/v1/metrics') {
      const data = [...this.groups.values()].map((group) => ({
        labels: group.labels,
        last_push_successful: true,
        ...group.families,
        push_time_seconds: this.family(group.labels, String(group.pushTime), group.pushTime),
        push_failure_time_seconds: this.family(group.labels, '0', group.pushTime),
      }));
      const text = JSON.stringify({ status: 'success', data });
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
      return void res.end(text);
    }
    const parsed = parseGroupingKey(url);
    if (!parsed.ok) return reply(parsed.status, `${parsed.message}\n`);
    const labels = toDisplayLabels(parsed.key);
    const id = groupIdentity(labels);
    const now = Date.now() / 1000;
    if (method === 'DELETE') {
      this.groups.delete(id);
      return reply(202);
    }
    const families: Record<string, Family> = {};
    for (const line of body.split('\n')) {
      const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})? (\S+)$/.exec(line);
      if (match) families[match[1] as string] = this.family(labels, match[2] as string, now);
    }
    const previous = method === 'POST' ? this.groups.get(id)?.families ?? {} : {};
    this.groups.set(id, { labels, families: { ...previous, ...families }, pushTime: now });
    reply(200);
  }
}

/** startFakePushgateway starts one on a free loopback port. */
export function startFakePushgateway(): Promise<FakePushgateway> {
  return new FakePushgateway().start();
}
