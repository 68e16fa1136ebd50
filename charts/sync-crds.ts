/**
 * Copies the CRDs of crds/ (the one source of truth of the compofa.io API) into the Helm chart's
 * crds/ folder, adding the annotation `helm.sh/resource-policy: keep` and a header that names the
 * source. Nothing else changes: the schema is the source's, byte for byte.
 *
 *   npx tsx charts/sync-crds.ts
 *
 * test/integration/chart.test.ts fails when the chart's copies differ from what this writes, or
 * when a CRD is missing from the chart or left over in it.
 */
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The source of truth. */
export const SOURCE_CRD_DIR = join(REPO_ROOT, 'crds');
/** The chart's copies. */
export const CHART_CRD_DIR = join(REPO_ROOT, 'charts', 'compofa', 'crds');

const KEEP = 'helm.sh/resource-policy: keep';

/**
 * The chart's copy of the CRD manifest `source` (read from crds/`file`): the source with a header
 * and the keep annotation added to its top-level metadata. Throws when the source has no
 * top-level `metadata:` block to add it to.
 */
export function chartCrd(file: string, source: string): string {
  const lines = source.split('\n');
  const metadata = lines.indexOf('metadata:');
  if (metadata < 0) throw new Error(`crds/${file}: no top-level "metadata:" line`);
  let end = metadata + 1;
  while (end < lines.length && /^\s+\S/.test(lines[end] ?? '')) end++;
  const annotations = lines.slice(metadata + 1, end).indexOf('  annotations:');
  const added =
    annotations >= 0
      ? { at: metadata + 2 + annotations, lines: [`    ${KEEP}`] }
      : { at: metadata + 1, lines: ['  annotations:', `    ${KEEP}`] };
  lines.splice(added.at, 0, ...added.lines);
  const header = [
    `# Generated from crds/${file} by \`npx tsx charts/sync-crds.ts\`;`,
    '# edit that file and run the script again. It adds helm.sh/resource-policy: keep, so that the',
    '# CRD, and every resource of its kind, stays when the release is uninstalled.',
  ];
  return [...header, ...lines].join('\n');
}

/** The chart's CRD files, by name, as they should be. */
export async function expectedChartCrds(): Promise<Map<string, string>> {
  const files = (await readdir(SOURCE_CRD_DIR)).filter((file) => file.endsWith('.yaml')).sort();
  const expected = new Map<string, string>();
  for (const file of files) {
    expected.set(file, chartCrd(file, await readFile(join(SOURCE_CRD_DIR, file), 'utf8')));
  }
  return expected;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const expected = await expectedChartCrds();
  for (const file of await readdir(CHART_CRD_DIR)) {
    if (!expected.has(file)) {
      await rm(join(CHART_CRD_DIR, file));
      process.stdout.write(`removed charts/compofa/crds/${file}\n`);
    }
  }
  for (const [file, content] of expected) {
    await writeFile(join(CHART_CRD_DIR, file), content);
    process.stdout.write(`wrote charts/compofa/crds/${file}\n`);
  }
}
