/**
 * End to end: three real Pushgateways found through SRV records served by a real dnsmasq, the director run as its
 * own process from the command line, and the Go client pushing through it.
 *
 * The SRV targets are Kubernetes-style names (`pgw-0.pgw.test.local`) that only dnsmasq knows: the machine's own
 * resolver has never heard of them. So every connection the director makes to a node (proxying, reconciliation)
 * reaches it only if it resolves the name through `--dns.server`. The Go client pushes in proxy mode: with a 307 it
 * would have to resolve the name itself, through the system resolver, which in a cluster knows the names but here
 * does not (this suite edits no /etc/hosts). The redirect leg is checked apart: the `Location` keeps the name, and the
 * name resolved through dnsmasq, as a client in the cluster would, takes the push to the owner.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { promises as dns } from 'node:dns';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { type Dnsmasq, startDnsmasq } from '../support/dnsmasq';
import { freePort } from '../support/processes';
import { type Pushgateway, buildGoPusher, httpRequest, run, startPushgateway } from '../support/pushgateway';
import { until } from '../support/wait';

const BIN = join(__dirname, '..', '..', 'bin', 'pgw-director.js');
const SRV = '_pushgateway._tcp.pgw.test.local';
const REFRESH_MS = 1000;

type Director = { url: string; process: ChildProcess; log: Record<string, unknown>[] };

async function startDirector(dnsmasq: Dnsmasq, flags: readonly string[]): Promise<Director> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [BIN, `--web.listen-address=127.0.0.1:${port}`, `--dns.name=${SRV}`, `--dns.server=${dnsmasq.server}`, `--dns.refresh-interval=${REFRESH_MS}ms`, ...flags],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const director: Director = { url: `http://127.0.0.1:${port}`, process: child, log: [] };
  let pending = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    const lines = (pending + chunk.toString('utf8')).split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) if (line !== '') director.log.push(JSON.parse(line) as Record<string, unknown>);
  });
  await until(async () => {
    try {
      return (await httpRequest(`${director.url}/-/ready`)).status === 200;
    } catch {
      return false;
    }
  }, 'the director is ready', 15_000);
  return director;
}

async function stopDirector(director: Director | undefined): Promise<void> {
  const child = director?.process;
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

async function members(director: Director): Promise<string[]> {
  const ring = JSON.parse((await httpRequest(`${director.url}/api/v1/ring`)).body) as { data: { members: { id: string }[] } };
  return ring.data.members.map((member) => member.id);
}

async function ownerId(director: Director, path: string): Promise<string> {
  const res = await httpRequest(`${director.url}/api/v1/lookup?path=${encodeURIComponent(path)}`);
  return (JSON.parse(res.body) as { data: { node: { id: string } } }).data.node.id;
}

describe('end to end: dns discovery through dnsmasq SRV records', () => {
  let nodes: Pushgateway[];
  let dnsmasq: Dnsmasq;
  let proxy: Director | undefined;
  /** The groups the first case pushes, four owned by each node: where the ring puts a name depends on the nodes' ports. */
  const spread: string[] = [];
  let redirect: Director | undefined;
  const name = (i: number): string => `pgw-${i}.pgw.test.local`;
  const nameOf = new Map<string, Pushgateway>();
  const records = (count: number) => ({
    srv: { [SRV]: nodes.slice(0, count).map((node, i) => ({ target: name(i), port: node.port })) },
    hosts: Object.fromEntries(nodes.map((_, i) => [name(i), ['127.0.0.1']])),
  });
  /** where lists the names of the nodes holding a group of job `dns-e2e` with this instance. */
  const where = async (instance: string): Promise<string[]> => {
    const found: string[] = [];
    for (const [id, node] of nameOf) {
      if ((await node.groups()).some((group) => group.labels['job'] === 'dns-e2e' && group.labels['instance'] === instance)) found.push(id);
    }
    return found;
  };

  before(async () => {
    nodes = await Promise.all([startPushgateway(), startPushgateway(), startPushgateway()]);
    nodes.forEach((node, i) => nameOf.set(`${name(i)}:${node.port}`, node));
    dnsmasq = await startDnsmasq(records(3));
  });
  after(async () => {
    await stopDirector(proxy);
    await stopDirector(redirect);
    await dnsmasq.stop();
    await Promise.all(nodes.map((node) => node.stop()));
  });

  it('finds the three Pushgateways by name, and the Go client pushes each group to its owner through the director', async () => {
    proxy = await startDirector(dnsmasq, ['--mode=proxy', '--reconcile.interval=0']);
    assert.deepEqual((await members(proxy)).sort(), [...nameOf.keys()].sort());
    const owned = new Map<string, number>();
    for (let n = 0; spread.length < 12 && n < 1000; n++) {
      const owner = await ownerId(proxy, `/metrics/job/dns-e2e/instance/g${n}`);
      if ((owned.get(owner) ?? 0) === 4) continue;
      owned.set(owner, (owned.get(owner) ?? 0) + 1);
      spread.push(`g${n}`);
    }
    assert.equal(owned.size, 3, 'twelve groups spread over all three nodes');
    const pusher = await buildGoPusher();
    for (const [i, instance] of spread.entries()) {
      const result = await run(pusher, [proxy.url, 'push', 'dns-e2e', String(i), `instance=${instance}`]);
      assert.equal(result.code, 0, result.stderr);
    }
    for (const instance of spread) {
      const owner = await ownerId(proxy, `/metrics/job/dns-e2e/instance/${instance}`);
      assert.deepEqual(await where(instance), [owner], `group ${instance}`);
    }
  });

  it('answers a Go-style push with a Location that keeps the name, which dnsmasq resolves to the owner', async () => {
    redirect = await startDirector(dnsmasq, ['--mode=redirect']);
    const path = '/metrics/job/dns-e2e/instance/redirected';
    // The family as the Go client pushes it: a Pushgateway refuses the same family with another type or help.
    const body = '# HELP e2e_value The value an end-to-end spec pushed.\n# TYPE e2e_value gauge\ne2e_value 1\n';
    const res = await httpRequest(`${redirect.url}${path}`, { method: 'PUT', body, headers: { 'User-Agent': 'Go-http-client/1.1' } });
    assert.equal(res.status, 307);
    const owner = await ownerId(redirect, path);
    assert.equal(res.headers['location'], `http://${owner}${path}`);
    // A client in the cluster resolves the name with the cluster's DNS: here, dnsmasq.
    const location = new URL(String(res.headers['location']));
    const resolver = new dns.Resolver({ timeout: 1000, tries: 2 });
    resolver.setServers([dnsmasq.server]);
    const [address] = await resolver.resolve4(location.hostname);
    const pushed = await httpRequest(`http://${address}:${location.port}${path}`, { method: 'PUT', body, headers: { Host: location.host } });
    assert.equal(pushed.status, 200, pushed.body);
    assert.deepEqual(await where('redirected'), [owner]);
  });

  it('follows a removed record within one refresh interval; a drain over the name empties the node that left', async () => {
    assert.ok(proxy);
    const leaving = `${name(2)}:${nodes[2]?.port}`;
    const started = Date.now();
    await dnsmasq.setRecords(records(2));
    const served = Date.now();
    await until(async () => !(await members(proxy as Director)).includes(leaving), 'the ring drops pgw-2', 10_000);
    const followedMs = Date.now() - served;
    console.log(`# dns e2e: dnsmasq restarted in ${served - started} ms; the ring followed ${followedMs} ms after the record was gone (refresh interval ${REFRESH_MS} ms)`);
    // One refresh interval, plus the query, this loop's polling and a busy shared machine's delays.
    assert.ok(followedMs <= REFRESH_MS + 500, `the ring followed after ${followedMs} ms`);
    // The log line reaches this process through a pipe, maybe after the ring API answered: wait for it.
    const changeLine = (): Record<string, unknown> | undefined =>
      (proxy as Director).log.find((line) => line['msg'] === 'ring changed' && JSON.stringify(line['left']) === JSON.stringify([leaving]));
    await until(() => changeLine() !== undefined, 'the log says who left');
    assert.deepEqual(changeLine()?.['joined'], []);

    // New pushes go to the two remaining nodes only.
    const pusher = await buildGoPusher();
    for (let i = 12; i < 18; i++) {
      assert.equal((await run(pusher, [proxy.url, 'push', 'dns-e2e', String(i), `instance=i${i}`])).code, 0);
      const owner = await ownerId(proxy, `/metrics/job/dns-e2e/instance/i${i}`);
      assert.notEqual(owner, leaving);
      assert.deepEqual(await where(`i${i}`), [owner]);
    }

    // The node that left still holds its groups: drain it, naming it by its DNS name only dnsmasq resolves.
    const held = (await (nodes[2] as Pushgateway).groups()).length;
    assert.ok(held > 0, 'pgw-2 held groups before the drain');
    const drain = await run(process.execPath, [
      BIN,
      'reconcile',
      `--dns.name=${SRV}`,
      `--dns.server=${dnsmasq.server}`,
      `--reconcile.drain=http://${leaving}`,
      '--log.level=warn',
    ]);
    assert.equal(drain.code, 0, drain.stderr + drain.stdout);
    const report = JSON.parse(drain.stdout.trim().split('\n').pop() as string) as { drainedEmpty: string[]; errors: number };
    assert.deepEqual(report.drainedEmpty, [leaving]);
    assert.equal((await (nodes[2] as Pushgateway).groups()).length, 0);
    for (const instance of spread) {
      const owner = await ownerId(proxy, `/metrics/job/dns-e2e/instance/${instance}`);
      assert.deepEqual(await where(instance), [owner], `group ${instance} after the drain`);
    }
  });
});
