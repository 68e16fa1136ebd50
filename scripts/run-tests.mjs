#!/usr/bin/env node
// Runs every *.test.ts in the repository on node's built-in test runner, through tsx.
// Node 20's --test takes no globs and finds only .js files, so the list is made here.
// Arguments narrow the run to files whose path contains one of them: `npm run test:only -- harness`.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
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
const result = spawnSync(
  process.execPath,
  // A hung test fails after 10 minutes instead of running into CI's limit.
  ['--import', 'tsx', '--test', '--test-reporter=spec', '--test-timeout=600000', ...files],
  { cwd: root, stdio: 'inherit', env: { TF_CPP_MIN_LOG_LEVEL: '2', ...process.env } },
);
process.exit(result.status ?? 1);
