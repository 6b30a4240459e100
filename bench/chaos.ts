/**
 * npm run chaos: the fleet changes and fails while clients push, and afterwards every group must exist exactly once,
 * on its owner, with its last pushed value, and no deleted group anywhere.
 *
 * Real processes throughout: Debian's Pushgateways, two director replicas (one redirect, one proxy) started from the
 * built CLI and sharing membership and tombstones through the Consul double, and clients pushing CHAOS_GROUPS groups
 * continuously (even groups through the redirecting replica, following its 307 as curl -L does, odd ones through the
 * proxying replica). While they push, the script adds a node, deletes groups, SIGKILLs a node and deletes groups whose
 * copies it holds while it is down, restarts it, drains and removes another node. Then the pushers stop, one
 * reconciliation pass runs (`pgw-director reconcile --reconcile.migrate`), and every node is listed.
 *
 * Prints a table of counts and exits 1 on any violation. CHAOS_SECONDS (default 60) sets the length of the run.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { type ConsulDouble, startConsulDouble } from '../spec/support/consul-double';
import { freePort, stopChild, waitForPort } from '../spec/support/processes';
import { type Pushgateway, httpRequest, run, startPushgateway } from '../spec/support/pushgateway';

const ROOT = join(__dirname, '..', '..');
const seconds = Number(process.env['CHAOS_SECONDS'] ?? 60);
const groupCount = Number(process.env['CHAOS_GROUPS'] ?? 200);
const deleteCount = 20;
const phaseMs = (seconds * 1000) / 6;
const CLI = join(ROOT, 'dist', 'bin', 'pgw-director.js');
const runCli = (args: readonly string[]): ReturnType<typeof run> => run(process.execPath, [CLI, ...args], { timeoutMs: 120_000 });
const HEALTH = ['--node.health-interval=250ms', '--node.health-timeout=200ms', '--node.health-fall=2', '--node.health-rise=2'];

type GroupState = {
  readonly index: number;
  readonly path: string;
  /** The value of the last push a node acknowledged. */
  acked: number | undefined;
  /** Values pushed since, whose outcome is unknown (the push failed on the way): the node may hold any of them. */
  uncertain: number[];
  deleted: boolean;
  next: number;
};

type Counts = { pushes: number; acked: number; failed: number; deletes: number; deleteRetries: number };

const log = (message: string): void => console.log(`[chaos ${(performance.now() / 1000).toFixed(1)}s] ${message}`);

/** Every process the run started: whatever happens, none outlives it. */
const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

function directorProcess(name: string, flags: readonly string[]): ChildProcess {
  const out = openSync(join(tmpdir(), `pgw-director-chaos-${name}.log`), 'w');
  const child = spawn(process.execPath, [CLI, ...flags], { stdio: ['ignore', out, out] });
  children.push(child);
  return child;
}

async function members(port: number): Promise<string[]> {
  const res = await httpRequest(`http://127.0.0.1:${port}/api/v1/ring`);
  return (JSON.parse(res.body) as { data: { members: { id: string }[] } }).data.members.map((member) => member.id).sort();
}

/** until waits for a condition, checking it every 100 ms, and fails with the description after timeoutMs. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not there yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** send makes one push or delete; through the redirecting replica it follows the 307 as `curl -L` does. */
async function send(directorPort: number, redirecting: boolean, method: string, path: string, body?: string): Promise<number> {
  const first = await httpRequest(`http://127.0.0.1:${directorPort}${path}`, { method, ...(body === undefined ? {} : { body }) });
  if (!redirecting || first.status !== 307) return first.status;
  const location = first.headers.location ?? '';
  const second = await httpRequest(location, { method, ...(body === undefined ? {} : { body }) });
  return second.status;
}

