import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { runCommand } from '../test/harness/run-command.js';

const script = fileURLToPath(new URL('build-buildkit.sh', import.meta.url));

describe('scripts/build-buildkit.sh', () => {
  it('prints the cached folder with buildkitd and buildctl v0.34.2', async () => {
    const run = await runCommand('bash', [script]);
    assert.equal(run.code, 0, run.stderr);
    const dir = run.stdout.trim();
    assert.match(dir, /buildkit\/v0\.34\.2$/);
    for (const tool of ['buildkitd', 'buildctl']) {
      const { stdout } = await promisify(execFile)(join(dir, tool), ['--version']);
      assert.match(stdout, /v0\.34\.2/, tool);
    }
  });

  it('says what is missing when it has to build without Go', async () => {
    const run = await runCommand('bash', [script], {
      COMPOFA_CACHE_DIR: '/nonexistent/compofa-cache',
      GO: '/nonexistent/go',
    });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /Go \(>= 1\.26\) is needed to build BuildKit v0\.34\.2/);
  });
});
