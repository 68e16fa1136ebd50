import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type * as tfjs from '@tensorflow/tfjs';

import { loadTensorFlow } from '../trainer/backend.js';
import { plotParetoFront } from './pareto-plot.js';
import { Raster } from './png.js';

/** TensorFlow's own PNG decoder, as an independent check of the encoder. */
async function decode(
  png: Buffer,
): Promise<{ shape: number[]; pixels: Int32Array | Uint8Array | Float32Array }> {
  const { tf } = await loadTensorFlow({ purpose: 'inference' });
  const node = (
    tf as unknown as { node: { decodePng(bytes: Uint8Array, channels: number): tfjs.Tensor3D } }
  ).node;
  const image = node.decodePng(png, 3);
  const result = { shape: image.shape, pixels: image.dataSync() as Uint8Array };
  image.dispose();
  return result;
}

describe('PNG figures', () => {
  it('encodes a raster that a real PNG decoder reads back pixel for pixel', async () => {
    const raster = new Raster(7, 5);
    raster.set(0, 0, [255, 0, 0]);
    raster.set(6, 4, [0, 0, 255]);
    raster.line(0, 2, 6, 2, [0, 128, 0]);
    const { shape, pixels } = await decode(raster.toPng());
    assert.deepEqual(shape, [5, 7, 3]);
    assert.deepEqual(Array.from(pixels), Array.from(raster.pixels));
    assert.deepEqual(Array.from(pixels.slice(0, 3)), [255, 0, 0]);
    assert.deepEqual(Array.from(pixels.slice(2 * 7 * 3 + 9, 2 * 7 * 3 + 12)), [0, 128, 0]);
  });

  it('plots the Pareto front in red over the grey subnets', async () => {
    const rows = [
      { id: 'a', accuracy: 0.5, latencyMs: 1 },
      { id: 'b', accuracy: 0.7, latencyMs: 2 },
      { id: 'c', accuracy: 0.6, latencyMs: 3 },
    ];
    const { shape, pixels } = await decode(plotParetoFront(rows));
    assert.deepEqual(shape, [480, 640, 3]);
    let red = 0;
    let grey = 0;
    for (let i = 0; i < pixels.length; i += 3) {
      if (pixels[i] === 200 && pixels[i + 1] === 30) red++;
      if (pixels[i] === 150 && pixels[i + 1] === 150) grey++;
    }
    assert.ok(red > 50, 'the front (a, b) is drawn');
    assert.ok(grey > 5, 'the dominated subnet c is drawn');
    assert.throws(() => plotParetoFront([]), /nothing to plot/);
  });
});
