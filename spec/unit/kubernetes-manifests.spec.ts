/**
 * The Kubernetes manifests in docs/kubernetes/ are documentation that must work as written: every file parses, every
 * director flag is a real flag that parses into a valid configuration, the director's DNS name is the SRV name the
 * headless Service publishes, selectors match their pods, probes hit the health endpoints, and Prometheus keeps the
 * pushed labels. `checkManifests` returns the problems it finds; the spec wants none, and shows on broken copies
 * that each rule does fire.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import YAML from 'yaml';

import { ConfigError, OPTIONS, parseConfig, parseFlags } from '../../lib/config';

const DIR = join(__dirname, '..', '..', '..', 'docs', 'kubernetes');

/** The parts of the documents the checks read; everything is optional because a broken manifest may lack it. */
type Labels = Record<string, string>;
type Port = { name?: string; port?: number; containerPort?: number; protocol?: string };
type Probe = { httpGet?: { path?: string; port?: string | number } };
type Container = {
  name?: string;
  image?: string;
  args?: string[];
  ports?: Port[];
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  resources?: { requests?: { cpu?: string; memory?: string } };
};
type ScrapeJob = { job_name?: string; honor_labels?: boolean; kubernetes_sd_configs?: unknown[]; relabel_configs?: unknown[] };
type Doc = {
  kind?: string;
  metadata?: { name?: string; namespace?: string; labels?: Labels };
  spec?: {
    replicas?: number;
    serviceName?: string;
    clusterIP?: string;
    publishNotReadyAddresses?: boolean;
    selector?: { matchLabels?: Labels; [label: string]: unknown };
    ports?: Port[];
    template?: { metadata?: { labels?: Labels }; spec?: { automountServiceAccountToken?: boolean; containers?: Container[] } };
  };
  scrape_configs?: ScrapeJob[];
};
type Manifest = Readonly<{ file: string; docs: Doc[] }>;

/** readManifests parses every YAML file of docs/kubernetes/, each possibly holding several documents. */
function readManifests(): Manifest[] {
  return readdirSync(DIR)
    .filter((file) => /\.ya?ml$/.test(file))
    .sort()
    .map((file) => {
      const parsed = YAML.parseAllDocuments(readFileSync(join(DIR, file), 'utf8'));
      const errors = parsed.flatMap((doc) => doc.errors.map((error) => `${file}: ${error.message}`));
      if (errors.length > 0) throw new Error(errors.join('\n'));
      return { file, docs: parsed.map((doc): Doc | null => doc.toJS() as Doc | null).filter((doc): doc is Doc => doc !== null) };
    });
}

const flagName = (arg: string): string => arg.replace(/^--/, '').split('=', 1)[0] as string;

