import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, it } from 'node:test';

import request from 'supertest';

import { type GroupingKey, parseGroupingKey } from '../../lib/core/grouping-key';
import { createHealthChecker } from '../../lib/health';
import { createLogger } from '../../lib/logger';
import { createNodeClient } from '../../lib/nodes/client';
import type { Placement, RingChange } from '../../lib/placement';
import { startConsulDouble } from '../support/consul-double';
import { type TestDirector, directorFromFlags } from '../support/director';
import { freePort } from '../support/processes';
import { until } from '../support/wait';

/**
 * FakeNode is a node:http server on its own loopback address that answers `/-/healthy` with 200 and counts the
 * checks; `kill` closes it (connections refused), `revive` listens again on the same address and port.
 */
type FakeNode = EventEmitter & {
  host: string;
  port: number;
  id: string;
  url: string;
  checks: number;
  kill(): Promise<void>;
  revive(): Promise<void>;
};

async function startFakeNode(host: string): Promise<FakeNode> {
  const port = await freePort();
  const node = Object.assign(new EventEmitter(), {
    host,
    port,
    id: `${host}:${port}`,
    url: `http://${host}:${port}`,
    checks: 0,
    server: undefined as http.Server | undefined,
    async revive() {
      const server = http.createServer((req, res) => {
        req.resume();
        if (req.url === '/-/healthy') {
          node.checks++;
          node.emit('check');
        }
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.end('OK');
      });
      node.server = server;
      server.listen(port, host);
      await once(server, 'listening');
    },
    async kill() {
      const server = node.server;
      if (server === undefined) return;
      node.server = undefined;
      server.close();
      server.closeAllConnections();
      await once(server, 'close');
    },
  });
  await node.revive();
  return node;
}

/** nextChange resolves with the first ring change that satisfies `test`. */
function nextChange(placement: Placement, test: (change: RingChange) => boolean, timeoutMs = 15_000): Promise<RingChange> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      placement.off('change', listener);
      reject(new Error(`no such ring change within ${timeoutMs}ms`));
    }, timeoutMs);
    const listener = (change: RingChange): void => {
      if (!test(change)) return;
      clearTimeout(timer);
      placement.off('change', listener);
      resolve(change);
    };
    placement.on('change', listener);
  });
}

const KEYS: readonly { key: GroupingKey; path: string }[] = Array.from({ length: 10_000 }, (_, i) => {
  const parsed = parseGroupingKey(`/metrics/job/j${i % 97}/instance/i${i}`);
  assert.ok(parsed.ok);
  return { key: parsed.key, path: parsed.path };
});

function placements(director: TestDirector): (string | undefined)[] {
  return KEYS.map(({ key, path }) => director.placement.owner(key, path)?.id);
}

const checkFlags = (intervalMs: number): string[] => [
  `--node.health-interval=${intervalMs}ms`,
  `--node.health-timeout=${intervalMs}ms`,
  '--node.health-fall=3',
  '--node.health-rise=2',
];

