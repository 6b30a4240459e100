import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { parseConfig, parseFlags } from '../../lib/config';

const config = (argv: string[]) => parseConfig(parseFlags(argv).values, {});

describe('the fleet page flags', () => {
  it('serves the page and marks groups stale after 1h by default', () => {
    assert.deepEqual(config([]).ui, { enabled: true, staleAfterMs: 3_600_000 });
  });
  it('reads --web.enable-ui=false and --ui.stale-after', () => {
    assert.deepEqual(config(['--web.enable-ui=false', '--ui.stale-after=90s']).ui, { enabled: false, staleAfterMs: 90_000 });
    assert.deepEqual(config(['--web.enable-ui', 'true']).ui.enabled, true);
  });
  it('reads web.enable_ui and ui.stale_after from the config file, as YAML booleans too', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'pgw-ui-')), 'c.yml');
    writeFileSync(file, 'web:\n  enable_ui: false\nui:\n  stale_after: 26h\n');
    assert.deepEqual(config([`--config.file=${file}`]).ui, { enabled: false, staleAfterMs: 26 * 3_600_000 });
  });
  const bad: [string[], RegExp][] = [
    [['--web.enable-ui=no'], /--web\.enable-ui must be one of true, false; got "no"$/],
    [['--ui.stale-after=soon'], /--ui\.stale-after: invalid duration "soon"/],
    [['--ui.stale-after=0'], /--ui\.stale-after must be greater than 0$/],
  ];
  for (const [argv, message] of bad) it(`refuses ${argv.join(' ')}`, () => assert.throws(() => config(argv), message));
});
