/**
 * Real Pushgateway processes (Debian's prometheus-pushgateway) and real push clients for the end-to-end specs.
 * A missing program fails loudly with the name of the script that installs it: no end-to-end test skips in silence.
 */
import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { freePort } from './processes';

export { freePort };

const INSTALL_HINT = 'run scripts/install-e2e-deps.sh (it installs the Debian packages the end-to-end suite needs)';
const ROOT = join(__dirname, '..', '..', '..');

/** requireProgram returns the path of a program, or throws naming the install script. */
export function requireProgram(name: string, candidates: readonly string[] = []): string {
  for (const candidate of candidates) if (existsSync(candidate)) return candidate;
  const found = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim();
  if (found === '') throw new Error(`${name} is not installed: ${INSTALL_HINT}`);
  return found;
}

/** Group is one group as a Pushgateway's /api/v1/metrics reports it: its labels, and each family's first sample. */
export type Group = Readonly<{
  labels: Record<string, string>;
  values: Record<string, string>;
  sampleLabels: Record<string, Record<string, string>>;
}>;

/** Pushgateway is one running Pushgateway process. */
export type Pushgateway = Readonly<{
  url: string;
  port: number;
  id: string;
  process: ChildProcess;
  groups(): Promise<Group[]>;
  stop(): Promise<void>;
}>;

/**
 * httpRequest makes one request and collects the answer. The path goes out byte for byte: a URL string would be
 * normalised first (WHATWG URL resolves `%2E%2E` and `.` segments), which hides what the server does with them.
 */
export function httpRequest(
  url: string,
  options: { method?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  const match = /^http:\/\/([^/:]+):(\d+)(\/.*)?$/.exec(url);
  if (!match) throw new Error(`httpRequest takes http://host:port/path, got ${url}`);
  const target = { host: match[1], port: Number(match[2]), path: match[3] ?? '/' };
  return new Promise((resolve, reject) => {
    const req = http.request({ ...target, method: options.method ?? 'GET', headers: options.headers ?? {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

async function waitReady(url: string, headers: Record<string, string> = {}): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      const res = await httpRequest(`${url}/-/ready`, { headers });
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`pushgateway at ${url} did not become ready`);
}

/** startPushgateway starts one Pushgateway on a free loopback port, in memory only unless given a persistence file. */
export async function startPushgateway(
  options: { webConfig?: string; authHeader?: string; port?: number; persistenceFile?: string; extraArgs?: readonly string[] } = {},
): Promise<Pushgateway> {
  const binary = requireProgram('prometheus-pushgateway', ['/usr/bin/prometheus-pushgateway']);
  const port = options.port ?? (await freePort());
  const args = [`--web.listen-address=127.0.0.1:${port}`, `--persistence.file=${options.persistenceFile ?? ''}`, '--log.level=warn'];
  // A node that must come back with its groups after a SIGKILL writes them every second.
  if (options.persistenceFile !== undefined) args.push('--persistence.interval=1s');
  if (options.webConfig !== undefined) args.push(`--web.config.file=${options.webConfig}`);
  args.push(...(options.extraArgs ?? []));
  const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const url = `http://127.0.0.1:${port}`;
  const headers: Record<string, string> = options.authHeader === undefined ? {} : { Authorization: options.authHeader };
  try {
    await waitReady(url, headers);
  } catch (error) {
    child.kill('SIGKILL');
    throw new Error(`${(error as Error).message}: ${stderr}`);
  }
  return {
    url,
    port,
    id: `127.0.0.1:${port}`,
    process: child,
    async groups() {
      const res = await httpRequest(`${url}/api/v1/metrics`, { headers });
      const doc = JSON.parse(res.body) as { data: Record<string, unknown>[] };
      return doc.data.map((group) => {
        const values: Record<string, string> = {};
        const sampleLabels: Record<string, Record<string, string>> = {};
        for (const [name, family] of Object.entries(group)) {
          if (name === 'labels' || name === 'last_push_successful') continue;
          const metrics = (family as { metrics?: { value?: string; labels?: Record<string, string> }[] }).metrics ?? [];
          if (metrics[0]?.value !== undefined) values[name] = metrics[0].value;
          sampleLabels[name] = metrics[0]?.labels ?? {};
        }
        return { labels: group['labels'] as Record<string, string>, values, sampleLabels };
      });
    },
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** run executes a program and resolves with its exit code and output; never rejects on a non-zero exit. */
export function run(
  program: string,
  args: readonly string[],
  options: { input?: string | Buffer; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      program,
      [...args],
      { env: options.env ?? process.env, timeout: options.timeoutMs ?? 30_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof (error as { code?: unknown }).code === 'number' ? ((error as { code: number }).code) : 1;
        resolve({ code, stdout, stderr });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
    else child.stdin?.end();
  });
}

const goBuilds = new Map<string, Promise<string>>();

/** buildGoClient compiles spec/e2e/clients/<name>.go against Debian's client_golang, offline, once per run. */
export function buildGoClient(name: string): Promise<string> {
  let build = goBuilds.get(name);
  if (build === undefined) {
    build = (async () => {
      const go = requireProgram('go', ['/usr/bin/go']);
      if (!existsSync('/usr/share/gocode/src/github.com/prometheus/client_golang/prometheus/push')) {
        throw new Error(`client_golang is not installed: ${INSTALL_HINT}`);
      }
      const dir = join(tmpdir(), 'pgw-director-e2e');
      mkdirSync(dir, { recursive: true });
      const out = join(dir, name);
      const result = await run(go, ['build', '-o', out, join(ROOT, 'spec', 'e2e', 'clients', `${name}.go`)], {
        env: { ...process.env, GO111MODULE: 'off', GOPATH: '/usr/share/gocode', GOCACHE: join(dir, 'gocache'), GOFLAGS: '' },
        timeoutMs: 300_000,
      });
      if (result.code !== 0) throw new Error(`go build failed: ${result.stderr}`);
      return out;
    })();
    goBuilds.set(name, build);
  }
  return build;
}

/** buildGoPusher compiles spec/e2e/clients/pusher.go (one push per run). */
export function buildGoPusher(): Promise<string> {
  return buildGoClient('pusher');
}

/** pythonPusher returns the interpreter and script that push through Python's prometheus_client. */
export function pythonPusher(): { python: string; script: string } {
  const python = requireProgram('/usr/bin/python3', ['/usr/bin/python3']);
  const check = spawnSync(python, ['-c', 'import prometheus_client'], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`python3-prometheus-client is not installed: ${INSTALL_HINT}`);
  return { python, script: join(ROOT, 'spec', 'e2e', 'clients', 'pusher.py') };
}

/** writeWebConfig writes a Pushgateway --web.config.file with one basic-auth user; returns its path. */
export function writeWebConfig(user: string, bcryptHash: string): string {
  const dir = join(tmpdir(), 'pgw-director-e2e');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `web-${process.pid}-${Date.now()}.yml`);
  writeFileSync(path, `basic_auth_users:\n  ${user}: ${JSON.stringify(bcryptHash)}\n`);
  return path;
}
