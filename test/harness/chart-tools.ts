/** helm, promtool and the Prometheus Operator's CRDs, from scripts/build-chart-tools.sh. */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { runCommand } from './run-command.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The tools of scripts/build-chart-tools.sh. */
export interface ChartTools {
  readonly helm: string;
  readonly promtool: string;
  readonly argocdHealth: string;
  readonly monitoringCrds: readonly string[];
}

/** Finds (building on first use) the chart tools; rejects with the script's output on failure. */
export async function chartTools(): Promise<ChartTools> {
  const built = await runCommand('bash', [join(ROOT, 'scripts', 'build-chart-tools.sh')]);
  if (built.code !== 0) throw new Error(`scripts/build-chart-tools.sh failed:\n${built.stderr}`);
  const dir = built.stdout.trim().split('\n').at(-1) ?? '';
  const crdDir = join(dir, 'prometheus-operator-crds');
  return {
    helm: join(dir, 'helm'),
    promtool: join(dir, 'promtool'),
    argocdHealth: join(dir, 'argocd-health'),
    monitoringCrds: (await readdir(crdDir))
      .filter((file) => file.endsWith('.yaml'))
      .map((file) => join(crdDir, file)),
  };
}
