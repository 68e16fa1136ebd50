/**
 * What every benchmark prints the same way: the machine it ran on, and plain-text tables whose
 * first column is left-aligned and the rest right-aligned.
 */
import { arch, cpus, platform, totalmem } from 'node:os';

/** The machine a benchmark ran on, as its report states it. */
export interface Machine {
  readonly cpuModel: string;
  readonly cores: number;
  readonly node: string;
  readonly platform: string;
  readonly arch: string;
  readonly memoryGiB: number;
}

/** This machine. */
export function machine(): Machine {
  const cores = cpus();
  return {
    cpuModel: cores[0]?.model.trim() ?? 'unknown',
    cores: cores.length,
    node: process.version,
    platform: platform(),
    arch: arch(),
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
  };
}

/** `header` and `body` as aligned columns under a dashed rule. */
export function renderTable(
  header: readonly string[],
  body: readonly (readonly string[])[],
): string {
  const widths = header.map((cell, c) =>
    Math.max(cell.length, ...body.map((row) => (row[c] ?? '').length)),
  );
  const line = (row: readonly string[]): string =>
    row
      .map((cell, c) => (c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}