describe('health checks', () => {
  const started: { directors: TestDirector[]; nodes: FakeNode[] } = { directors: [], nodes: [] };
  const fleet = async (count: number): Promise<FakeNode[]> => {
    const nodes = await Promise.all(Array.from({ length: count }, (_, i) => startFakeNode(`127.0.0.${i + 2}`)));
    started.nodes.push(...nodes);
    return nodes;
  };
  const director = async (flags: string[], nodes: readonly FakeNode[]): Promise<{ director: TestDirector; port: number }> => {
    const d = directorFromFlags([...flags, ...nodes.flatMap((node) => ['--node', node.url])]);
    started.directors.push(d);
    const { port } = await d.listen();
    return { director: d, port };
  };
  /** proven waits until every candidate of the director passed a check, so only `fall` failures take it out. */
  const proven = (d: TestDirector): Promise<void> =>
    until(() => d.health.statuses().every((status) => status.health.proven), 'every node passed a check', 10_000);
  afterEach(async () => {
    await Promise.all(started.directors.splice(0).map((d) => d.close()));
    await Promise.all(started.nodes.splice(0).map((node) => node.kill()));
  });

  it('takes a killed node out after 3 failed checks and back after 2 passed ones; keys move only to and from it', async () => {
    const nodes = await fleet(3);
    const { director: d } = await director(checkFlags(250), nodes);
    await proven(d);
    const before = placements(d);
    const victim = nodes[1] as FakeNode;

    const left = nextChange(d.placement, (change) => change.left.some((node) => node.id === victim.id));
    const logFrom = d.log.lines.length;
    await victim.kill();
    const change = await left;
    assert.deepEqual(change.joined, []);
    assert.match(change.reasons[victim.id] ?? '', /^failed 3 health checks in a row: ECONNREFUSED$/);
    assert.deepEqual(d.placement.ring.nodes.map((node) => node.id).sort(), [nodes[0]?.id, nodes[2]?.id].sort());
    // Two failed checks were not enough: the log holds them at debug before the node went down.
    const logged = d.log.lines.slice(logFrom).filter((line) => line['node'] === victim.id);
    const failed = logged.filter((line) => line['msg'] === 'health check failed');
    assert.deepEqual(failed.map((line) => line['failures']), [1, 2]);
    const down = logged.find((line) => line['msg'] === 'node is down: leaving the ring');
    assert.equal(down?.['node'], victim.id);
    assert.equal(down?.['level'], 40);

    const during = placements(d);
    let moved = 0;
    for (let i = 0; i < KEYS.length; i++) {
      if (before[i] === victim.id) {
        moved++;
        assert.notEqual(during[i], victim.id);
      } else {
        assert.equal(during[i], before[i], `key ${i} moved though its owner ${before[i]} is up`);
      }
    }
    assert.ok(moved > 2000 && moved < 4700, `${moved} of 10,000 keys were on the killed node`);
    const metrics = await d.metrics.registry.metrics();
    assert.match(metrics, new RegExp(`pgw_director_node_up\\{node="${victim.id.replace(/\./g, '\\.')}"\\} 0`));
    assert.match(metrics, /pgw_director_ring_members 2\n/);

    victim.checks = 0;
    const joined = nextChange(d.placement, (c) => c.joined.some((node) => node.id === victim.id));
    await victim.revive();
    const back = await joined;
    assert.equal(victim.checks, 2, 'it came back after exactly 2 passed checks');
    assert.equal(back.reasons[victim.id], 'passed 2 health checks in a row');
    assert.deepEqual(placements(d), before, 'every key is back where it was');
    assert.match(await d.metrics.registry.metrics(), new RegExp(`pgw_director_node_up\\{node="${victim.id.replace(/\./g, '\\.')}"\\} 1`));
  });

  it('takes a node out after 3 passive failures, without waiting for a check', async () => {
    const nodes = await fleet(2);
    // Checks every minute: after the first one, only the reported failures can take the node out in time.
    const { director: d } = await director(['--node.health-interval=1m', '--node.health-timeout=2s'], nodes);
    await proven(d);
    const victim = nodes[0] as FakeNode;
    d.health.reportFailure(victim.id, 'ECONNREFUSED');
    d.health.reportFailure(victim.id, 'ECONNREFUSED');
    assert.equal(d.placement.ring.nodes.length, 2, 'two failures are not enough');
    const left = nextChange(d.placement, (change) => change.left.some((node) => node.id === victim.id), 1000);
    d.health.reportFailure(victim.id, 'ECONNREFUSED');
    const change = await left;
    assert.equal(change.reasons[victim.id], 'failed 3 health checks in a row (the last one a failed connection): ECONNREFUSED');
    // A report about a node that is not a candidate changes nothing.
    d.health.reportFailure('127.9.9.9:1', 'ECONNREFUSED');
    assert.deepEqual(d.placement.ring.nodes.map((node) => node.id), [nodes[1]?.id]);
  });

  it('answers 503 to pushes and to /-/ready, naming the reason, once every node is down; serves again when one returns', async () => {
    const nodes = await fleet(3);
    const { director: d, port } = await director([...checkFlags(100), '--mode=auto'], nodes);
    await proven(d);
    const empty = nextChange(d.placement, (change) => change.ring.nodes.length === 0);
    await Promise.all(nodes.map((node) => node.kill()));
    await empty;
    const message = 'no pushgateway nodes available (all 3 nodes failed their health checks)';
    for (const agent of ['Go-http-client/1.1', 'python-urllib3/2.0']) {
      const push = await request(`http://127.0.0.1:${port}`).put('/metrics/job/x').set('User-Agent', agent).send('x 1\n');
      assert.equal(push.status, 503);
      assert.equal(push.text, `${message}\n`);
    }
    const ready = await request(`http://127.0.0.1:${port}`).get('/-/ready');
    assert.equal(ready.status, 503);
    assert.equal(ready.text, `${message}\n`);

    const first = nodes[2] as FakeNode;
    const joined = nextChange(d.placement, (change) => change.joined.some((node) => node.id === first.id));
    await first.revive();
    await joined;
    const push = await request(`http://127.0.0.1:${port}`).put('/metrics/job/x').set('User-Agent', 'Go-http-client/1.1');
    assert.equal(push.status, 307);
    assert.equal(push.headers['location'], `${first.url}/metrics/job/x`);
    assert.equal((await request(`http://127.0.0.1:${port}`).get('/-/ready')).status, 200);
  });

  it('serves at once with static nodes, and takes a node that never answered out at its first failed check', async () => {
    const nodes = await fleet(2);
    const deadPort = await freePort();
    const dead = `127.0.0.9:${deadPort}`;
    const d = directorFromFlags([...checkFlags(200), ...nodes.flatMap((node) => ['--node', node.url]), '--node', `http://${dead}`]);
    started.directors.push(d);
    const left = nextChange(d.placement, (change) => change.left.some((node) => node.id === dead));
    const { port } = await d.listen();
    // Ready before any check answered: new nodes start up.
    assert.equal(d.placement.ring.nodes.length, 3);
    assert.equal((await request(`http://127.0.0.1:${port}`).get('/-/ready')).status, 200);
    const change = await left;
    assert.equal(change.reasons[dead], 'failed its first health check: ECONNREFUSED');
    assert.deepEqual(d.placement.ring.nodes.map((node) => node.id).sort(), nodes.map((node) => node.id).sort());
  });

  it('reports a node that answers its check with an error status down, with the status', async () => {
    const nodes = await fleet(1);
    const refusing = http.createServer((req, res) => {
      req.resume();
      res.writeHead(401, { 'Content-Type': 'text/plain' });
      res.end('Unauthorized\n');
    });
    refusing.listen(0, '127.0.0.10');
    await once(refusing, 'listening');
    const id = `127.0.0.10:${(refusing.address() as AddressInfo).port}`;
    try {
      const d = directorFromFlags([...checkFlags(200), '--node', (nodes[0] as FakeNode).url, '--node', `http://${id}`]);
      started.directors.push(d);
      const left = nextChange(d.placement, (change) => change.left.some((node) => node.id === id));
      await d.listen();
      assert.equal((await left).reasons[id], 'failed its first health check: HTTP 401');
    } finally {
      refusing.close();
      refusing.closeAllConnections();
    }
  });

  it('sends the node credentials with its checks, so a node behind basic auth is not reported down', async () => {
    const seen: (string | undefined)[] = [];
    const guarded = http.createServer((req, res) => {
      req.resume();
      seen.push(req.headers.authorization);
      res.writeHead(req.headers.authorization === 'Basic dTpw' ? 200 : 401);
      res.end();
    });
    guarded.listen(0, '127.0.0.11');
    await once(guarded, 'listening');
    const node = { id: `127.0.0.11:${(guarded.address() as AddressInfo).port}`, url: `http://127.0.0.11:${(guarded.address() as AddressInfo).port}` };
    const members: string[][] = [];
    const target = { update: (nodes: readonly { id: string }[]) => void members.push(nodes.map((n) => n.id)) };
    const logger = createLogger('silent');
    const config = { intervalMs: 50, timeoutMs: 50, fall: 1, rise: 1 };
    const withCredentials = createHealthChecker(config, { target, logger, client: createNodeClient({ timeoutMs: 1000, authorization: 'Basic dTpw' }) });
    const without = createHealthChecker(config, { target, logger, client: createNodeClient({ timeoutMs: 1000 }) });
    try {
      withCredentials.update([node]);
      withCredentials.start();
      await until(() => seen.length >= 3, 'three checks with credentials');
      await withCredentials.stop();
      assert.ok(withCredentials.statuses()[0]?.health.up);
      assert.ok(seen.every((header) => header === 'Basic dTpw'));
      without.update([node]);
      without.start();
      await until(() => without.statuses()[0]?.health.up === false, 'the check without credentials fails');
      assert.equal(without.statuses()[0]?.lastError, 'HTTP 401');
    } finally {
      await without.stop();
      guarded.close();
      guarded.closeAllConnections();
    }
  });

  it('takes a hung node out after its checks time out', async () => {
    const nodes = await fleet(2);
    const { director: d } = await director(checkFlags(150), nodes);
    await proven(d);
    const victim = nodes[0] as FakeNode;
    // Hung: the server accepts and reads, and never answers.
    const server = (victim as unknown as { server: http.Server }).server;
    server.removeAllListeners('request');
    server.on('request', (req: http.IncomingMessage) => req.resume());
    server.closeIdleConnections();
    const change = await nextChange(d.placement, (c) => c.left.some((node) => node.id === victim.id));
    assert.equal(change.reasons[victim.id], 'failed 3 health checks in a row: no answer within 150ms');
  });

  it('with Consul, keeps only nodes that pass both Consul and its own checks', async () => {
    const nodes = await fleet(2);
    const [a, b] = nodes as [FakeNode, FakeNode];
    const consul = await startConsulDouble();
    try {
      consul.add({ id: 'a', address: a.host, port: a.port });
      consul.add({ id: 'b', address: b.host, port: b.port });
      const d = directorFromFlags([`--consul.address=${consul.address}`, '--consul.wait=2s', ...checkFlags(200)], {}, {
        consulTuning: { burst: 3, refillMs: 100, backoffBaseMs: 50, backoffMaxMs: 200 },
      });
      started.directors.push(d);
      await d.listen();
      await until(() => d.placement.ring.nodes.length === 2, 'both nodes from consul');
      await proven(d);

      // Consul still says a passes; the director's checks take it out.
      const aLeft = nextChange(d.placement, (change) => change.left.some((node) => node.id === a.id));
      await a.kill();
      assert.match((await aLeft).reasons[a.id] ?? '', /^failed 3 health checks in a row: ECONNREFUSED$/);
      const aBack = nextChange(d.placement, (change) => change.joined.some((node) => node.id === a.id));
      await a.revive();
      await aBack;

      // b passes the director's checks; Consul calling it critical takes it out at once.
      const bLeft = nextChange(d.placement, (change) => change.left.some((node) => node.id === b.id));
      consul.setStatus('b', 'critical');
      assert.equal((await bLeft).reasons[b.id], 'left discovery');
      assert.deepEqual(d.placement.ring.nodes.map((node) => node.id), [a.id]);
    } finally {
      await consul.stop();
    }
  });

  it('takes a node out whose check answers headers and then trickles its body past the timeout', async () => {
    const nodes = await fleet(2);
    const { director: d } = await director(checkFlags(150), nodes);
    await proven(d);
    const victim = nodes[0] as FakeNode;
    const server = (victim as unknown as { server: http.Server }).server;
    const timers = new Set<NodeJS.Timeout>();
    server.removeAllListeners('request');
    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      req.resume();
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      const timer = setInterval(() => res.write('.'), 20);
      timers.add(timer);
      res.on('close', () => clearInterval(timer));
    });
    server.closeIdleConnections();
    try {
      const change = await nextChange(d.placement, (c) => c.left.some((node) => node.id === victim.id));
      assert.equal(change.reasons[victim.id], 'failed 3 health checks in a row: no answer within 150ms');
    } finally {
      for (const timer of timers) clearInterval(timer);
    }
  });

  it('checks nothing and ignores passive failures with --node.health-interval=0', async () => {
    const nodes = await fleet(2);
    const { director: d, port } = await director(['--node.health-interval=0'], nodes);
    for (let i = 0; i < 5; i++) d.health.reportFailure((nodes[0] as FakeNode).id, 'ECONNREFUSED');
    await (nodes[0] as FakeNode).kill();
    // A counted request after the kill and the reports: the ring still holds both nodes, and no check was made.
    assert.equal((await request(`http://127.0.0.1:${port}`).get('/-/ready')).status, 200);
    assert.equal(d.placement.ring.nodes.length, 2);
    assert.equal((nodes[1] as FakeNode).checks, 0);
    assert.match(await d.metrics.registry.metrics(), /pgw_director_node_up\{node="127\.0\.0\.2:\d+"\} 1/);
  });

  it('stops checking a node that leaves discovery and drops its gauge', async () => {
    const nodes = await fleet(2);
    const { director: d } = await director(checkFlags(100), nodes);
    await proven(d);
    const gone = nodes[1] as FakeNode;
    d.health.update([{ id: (nodes[0] as FakeNode).id, url: (nodes[0] as FakeNode).url }]);
    assert.equal(d.placement.ring.nodes.length, 1);
    // A check already on its way may still arrive: count from the next check of the node that stayed, then see
    // three more of those and none of the one that left.
    await once(nodes[0] as FakeNode, 'check');
    const checks = gone.checks;
    for (let i = 0; i < 3; i++) await once(nodes[0] as FakeNode, 'check');
    assert.equal(gone.checks, checks);
    assert.doesNotMatch(await d.metrics.registry.metrics(), new RegExp(`node="${gone.id.replace(/\./g, '\\.')}"`));
    await until(() => d.log.lines.some((line) => line['msg'] === 'ring changed'), 'a ring change was logged');
    const logged = d.log.lines.filter((line) => line['msg'] === 'ring changed').at(-1);
    assert.deepEqual(logged?.['reasons'], { [gone.id]: 'left discovery' });
  });
});
