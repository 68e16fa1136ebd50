/**
 * The accuracy-vs-latency scatter of a trained supernet's subnets with the Pareto front marked,
 * as a PNG: `npx tsx bench/pareto-plot.ts --accuracy accuracy.json --latency latency.json --out plot.png
 * [--preset small] [--statistic p95|median]`. Grey dots: every subnet; red: the front, joined.
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';

import { ARCHITECTURE_PRESETS, type ArchitecturePreset } from '../compofa/architecture.js';
import { CompoundSpace } from '../compofa/design-space.js';
import { paretoFront, type SubnetMeasurement } from '../compofa/selection.js';
import { joinTables, readAccuracyTable, readLatencyTable } from '../compofa/tables.js';
import { Raster } from './png.js';

const WIDTH = 640;
const HEIGHT = 480;
const MARGIN = 40;
const GREY = [150, 150, 150] as const;
const RED = [200, 30, 30] as const;
const BLACK = [0, 0, 0] as const;

/** Draws the scatter of `measurements` with their Pareto front. */
export function plotParetoFront(measurements: readonly SubnetMeasurement[]): Buffer {
  if (measurements.length === 0) throw new RangeError('there is nothing to plot');
  const raster = new Raster(WIDTH, HEIGHT);
  const latencies = measurements.map((m) => m.latencyMs);
  const accuracies = measurements.map((m) => m.accuracy);
  const span = (values: number[]): [number, number] => {
    const low = Math.min(...values);
    const high = Math.max(...values);
    const pad = (high - low) * 0.05 || 1e-3;
    return [low - pad, high + pad];
  };
  const [x0, x1] = span(latencies);
  const [y0, y1] = span(accuracies);
  const x = (latency: number): number =>
    MARGIN + ((latency - x0) / (x1 - x0)) * (WIDTH - 2 * MARGIN);
  const y = (accuracy: number): number =>
    HEIGHT - MARGIN - ((accuracy - y0) / (y1 - y0)) * (HEIGHT - 2 * MARGIN);
  raster.line(MARGIN, HEIGHT - MARGIN, WIDTH - MARGIN, HEIGHT - MARGIN, BLACK);
  raster.line(MARGIN, MARGIN, MARGIN, HEIGHT - MARGIN, BLACK);
  for (const m of measurements) raster.dot(x(m.latencyMs), y(m.accuracy), 2, GREY);
  const front = paretoFront(measurements);
  front.forEach((m, i) => {
    const previous = front[i - 1];
    if (previous)
      raster.line(x(previous.latencyMs), y(previous.accuracy), x(m.latencyMs), y(m.accuracy), RED);
  });
  for (const m of front) raster.dot(x(m.latencyMs), y(m.accuracy), 4, RED);
  return raster.toPng();
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      accuracy: { type: 'string' },
      latency: { type: 'string' },
      out: { type: 'string' },
      preset: { type: 'string', default: 'small' },
      statistic: { type: 'string', default: 'p95' },
    },
  });
  const { accuracy, latency, out, preset, statistic } = values;
  if (!accuracy || !latency || !out)
    throw new Error(
      'usage: pareto-plot.ts --accuracy A.json --latency L.json --out plot.png [--preset small]',
    );
  if (!(preset in ARCHITECTURE_PRESETS))
    throw new Error(`--preset must be one of ${Object.keys(ARCHITECTURE_PRESETS).join(', ')}`);
  if (statistic !== 'p95' && statistic !== 'median')
    throw new Error('--statistic must be p95 or median');
  const space = new CompoundSpace(ARCHITECTURE_PRESETS[preset as ArchitecturePreset]);
  const { measurements } = joinTables(
    await readAccuracyTable(accuracy, space),
    await readLatencyTable(latency, space),
    statistic,
  );
  await writeFile(out, plotParetoFront(measurements));
  const front = paretoFront(measurements);
  process.stdout.write(
    `${measurements.length} subnets, ${front.length} on the Pareto front: ${out}\n`,
  );
}

if (process.argv[1]?.endsWith('pareto-plot.ts')) await main();