/** checkManifests returns every problem found, one line each. */
function checkManifests(manifests: readonly Manifest[]): string[] {
  const problems: string[] = [];
  const objects = manifests.flatMap((m) => m.docs.filter((doc) => typeof doc.kind === 'string').map((doc) => ({ file: m.file, doc })));
  const workloads = objects.filter(({ doc }) => doc.kind === 'Deployment' || doc.kind === 'StatefulSet');
  const services = objects.filter(({ doc }) => doc.kind === 'Service');
  const known = new Set(OPTIONS.map((option) => option.flag));

  for (const { file, doc } of workloads) {
    const where = `${file}: ${doc.kind} ${doc.metadata?.name}`;
    const podLabels: Labels = doc.spec?.template?.metadata?.labels ?? {};
    for (const [key, value] of Object.entries(doc.spec?.selector?.matchLabels ?? {})) {
      if (podLabels[key] !== value) problems.push(`${where}: selector ${key}=${String(value)} does not match its pod labels`);
    }
    for (const container of doc.spec?.template?.spec?.containers ?? []) {
      const ports = new Map<string | undefined, number | undefined>((container.ports ?? []).map((port) => [port.name, port.containerPort]));
      for (const probe of ['readinessProbe', 'livenessProbe'] as const) {
        const get = container[probe]?.httpGet;
        if (get === undefined) problems.push(`${where}: ${container.name} has no ${probe}`);
        else {
          const want = probe === 'readinessProbe' ? '/-/ready' : '/-/healthy';
          if (get.path !== want) problems.push(`${where}: ${container.name} ${probe} on ${get.path}, not ${want}`);
          if (typeof get.port === 'string' && !ports.has(get.port)) problems.push(`${where}: ${probe} port ${get.port} is not a container port`);
        }
      }
      if (String(container.image).startsWith('pgw-director')) {
        const args = (container.args ?? []).map(String);
        for (const arg of args) {
          if (!arg.startsWith('--') || !known.has(flagName(arg))) problems.push(`${where}: ${JSON.stringify(arg)} is not a director flag`);
        }
        try {
          const config = parseConfig(parseFlags(args).values, {});
          if (config.listen.port !== ports.get('http')) problems.push(`${where}: listens on ${config.listen.port}, its http port is ${String(ports.get('http'))}`);
          for (const name of config.dns?.names ?? []) problems.push(...checkSrvName(where, name, services, workloads));
          if ((doc.spec?.replicas ?? 1) < 2) problems.push(`${where}: fewer than 2 replicas`);
          if (doc.spec?.template?.spec?.automountServiceAccountToken !== false) problems.push(`${where}: mounts a service account token it does not need`);
          if (container.resources?.requests?.cpu === undefined || container.resources?.requests?.memory === undefined) {
            problems.push(`${where}: no resource requests`);
          }
        } catch (error) {
          if (!(error instanceof ConfigError)) throw error;
          problems.push(`${where}: the director refuses its flags: ${error.message}`);
        }
      }
    }
  }
  for (const { file, doc } of services) {
    const selected = workloads.filter(({ doc: w }) =>
      Object.entries(doc.spec?.selector ?? {}).every(([key, value]) => w.spec?.template?.metadata?.labels?.[key] === value),
    );
    if (Object.keys(doc.spec?.selector ?? {}).length === 0) problems.push(`${file}: Service ${doc.metadata?.name} has no selector`);
    if (selected.length === 0) problems.push(`${file}: Service ${doc.metadata?.name} selects no pods`);
  }
  for (const { file, docs } of manifests.filter((m) => m.docs.some((doc) => Array.isArray(doc?.scrape_configs)))) {
    for (const job of docs.flatMap((doc): ScrapeJob[] => doc.scrape_configs ?? [])) {
      const keeps = JSON.stringify(job.relabel_configs ?? []);
      const name = job.job_name ?? '?';
      if (keeps.includes('pushgateway;') && job.honor_labels !== true) problems.push(`${file}: job ${name} scrapes Pushgateways without honor_labels: true`);
      if (job.kubernetes_sd_configs === undefined) problems.push(`${file}: job ${name} does not use kubernetes_sd_configs`);
    }
  }
  return problems;
}

/**
 * checkSrvName checks an SRV name against the headless Service that should publish it:
 * `_<port name>._<protocol>.<service>.<namespace>.svc.<cluster domain>`.
 */
function checkSrvName(where: string, name: string, services: readonly { doc: Doc }[], workloads: readonly { doc: Doc }[]): string[] {
  const match = /^_([^.]+)\._(tcp|udp)\.([^.]+)\.([^.]+)\.svc\.(.+)$/.exec(name);
  if (match === null) return [`${where}: --dns.name=${name} is not a Kubernetes SRV name`];
  const [, portName, protocol, serviceName, namespace] = match;
  const service = services.find(({ doc }) => doc.metadata?.name === serviceName && doc.metadata?.namespace === namespace)?.doc;
  if (service === undefined) return [`${where}: --dns.name=${name}: no Service ${serviceName} in ${namespace}`];
  const problems: string[] = [];
  if (service.spec?.clusterIP !== 'None') problems.push(`${where}: Service ${serviceName} is not headless (clusterIP: None)`);
  if (service.spec?.publishNotReadyAddresses === true) problems.push(`${where}: Service ${serviceName} publishes unready Pushgateways`);
  const port = (service.spec?.ports ?? []).find((p) => p.name === portName);
  if (port === undefined || (port.protocol ?? 'TCP') !== protocol?.toUpperCase()) problems.push(`${where}: Service ${serviceName} has no ${protocol} port named ${portName}`);
  const set = workloads.find(({ doc }) => doc.kind === 'StatefulSet' && doc.spec?.serviceName === serviceName);
  if (set === undefined) problems.push(`${where}: no StatefulSet names ${serviceName} as its serviceName (SRV targets would not be stable names)`);
  return problems;
}

