/**
 * Groups as the Pushgateway's API describes them: the pure shapes and renderings the reconciler, the fan-out DELETE
 * and the fleet views share. No I/O.
 */
import type { GroupingKey } from './grouping-key';

/** Metric is one sample set of a family, as `/api/v1/metrics` reports it (values are Go-formatted strings). */
export type Metric = Readonly<{
  labels?: Readonly<Record<string, string>>;
  value?: string;
  quantiles?: Readonly<Record<string, string>>;
  buckets?: Readonly<Record<string, string>>;
  count?: string;
  sum?: string;
}>;

/** Family is one metric family of a group, as `/api/v1/metrics` reports it. */
export type Family = Readonly<{ time_stamp?: string; type?: string; help?: string; metrics?: readonly Metric[] }>;

/**
 * Group is one group as a Pushgateway's `/api/v1/metrics` reports it: its grouping key (`job` included), its metric
 * families by name (the Pushgateway's own `push_time_seconds` and `push_failure_time_seconds` among them), and the
 * last push time in seconds (0 when unknown).
 */
export type Group = Readonly<{
  labels: Readonly<Record<string, string>>;
  lastPushSuccessful: boolean;
  pushTime: number;
  families: Readonly<Record<string, Family>>;
}>;

/** ADDED_BY_PUSHGATEWAY are the families the Pushgateway sets itself on every push; a pushed value is overwritten. */
export const ADDED_BY_PUSHGATEWAY: ReadonlySet<string> = new Set(['push_time_seconds', 'push_failure_time_seconds']);

/**
 * groupFromApi reads one element of `/api/v1/metrics`' `data` array into a Group, or undefined when it is not an
 * object with a `labels` mapping of strings.
 */
export function groupFromApi(raw: unknown): Group | undefined {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return undefined;
  const record = raw as Record<string, unknown>;
  const labels = record['labels'];
  if (labels === null || typeof labels !== 'object' || Array.isArray(labels)) return undefined;
  if (!Object.values(labels).every((value) => typeof value === 'string')) return undefined;
  const families: Record<string, Family> = {};
  for (const [name, value] of Object.entries(record)) {
    if (name !== 'labels' && name !== 'last_push_successful' && value !== null && typeof value === 'object') families[name] = value;
  }
  const pushTime = Number(families['push_time_seconds']?.metrics?.[0]?.value ?? 0);
  return {
    labels: labels as Record<string, string>,
    lastPushSuccessful: record['last_push_successful'] !== false,
    pushTime: Number.isFinite(pushTime) ? pushTime : 0,
    families,
  };
}

/** groupKeyOf returns the grouping key of a group's labels, as the ring hashes it. */
export function groupKeyOf(labels: Readonly<Record<string, string>>): GroupingKey {
  const pairs: string[] = [];
  for (const name of Object.keys(labels).sort()) {
    // The API speaks UTF-8 text; the ring hashes bytes, one code unit per byte.
    pairs.push(name, Buffer.from(labels[name] as string, 'utf8').toString('latin1'));
  }
  return { pairs };
}

/** groupIdentity returns a string that is equal for two label sets exactly when they name the same group. */
export function groupIdentity(labels: Readonly<Record<string, string>>): string {
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** groupPath renders the push path of a group with every value in @base64, so any value round-trips. */
export function groupPath(labels: Readonly<Record<string, string>>): string {
  const encode = (value: string): string => (value === '' ? '=' : Buffer.from(value, 'utf8').toString('base64url'));
  let path = `/metrics/job@base64/${encode(labels['job'] ?? '')}`;
  for (const name of Object.keys(labels).sort()) {
    if (name !== 'job') path += `/${name}@base64/${encode(labels[name] as string)}`;
  }
  return path;
}

/** familyTime returns a family's RFC 3339 `time_stamp` in milliseconds, or 0 when it has none. */
function familyTime(family: Family): number {
  const ms = family.time_stamp === undefined ? NaN : Date.parse(family.time_stamp);
  return Number.isFinite(ms) ? ms : 0;
}

/**
 * newerFamilies returns the families of `from` that a POST of it onto `onto` should carry: each one `onto` lacks or
 * holds in an older version (by each family's `time_stamp`; a tie goes to `from`), without the families the
 * Pushgateway adds itself. Merged into `onto`, they leave every family in its newest version.
 */
export function newerFamilies(from: Group, onto: Group): Record<string, Family> {
  const out: Record<string, Family> = {};
  for (const [name, family] of Object.entries(from.families)) {
    if (ADDED_BY_PUSHGATEWAY.has(name)) continue;
    const theirs = onto.families[name];
    if (theirs === undefined || familyTime(family) >= familyTime(theirs)) out[name] = family;
  }
  return out;
}

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labelText(labels: Readonly<Record<string, string>>, extra: Record<string, string> = {}): string {
  const all = { ...labels, ...extra };
  const names = Object.keys(all);
  if (names.length === 0) return '';
  return `{${names.map((name) => `${name}="${escapeLabelValue(all[name] as string)}"`).join(',')}}`;
}

/**
 * toTextFormat renders a group's metric families in the text format 0.0.4, without the families the Pushgateway adds
 * itself. Returns undefined for families it cannot render (native histograms): such a group is not migrated.
 */
export function toTextFormat(families: Readonly<Record<string, Family>>): string | undefined {
  let out = '';
  for (const [name, family] of Object.entries(families)) {
    if (ADDED_BY_PUSHGATEWAY.has(name)) continue;
    const type = (family.type ?? 'UNTYPED').toLowerCase();
    if (family.help !== undefined && family.help !== '') out += `# HELP ${name} ${family.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}\n`;
    out += `# TYPE ${name} ${type}\n`;
    for (const metric of family.metrics ?? []) {
      const labels = metric.labels ?? {};
      if (type === 'summary') {
        for (const [q, v] of Object.entries(metric.quantiles ?? {})) out += `${name}${labelText(labels, { quantile: q })} ${v}\n`;
        out += `${name}_sum${labelText(labels)} ${metric.sum ?? '0'}\n${name}_count${labelText(labels)} ${metric.count ?? '0'}\n`;
      } else if (type === 'histogram') {
        if (metric.buckets === undefined || Array.isArray(metric.buckets)) return undefined;
        const bounds = Object.keys(metric.buckets).sort((a, b) => Number(a) - Number(b));
        for (const bound of bounds) out += `${name}_bucket${labelText(labels, { le: bound })} ${metric.buckets[bound] as string}\n`;
        if (!bounds.includes('+Inf')) out += `${name}_bucket${labelText(labels, { le: '+Inf' })} ${metric.count ?? '0'}\n`;
        out += `${name}_sum${labelText(labels)} ${metric.sum ?? '0'}\n${name}_count${labelText(labels)} ${metric.count ?? '0'}\n`;
      } else if (metric.value !== undefined) {
        out += `${name}${labelText(labels)} ${metric.value}\n`;
      } else return undefined;
    }
  }
  return out;
}
