import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { freePort, waitForPort } from '../support/processes';
import { httpRequest, requireProgram } from '../support/pushgateway';

const BIN = join(__dirname, '..', '..', 'bin', 'pgw-director.js');

describe('proxying to an https Pushgateway', () => {
  let dir: string;
  let server: https.Server;
  let nodeUrl: string;
  const seen: string[] = [];
  const children: ChildProcess[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pgw-tls-'));
    execFileSync(requireProgram('openssl', ['/usr/bin/openssl']), [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' });
    server = https.createServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (body += chunk));
      req.on('end', () => {
        seen.push(`${req.method} ${req.url} ${body}`);
        res.writeHead(200, { 'Content-Length': 0 });
        res.end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    nodeUrl = `https://localhost:${(server.address() as AddressInfo).port}/pgw`;
  });
  after(() => {
    for (const child of children) child.kill('SIGKILL');
    server.closeAllConnections();
    server.close();
  });

  const startDirector = async (env: NodeJS.ProcessEnv): Promise<string> => {
    const port = await freePort();
    // Health checks off: the spec counts every request the node sees, and a node with an untrusted certificate
    // must answer the push's own TLS error, not be taken out of the ring first.
    const args = [`--web.listen-address=127.0.0.1:${port}`, '--mode=proxy', '--node.health-interval=0', '--node', nodeUrl, '--log.level=error', '--reconcile.interval=0'];
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, ...env },
      stdio: 'ignore',
    });
    children.push(child);
    await waitForPort(port);
    return `http://127.0.0.1:${port}`;
  };

  it('verifies the certificate against the CAs Node trusts (NODE_EXTRA_CA_CERTS adds a private one)', async () => {
    const director = await startDirector({ NODE_EXTRA_CA_CERTS: join(dir, 'cert.pem') });
    for (let i = 0; i < 3; i++) {
      const res = await httpRequest(`${director}/metrics/job/tls/i/${i}`, { method: 'PUT', body: `m ${i}\n` });
      assert.equal(res.status, 200, res.body);
    }
    assert.deepEqual(seen.slice(-3), ['PUT /pgw/metrics/job/tls/i/0 m 0\n', 'PUT /pgw/metrics/job/tls/i/1 m 1\n', 'PUT /pgw/metrics/job/tls/i/2 m 2\n']);
  });

  it('refuses a certificate it cannot verify with 502, naming the node', async () => {
    const director = await startDirector({ NODE_EXTRA_CA_CERTS: '' });
    const res = await httpRequest(`${director}/metrics/job/tls`, { method: 'PUT', body: 'm 1\n' });
    assert.equal(res.status, 502);
    assert.match(res.body, /^pushgateway "localhost:\d+" unreachable: (DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN)\n$/);
  });
});
