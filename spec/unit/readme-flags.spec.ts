import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { OPTIONS } from '../../lib/config';

// The README's flag table is what a newcomer reads before --help: --web.enable-ui and --ui.stale-after were missing.
describe('README: the flag table', () => {
  const readme = readFileSync(join(__dirname, '..', '..', '..', 'README.md'), 'utf8');
  const section = readme.split('\n## Flags\n')[1]?.split('\n## ')[0] ?? '';
  const rows = new Map<string, string>();
  for (const line of section.split('\n').filter((l) => l.startsWith('| `--'))) {
    const [, flags = '', defaults = ''] = line.split('|').map((cell) => cell.trim());
    for (const match of flags.matchAll(/`--([a-z0-9.-]+)/g)) rows.set(match[1] as string, defaults);
  }

  it('is found', () => assert.ok(rows.size > 20, `only ${rows.size} rows`));
  for (const option of OPTIONS.filter((o) => o.flag !== 'help' && o.flag !== 'version')) {
    it(`lists --${option.flag} with its default`, () => {
      const defaults = rows.get(option.flag);
      assert.notEqual(defaults, undefined, `--${option.flag} is not in the README's flag table`);
      if (option.default !== undefined && option.default !== '') assert.ok(defaults?.includes(`\`${option.default}\``), `--${option.flag}: README says ${defaults}, --help says ${option.default}`);
    });
  }
  it('lists no flag that does not exist', () => {
    const known = new Set(OPTIONS.map((o) => o.flag));
    assert.deepEqual([...rows.keys()].filter((flag) => !known.has(flag)), []);
  });
});
