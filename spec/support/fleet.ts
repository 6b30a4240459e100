/**
 * Readers of the fleet for the end-to-end specs: a strict Go decoder of `/api/v1/metrics` (the Pushgateway's api/v1
 * structs, compiled against Go's standard library, offline) and headless Chromium (Debian's `chromium`) loading a
 * page on the loopback. A missing program fails loudly with the name of the install script.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { requireProgram, run } from './pushgateway';

const ROOT = join(__dirname, '..', '..', '..');

/** ARTEFACTS is where end-to-end specs leave files for people to look at (gitignored). */
export const ARTEFACTS = join(ROOT, 'artefacts');

let decoder: Promise<string> | undefined;

/** buildApiDecoder compiles spec/e2e/clients/apidecode.go once per run; resolves with the binary's path. */
export function buildApiDecoder(): Promise<string> {
  decoder ??= (async () => {
    const go = requireProgram('go', ['/usr/bin/go']);
    const dir = join(tmpdir(), 'pgw-director-e2e');
    mkdirSync(dir, { recursive: true });
    const out = join(dir, `apidecode-${process.pid}`);
    const result = await run(go, ['build', '-o', out, join(ROOT, 'spec', 'e2e', 'clients', 'apidecode.go')], {
      env: { ...process.env, GO111MODULE: 'off', GOPATH: '/usr/share/gocode', GOCACHE: join(dir, 'gocache'), GOFLAGS: '' },
      timeoutMs: 300_000,
    });
    if (result.code !== 0) throw new Error(`go build failed: ${result.stderr}`);
    return out;
  })();
  return decoder;
}

/** DecodedGroup is one group as the Go decoder normalises it. */
export type DecodedGroup = Readonly<{
  labels: Record<string, string>;
  last_push_successful: boolean;
  families: Record<string, { time_stamp: string; type: string; help?: string; metrics: { labels: Record<string, string>; value?: string }[] }>;
}>;

/** decodeApi decodes a `/api/v1/metrics` body with the strict Go decoder; throws with its reason when it refuses. */
export async function decodeApi(body: string): Promise<{ lines: string[]; groups: DecodedGroup[] }> {
  const result = await run(await buildApiDecoder(), [], { input: body, timeoutMs: 60_000 });
  if (result.code !== 0) throw new Error(`the strict decoder refused the answer: ${result.stderr.trim()}`);
  const lines = result.stdout.split('\n').filter((line) => line !== '');
  return { lines, groups: lines.map((line) => JSON.parse(line) as DecodedGroup) };
}

/** CHROMIUM_FLAGS keep headless Chromium off every network but the page's, and out of the user's profile. */
const CHROMIUM_FLAGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-default-apps',
  '--disable-extensions',
  '--no-first-run',
  '--no-default-browser-check',
  '--hide-scrollbars',
];

/** chromium runs headless Chromium on a loopback URL with a fresh profile; `mode` says what it writes. */
export async function chromium(
  url: string,
  mode: { dumpDom: true } | { screenshot: string; width: number; height: number },
): Promise<string> {
  if (!/^http:\/\/127\.0\.0\.1:\d+\//.test(url)) throw new Error(`chromium only loads loopback URLs here, not ${url}`);
  const binary = requireProgram('chromium', ['/usr/bin/chromium']);
  const profile = mkdtempSync(join(tmpdir(), 'pgw-director-chromium-'));
  try {
    const args = [...CHROMIUM_FLAGS, `--user-data-dir=${profile}`];
    if ('dumpDom' in mode) args.push('--dump-dom');
    else args.push(`--screenshot=${mode.screenshot}`, `--window-size=${mode.width},${mode.height}`);
    const result = await run(binary, [...args, url], { timeoutMs: 60_000 });
    if (result.code !== 0) throw new Error(`chromium exited ${result.code}: ${result.stderr.slice(-2000)}`);
    return result.stdout;
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}