async function main(): Promise<number> {
  const scratch = mkdtempSync(join(tmpdir(), 'pgw-director-chaos-'));
  const consul: ConsulDouble = await startConsulDouble();
  const nodes = new Map<string, Pushgateway>();
  // Registered as a Consul agent would be told to, with an HTTP check that really runs.
  const register = async (pgw: Pushgateway): Promise<void> => {
    const body = JSON.stringify({
      ID: `pgw-${pgw.port}`,
      Name: 'pushgateway',
      Address: '127.0.0.1',
      Port: pgw.port,
      Check: { HTTP: `${pgw.url}/-/healthy`, Interval: '500ms', Timeout: '500ms' },
    });
    const res = await httpRequest(`http://${consul.address}/v1/agent/service/register`, { method: 'PUT', body });
    if (res.status !== 200) throw new Error(`registering ${pgw.id}: ${res.status} ${res.body}`);
  };
  // Every node persists its groups, so the one that is SIGKILLed comes back with the copies it held.
  const startNode = async (port?: number): Promise<Pushgateway> => {
    const chosen = port ?? (await freePort());
    const pgw = await startPushgateway({ port: chosen, persistenceFile: join(scratch, `pgw-${chosen}.db`) });
    children.push(pgw.process);
    nodes.set(pgw.id, pgw);
    return pgw;
  };
  for (let i = 0; i < 3; i++) await register(await startNode());
  const [a, b, c] = [...nodes.values()] as [Pushgateway, Pushgateway, Pushgateway];

  const common = [`--consul.address=${consul.address}`, '--consul.wait=2s', ...HEALTH, '--reconcile.interval=0', '--log.level=info'];
  const ports = { redirect: await freePort(), proxy: await freePort() };
  const directors = [
    directorProcess('redirect', [...common, '--mode=redirect', `--web.listen-address=127.0.0.1:${ports.redirect}`]),
    directorProcess('proxy', [...common, '--mode=proxy', `--web.listen-address=127.0.0.1:${ports.proxy}`]),
  ];
  await Promise.all([waitForPort(ports.redirect), waitForPort(ports.proxy)]).catch((error: unknown) => {
    throw new Error(`${(error as Error).message}: a director did not start, see ${join(tmpdir(), 'pgw-director-chaos-*.log')}`);
  });
  const ringIs = async (ids: readonly string[]): Promise<void> => {
    const want = [...ids].sort().join(',');
    await until(`both rings to be ${want}`, async () => (await members(ports.redirect)).join(',') === want && (await members(ports.proxy)).join(',') === want);
  };
  await ringIs([a.id, b.id, c.id]);
  log(`3 Pushgateways, directors on :${ports.redirect} (redirect) and :${ports.proxy} (proxy)`);

  const groups: GroupState[] = Array.from({ length: groupCount }, (_, index) => ({
    index,
    path: `/metrics/job/chaos/group/g${index}`,
    acked: undefined,
    uncertain: [],
    deleted: false,
    next: 1,
  }));
  const counts: Counts = { pushes: 0, acked: 0, failed: 0, deletes: 0, deleteRetries: 0 };
  let pushing = true;

  // Each worker owns a slice of the groups and pushes them one after another, so a group has one push in flight at
  // most and "the last pushed value" is well defined.
  const workers = Array.from({ length: 16 }, async (_, worker) => {
    const mine = groups.filter((group) => group.index % 16 === worker);
    while (pushing) {
      for (const group of mine) {
        if (!pushing) break;
        if (group.deleted) continue;
        const value = group.next++;
        const redirecting = group.index % 2 === 0;
        counts.pushes++;
        let status = 0;
        try {
          status = await send(redirecting ? ports.redirect : ports.proxy, redirecting, 'PUT', group.path, `chaos_value ${value}\n`);
        } catch {
          status = 0;
        }
        if (status === 200 || status === 202) {
          group.acked = value;
          group.uncertain = [];
          counts.acked++;
        } else {
          group.uncertain.push(value);
          counts.failed++;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  });

  const remove = async (targets: readonly GroupState[]): Promise<void> => {
    for (const group of targets) group.deleted = true;
    await Promise.all(
      targets.map(async (group) => {
        const redirecting = group.index % 2 === 0;
        for (let attempt = 0; ; attempt++) {
          const status = await send(redirecting ? ports.redirect : ports.proxy, redirecting, 'DELETE', group.path).catch(() => 0);
          if (status === 202) break;
          counts.deleteRetries++;
          if (attempt > 50) throw new Error(`DELETE ${group.path} kept failing (${status})`);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        counts.deletes++;
      }),
    );
  };
  const ownerOf = async (group: GroupState): Promise<string> => {
    const res = await httpRequest(`http://127.0.0.1:${ports.redirect}/api/v1/lookup?path=${encodeURIComponent(group.path)}`);
    return (JSON.parse(res.body) as { data: { node: { id: string } } }).data.node.id;
  };
  const pause = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, phaseMs));

  const violations: string[] = [];
  try {
    await pause();
    const d = await startNode();
    await register(d);
    await ringIs([a.id, b.id, c.id, d.id]);
    log(`added ${d.id}`);
    await remove(groups.filter((group) => group.index % 20 === 1).slice(0, deleteCount / 2));
    log('deleted the first groups');
    await pause();

    // Delete groups whose copy sits on the node that dies, while it is down: only a tombstone can remove that copy.
    const onB: GroupState[] = [];
    for (const group of groups) {
      if (onB.length === deleteCount / 2) break;
      if (!group.deleted && (await ownerOf(group)) === b.id) onB.push(group);
    }
    b.process.kill('SIGKILL');
    nodes.delete(b.id);
    await ringIs([a.id, c.id, d.id]);
    log(`SIGKILLed ${b.id}; it left both rings`);
    await remove(onB);
    log(`deleted ${onB.length} groups owned by ${b.id} while it was down`);
    await pause();
    const b2 = await startNode(b.port);
    await ringIs([a.id, b2.id, c.id, d.id]);
    log(`restarted ${b2.id}; it rejoined both rings`);
    await pause();

    consul.remove(`pgw-${c.port}`);
    await ringIs([a.id, b2.id, d.id]);
    log(`took ${c.id} out of discovery; draining it`);
    await pause();
    const drain = await runCli(['reconcile', ...common, `--reconcile.drain=${c.url}`, '--reconcile.migrate']);
    const left = await c.groups();
    if (left.length > 0) violations.push(`drained node ${c.id} still holds ${left.length} groups (exit ${drain.code}): ${drain.stderr.slice(-500)}`);
    await c.stop();
    nodes.delete(c.id);
    log(`drained and stopped ${c.id}`);
    await pause();
  } finally {
    pushing = false;
    await Promise.all(workers);
  }
  log('pushers stopped; one reconciliation pass');
  const pass = await runCli(['reconcile', ...common, '--reconcile.migrate']);
  if (pass.code !== 0) violations.push(`the final pass exited ${pass.code}: ${pass.stderr.slice(-500)}`);

  // What every node holds now.
  const copies = new Map<string, { node: string; value: string | undefined }[]>();
  for (const pgw of nodes.values()) {
    for (const group of await pgw.groups()) {
      if (group.labels['job'] !== 'chaos') continue;
      const path = `/metrics/job/chaos/group/${group.labels['group'] ?? ''}`;
      const list = copies.get(path) ?? [];
      list.push({ node: pgw.id, value: group.values['chaos_value'] });
      copies.set(path, list);
    }
  }
  let live = 0;
  let exact = 0;
  for (const group of groups) {
    const found = copies.get(group.path) ?? [];
    if (group.deleted) {
      if (found.length > 0) violations.push(`deleted ${group.path} is back on ${found.map((copy) => copy.node).join(', ')}`);
      continue;
    }
    if (group.acked === undefined && group.uncertain.length === 0) continue;
    live++;
    const owner = await ownerOf(group);
    if (found.length !== 1) {
      violations.push(`${group.path}: ${found.length} copies (${found.map((copy) => copy.node).join(', ')}), want 1 on ${owner}`);
      continue;
    }
    const [copy] = found as [{ node: string; value: string | undefined }];
    if (copy.node !== owner) violations.push(`${group.path} is on ${copy.node}, its owner is ${owner}`);
    const allowed = [group.acked, ...group.uncertain].filter((value) => value !== undefined).map(String);
    if (copy.value === undefined || !allowed.includes(copy.value)) {
      violations.push(`${group.path} holds ${copy.value ?? 'nothing'}, last acknowledged ${group.acked ?? 'none'} (unknown outcome: ${group.uncertain.join(' ') || 'none'})`);
    } else exact++;
  }

  console.log('\n| what | count |\n|---|---|');
  console.log(`| pushes sent | ${counts.pushes} |`);
  console.log(`| pushes acknowledged | ${counts.acked} |`);
  console.log(`| pushes failed (node down or in flight at a change) | ${counts.failed} |`);
  console.log(`| groups deleted (DELETE retries) | ${counts.deletes} (${counts.deleteRetries}) |`);
  console.log(`| live groups | ${live} |`);
  console.log(`| live groups once, on their owner, with their last value | ${exact} |`);
  console.log(`| nodes at the end | ${[...nodes.keys()].join(', ')} |`);
  console.log(`| violations | ${violations.length} |`);
  for (const violation of violations.slice(0, 50)) console.log(`  - ${violation}`);

  for (const director of directors) await stopChild(director);
  for (const pgw of nodes.values()) await pgw.stop();
  await consul.stop();
  return violations.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`chaos: ${(error as Error).stack ?? String(error)}`);
    process.exit(1);
  },
);
