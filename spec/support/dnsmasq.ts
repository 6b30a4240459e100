/**
 * A real DNS server for specs: Debian's dnsmasq on a free loopback port (UDP and TCP), authoritative for
 * `test.local` only and forwarding nothing (--no-resolv, --no-hosts, `local=/test.local/`), so a name it does not
 * hold is NXDOMAIN and no query ever leaves the machine.
 *
 * SRV records live in its config file, which dnsmasq reads only at start (SIGHUP does not reload `srv-host`), so
 * changing them restarts it on the same port. Address records live in a --hostsdir file, which it re-reads on change
 * (inotify) without a restart. Every change waits until dnsmasq answers with the new data.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { promises as dns } from 'node:dns';
import { mkdirSync, mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { freePort } from './processes';
import { requireProgram } from './pushgateway';
import { until } from './wait';

/** SrvTarget is one SRV record of a name: where a Pushgateway listens. */
export type SrvTarget = Readonly<{ target: string; port: number }>;

/** Records are what dnsmasq serves: SRV records by name, and addresses by host name. */
export type Records = Readonly<{
  srv?: Readonly<Record<string, readonly SrvTarget[]>>;
  hosts?: Readonly<Record<string, readonly string[]>>;
}>;

/** Dnsmasq is a running dnsmasq and the records it serves. */
export type Dnsmasq = {
  /** The server as `--dns.server` takes it: `127.0.0.1:PORT`. */
  readonly server: string;
  /** queries counts the queries dnsmasq logged for a name and type so far. */
  queries(name: string, type: 'SRV' | 'A' | 'AAAA'): number;
  /** setRecords replaces every record and waits until dnsmasq serves them. */
  setRecords(records: Records): Promise<void>;
  /** stop kills dnsmasq (queries are then refused by the kernel); start brings it back on the same port. */
  stop(): Promise<void>;
  start(): Promise<void>;
  readonly running: boolean;
};

const READY_NAME = 'ready.test.local';

/** startDnsmasq starts dnsmasq serving `records`. */
export async function startDnsmasq(records: Records = {}): Promise<Dnsmasq> {
  const program = requireProgram('dnsmasq', ['/usr/sbin/dnsmasq']);
  const dir = mkdtempSync(join(tmpdir(), 'pgw-dnsmasq-'));
  const conf = join(dir, 'dnsmasq.conf');
  const hostsDir = join(dir, 'hosts');
  mkdirSync(hostsDir);
  const port = await freePort();
  const server = `127.0.0.1:${port}`;
  const resolver = new dns.Resolver({ timeout: 500, tries: 1 });
  resolver.setServers([server]);
  let current: Records = records;
  let child: ChildProcess | undefined;
  let log = '';

  const writeConf = (): void => {
    const lines = ['local=/test.local/', `host-record=${READY_NAME},127.0.0.1`];
    for (const [name, targets] of Object.entries(current.srv ?? {})) {
      for (const { target, port: targetPort } of targets) lines.push(`srv-host=${name},${target},${targetPort}`);
    }
    writeFileSync(conf, `${lines.join('\n')}\n`);
  };
  const writeHosts = (): void => {
    const lines = Object.entries(current.hosts ?? {}).flatMap(([name, addresses]) => addresses.map((address) => `${address} ${name}`));
    // Written aside and renamed in: dnsmasq must never read half a file.
    writeFileSync(join(dir, 'hosts.next'), `${lines.join('\n')}\n`);
    renameSync(join(dir, 'hosts.next'), join(hostsDir, 'hosts'));
  };
  const answers = async (check: () => Promise<boolean>): Promise<boolean> => {
    try {
      return await check();
    } catch {
      return false;
    }
  };
  const serves = async (records: Records): Promise<boolean> => {
    for (const [name, targets] of Object.entries(records.srv ?? {})) {
      const want = targets.map((t) => `${t.target}:${t.port}`).sort().join();
      const ok =
        want === ''
          ? await isEmpty(() => resolver.resolveSrv(name))
          : await answers(async () => (await resolver.resolveSrv(name)).map((r) => `${r.name}:${r.port}`).sort().join() === want);
      if (!ok) return false;
    }
    for (const [name, addresses] of Object.entries(records.hosts ?? {})) {
      const v4 = addresses.filter((a) => !a.includes(':')).sort().join();
      const v6 = addresses.filter((a) => a.includes(':')).sort().join();
      const got4 = v4 === '' ? (await isEmpty(() => resolver.resolve4(name))) : await answers(async () => (await resolver.resolve4(name)).sort().join() === v4);
      const got6 = v6 === '' ? (await isEmpty(() => resolver.resolve6(name))) : await answers(async () => (await resolver.resolve6(name)).sort().join() === v6);
      if (!got4 || !got6) return false;
    }
    return true;
  };
  const isEmpty = async (query: () => Promise<unknown>): Promise<boolean> => {
    try {
      await query();
      return false;
    } catch (error) {
      return ['ENOTFOUND', 'ENODATA'].includes((error as NodeJS.ErrnoException).code ?? '');
    }
  };

  const start = async (): Promise<void> => {
    writeConf();
    writeHosts();
    const proc = spawn(
      program,
      [
        '--no-daemon',
        `--port=${port}`,
        '--listen-address=127.0.0.1',
        '--bind-interfaces',
        '--no-resolv',
        '--no-hosts',
        `--conf-file=${conf}`,
        `--hostsdir=${hostsDir}`,
        '--pid-file=',
        '--user=',
        '--log-queries',
        '--log-facility=-',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = proc;
    const collect = (chunk: Buffer): void => {
      log += chunk.toString('utf8');
    };
    proc.stdout?.on('data', collect);
    proc.stderr?.on('data', collect);
    await until(async () => proc.exitCode !== null || (await answers(async () => (await resolver.resolve4(READY_NAME)).length === 1)), 'dnsmasq answers', 10_000);
    if (proc.exitCode !== null) throw new Error(`dnsmasq exited ${proc.exitCode}: ${log.slice(-500)}`);
  };

  const stop = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill('SIGKILL');
    });
  };

  await start();
  return {
    server,
    queries(name, type) {
      const needle = `query[${type}] ${name} from`;
      return log.split('\n').filter((line) => line.includes(needle)).length;
    },
    async setRecords(records) {
      const srvChanged = JSON.stringify(records.srv ?? {}) !== JSON.stringify(current.srv ?? {});
      const previous = current;
      current = records;
      if (srvChanged && child !== undefined) {
        await stop();
        await start();
      } else {
        writeConf();
        writeHosts();
      }
      // Names that are no longer listed must be gone too.
      const gone: Records = {
        srv: Object.fromEntries(Object.keys(previous.srv ?? {}).filter((n) => !(n in (records.srv ?? {}))).map((n) => [n, []])),
        hosts: Object.fromEntries(Object.keys(previous.hosts ?? {}).filter((n) => !(n in (records.hosts ?? {}))).map((n) => [n, []])),
      };
      if (child !== undefined) await until(async () => (await serves(records)) && (await serves(gone)), 'dnsmasq serves the new records', 10_000);
    },
    stop,
    start,
    get running() {
      return child !== undefined;
    },
  };
}
