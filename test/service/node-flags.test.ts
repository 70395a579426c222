import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { SPANSIEVE_NODE_FLAGS } from '../../src/service/node-flags';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const flags = SPANSIEVE_NODE_FLAGS.join(' ');

void describe('node flags', () => {
  void test('npm start, the bin shebang and the Dockerfile pass the same flags', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    assert.equal(pkg.scripts.start, `node ${flags} dist/src/cli.js`);
    const shebang = fs.readFileSync(path.join(ROOT, 'src', 'cli.ts'), 'utf8').split('\n')[0];
    assert.equal(shebang, `#!/usr/bin/env -S node ${flags}`);
    const dockerfile = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
    assert.match(dockerfile, new RegExp(`^ENTRYPOINT ${JSON.stringify(['node', ...SPANSIEVE_NODE_FLAGS, 'dist/src/cli.js']).replace(/[[\]]/g, '\\$&').replace(/,/g, ', ')}$`, 'm'));
  });

  void test('the built bin runs with them through its shebang', () => {
    const cli = path.join(ROOT, 'dist', 'src', 'cli.js');
    assert.equal(fs.readFileSync(cli, 'utf8').split('\n')[0], `#!/usr/bin/env -S node ${flags}`);
    // Run through env as the kernel would, with a script that prints its node flags.
    const probe = path.join(ROOT, 'dist', 'node-flags-probe.js');
    fs.writeFileSync(probe, `${fs.readFileSync(cli, 'utf8').split('\n')[0]}\nprocess.stdout.write(JSON.stringify(process.execArgv));\n`, { mode: 0o755 });
    try {
      assert.deepEqual(JSON.parse(execFileSync(probe, { encoding: 'utf8' })), SPANSIEVE_NODE_FLAGS);
    } finally {
      fs.rmSync(probe, { force: true });
    }
  });
});