/** mutate returns a deep copy of the manifests with one change applied to one object (`Kind name`). */
function mutate(manifests: readonly Manifest[], object: string, change: (doc: Doc) => void): Manifest[] {
  const copy = structuredClone<Manifest[]>([...manifests]);
  const doc = copy.flatMap((m) => m.docs).find((d) => `${d.kind} ${d.metadata?.name}` === object);
  assert.ok(doc, object);
  change(doc);
  return copy;
}

describe('docs/kubernetes manifests', () => {
  const manifests = readManifests();

  it('parse, and hold the objects the README describes', () => {
    const kinds = manifests.flatMap((m) => m.docs.map((doc) => `${doc.kind ?? 'prometheus'} ${doc.metadata?.name ?? m.file}`)).sort();
    assert.deepEqual(kinds, [
      'Deployment pgw-director',
      'Namespace monitoring',
      'Service pgw-director',
      'Service pushgateway',
      'StatefulSet pushgateway',
      'prometheus prometheus.yml',
    ]);
  });

  it('pass every check', () => {
    assert.deepEqual(checkManifests(manifests), []);
  });

  /** container is the first container of a workload, and its args, which the manifests always have. */
  const container = (doc: Doc): Required<Container> => doc.spec?.template?.spec?.containers?.[0] as Required<Container>;
  const spec = (doc: Doc): NonNullable<Doc['spec']> => doc.spec as NonNullable<Doc['spec']>;
  const broken: [string, string, (doc: Doc) => void, RegExp][] = [
    ['a flag the director does not have', 'Deployment pgw-director', (d) => container(d).args.push('--dns.names=x'), /"--dns\.names=x" is not a director flag/],
    ['a flag value the director refuses', 'Deployment pgw-director', (d) => container(d).args.push('--dns.type=MX'), /refuses its flags: --dns\.type must be one of/],
    ['an SRV name with the wrong port name', 'Deployment pgw-director', (d) => (container(d).args[1] = '--dns.name=_web._tcp.pushgateway.monitoring.svc.cluster.local'), /no tcp port named web/],
    ['a Service that is not headless', 'Service pushgateway', (d) => (spec(d).clusterIP = '10.0.0.1'), /is not headless/],
    ['unready Pushgateways published', 'Service pushgateway', (d) => (spec(d).publishNotReadyAddresses = true), /publishes unready Pushgateways/],
    ['a readiness probe on the wrong path', 'Deployment pgw-director', (d) => (container(d).readinessProbe = { httpGet: { path: '/-/healthy', port: 'http' } }), /readinessProbe on \/-\/healthy, not \/-\/ready/],
    ['one replica', 'Deployment pgw-director', (d) => (spec(d).replicas = 1), /fewer than 2 replicas/],
    ['a selector that matches no pod', 'Deployment pgw-director', (d) => (spec(d).selector = { matchLabels: { 'app.kubernetes.io/name': 'x' } }), /does not match its pod labels/],
  ];
  for (const [name, object, change, problem] of broken) {
    it(`find ${name}`, () => {
      const problems = checkManifests(mutate(manifests, object, change));
      assert.ok(problems.some((line) => problem.test(line)), problems.join('\n') || 'no problem found');
    });
  }

  it('find Pushgateways scraped without honor_labels', () => {
    const copy = structuredClone<Manifest[]>([...manifests]);
    const job = copy.find((m) => m.file === 'prometheus.yml')?.docs[0]?.scrape_configs?.[0];
    assert.ok(job);
    delete job.honor_labels;
    assert.deepEqual(checkManifests(copy), ['prometheus.yml: job pushgateway scrapes Pushgateways without honor_labels: true']);
  });
});
