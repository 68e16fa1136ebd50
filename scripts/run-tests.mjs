#!/usr/bin/env node
// Runs every *.test.ts in the repository on node's built-in test runner, through tsx.
// Node 20's --test takes no globs and finds only .js files, so the list is made here.
// Arguments narrow the run to files whose path contains one of them: `npm run test:only -- harness`.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const skipped = new Set(['node_modules', 'dist', '.git', 'coverage', '.test-artifacts']);

function* testFiles(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) {
      if (!skipped.has(entry.name) && !entry.name.startsWith('.'))
        yield* testFiles(join(dir, entry.name));
    } else if (entry.name.endsWith('.test.ts')) {
      yield relative(root, join(dir, entry.name));
    }
  }
}

const filters = process.argv.slice(2);
const files = [...testFiles(root)]
  .filter((file) => filters.length === 0 || filters.some((f) => file.includes(f)))
  .sort();
if (files.length === 0) {
  console.error(`no test files match ${filters.join(', ') || '*.test.ts'}`);
  process.exit(1);
}
// A hung test fails after 10 minutes instead of running into CI's limit. The end-to-end tests
// (test/e2e/: the whole job on a local cluster with real nodes, one flow per file) take longer as
// a whole, so they run after the others, with 30 minutes per file and per test.
const E2E = `test${sep}e2e${sep}`;
const groups = [
  { files: files.filter((file) => !file.startsWith(E2E)), timeoutMs: 600_000 },
  { files: files.filter((file) => file.startsWith(E2E)), timeoutMs: 1_800_000 },
];
let status = 0;
for (const { files: group, timeoutMs } of groups) {
  if (group.length === 0) continue;
  const result = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--test', '--test-reporter=spec', `--test-timeout=${timeoutMs}`, ...group],
    { cwd: root, stdio: 'inherit', env: { TF_CPP_MIN_LOG_LEVEL: '2', ...process.env } },
  );
  if (result.status !== 0) status = result.status ?? 1;
}
process.exit(status);
