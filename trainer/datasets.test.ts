import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { node as TfNodeApi } from '@tensorflow/tfjs-node';

import { loadTensorFlow, type TensorFlow } from './backend.js';
import {
  batches,
  DatasetError,
  FASHION_MNIST_CLASSES,
  loadDataset,
  type Dataset,
  type DatasetSpec,
  type Split,
} from './datasets.js';

const requireHere = createRequire(import.meta.url);
const packageFile = (name: string, ...path: string[]): string =>
  join(dirname(requireHere.resolve(`${name}/package.json`)), ...path);

const fashion = (limitPerClass?: number): DatasetSpec => ({ kind: 'fashion-mnist', limitPerClass });
const synthetic = (seed: number, samplesPerClass = 12): DatasetSpec => ({
  kind: 'synthetic',
  classes: 4,
  samplesPerClass,
  resolution: 12,
  channels: 3,
  seed,
});

/** Images per class of a split, indexed by label. */
function perClass(split: Split, classes: number): number[] {
  const counts = new Array<number>(classes).fill(0);
  for (const label of split.labels) counts[label] = (counts[label] ?? 0) + 1;
  return counts;
}

function bytesOf(array: Float32Array | Int32Array): Buffer {
  return Buffer.from(array.buffer, array.byteOffset, array.byteLength);
}

/** One key per image (its exact bytes), to compare images across splits and loads. */
function imageKeys(split: Split, size: number): string[] {
  return Array.from({ length: split.count }, (_, i) =>
    bytesOf(split.images.subarray(i * size, (i + 1) * size)).toString('base64'),
  );
}

function range(values: Float32Array): { min: number; max: number } {
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return { min, max };
}

function mean(values: Float32Array): number {
  let sum = 0;
  for (const v of values) sum += v;
  return sum / values.length;
}

/** Every batch of one epoch, concatenated. */
function epochBytes(split: Split, seed: number, epoch: number, shape: [number, number, number]) {
  const parts: Buffer[] = [];
  for (const batch of batches(split, 7, seed, epoch, shape))
    parts.push(bytesOf(batch.images), bytesOf(batch.labels));
  return Buffer.concat(parts);
}

let tf: TensorFlow;
before(async () => {
  ({ tf } = await loadTensorFlow({ purpose: 'training', log: () => undefined }));
});

describe('loadDataset: Fashion-MNIST', () => {
  it('loads 10 classes of real 28x28 grayscale images in [0, 1], limitPerClass of each', async () => {
    const data = await loadDataset(fashion(35), { resolution: 28, channels: 1 });
    assert.equal(data.name, 'fashion-mnist');
    assert.deepEqual(data.classNames, FASHION_MNIST_CLASSES);
    assert.equal(data.classNames.length, 10);
    assert.deepEqual([data.resolution, data.channels], [28, 1]);
    assert.deepEqual(perClass(data.train, 10), new Array(10).fill(30));
    assert.deepEqual(perClass(data.validation, 10), new Array(10).fill(5));
    for (const split of [data.train, data.validation]) {
      assert.equal(split.images.length, split.count * 784);
      assert.equal(split.labels.length, split.count);
      // 8-bit pixels scaled by 1/255: both ends of the range occur, and nothing in between.
      assert.deepEqual(range(split.images), { min: 0, max: 1 });
      assert.ok(split.images.every((v) => Math.abs(v * 255 - Math.round(v * 255)) < 1e-4));
    }
    // The real data: the package's first trouser is among the 35 trousers loaded, labelled 1.
    const raw = JSON.parse(
      await readFile(packageFile('fashion-mnist', 'src', 'clothes', '1.json'), 'utf8'),
    ) as { data: number[][] };
    const first = bytesOf(Float32Array.from(raw.data[0] ?? [], (v) => v / 255)).toString('base64');
    const keys = [...imageKeys(data.train, 784), ...imageKeys(data.validation, 784)];
    const labels = [...data.train.labels, ...data.validation.labels];
    const at = keys.indexOf(first);
    assert.ok(at >= 0, "the package's first trouser image is not in the dataset");
    assert.equal(labels[at], 1);
  });

  it('holds all 70,000 images in full: 60,000 train + 10,000 validation, 7,000 per class (empty entries skipped)', async () => {
    const started = performance.now();
    const data = await loadDataset(fashion(), { resolution: 28, channels: 1 });
    assert.equal(data.train.count + data.validation.count, 70_000);
    assert.deepEqual(perClass(data.train, 10), new Array(10).fill(6000));
    assert.deepEqual(perClass(data.validation, 10), new Array(10).fill(1000));
    assert.equal(data.train.images.length, 60_000 * 784);
    const seconds = (performance.now() - started) / 1000;
    assert.ok(seconds < 10, `loading the full set took ${seconds.toFixed(1)} s`);
  });
});

describe('loadDataset: MNIST', () => {
  it('loads 10 digit classes of 28x28 images from the flat arrays, 10,000 in all', async () => {
    const data = await loadDataset({ kind: 'mnist' }, { resolution: 28, channels: 1 });
    assert.equal(data.name, 'mnist');
    assert.deepEqual(data.classNames, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    assert.equal(data.train.count + data.validation.count, 10_000);
    assert.ok(perClass(data.validation, 10).every((n) => n >= 100 && n <= 170));
    assert.deepEqual(range(data.train.images), { min: 0, max: 1 });
    const raw = JSON.parse(
      await readFile(packageFile('mnist', 'src', 'digits', '7.json'), 'utf8'),
    ) as { data: number[] };
    const first = bytesOf(Float32Array.from(raw.data.slice(0, 784))).toString('base64');
    const keys = [...imageKeys(data.train, 784), ...imageKeys(data.validation, 784)];
    const at = keys.indexOf(first);
    assert.ok(at >= 0, "the package's first 7 is not in the dataset");
    assert.equal([...data.train.labels, ...data.validation.labels][at], 7);

    const limited = await loadDataset(
      { kind: 'mnist', limitPerClass: 14 },
      { resolution: 28, channels: 1 },
    );
    assert.deepEqual(perClass(limited.train, 10), new Array(10).fill(12));
  });
});

describe('loadDataset: split', () => {
  it('gives byte-identical splits and batches for one seed, and different ones for another', async () => {
    const options = { resolution: 28, channels: 1, seed: 3 };
    const [a, b, other] = await Promise.all([
      loadDataset(fashion(20), options),
      loadDataset(fashion(20), options),
      loadDataset(fashion(20), { ...options, seed: 4 }),
    ]);
    for (const name of ['train', 'validation'] as const) {
      assert.ok(bytesOf(a[name].images).equals(bytesOf(b[name].images)), `${name} images differ`);
      assert.ok(bytesOf(a[name].labels).equals(bytesOf(b[name].labels)), `${name} labels differ`);
      assert.ok(
        !bytesOf(a[name].images).equals(bytesOf(other[name].images)),
        `${name} is the same`,
      );
    }
    // The held-out images themselves differ, not just their order.
    const held = new Set(imageKeys(a.validation, 784));
    assert.ok(imageKeys(other.validation, 784).some((key) => !held.has(key)));

    const shape: [number, number, number] = [28, 28, 1];
    assert.ok(epochBytes(a.train, 9, 0, shape).equals(epochBytes(b.train, 9, 0, shape)));
    assert.ok(!epochBytes(a.train, 9, 0, shape).equals(epochBytes(a.train, 10, 0, shape)));
    assert.ok(!epochBytes(a.train, 9, 0, shape).equals(epochBytes(a.train, 9, 1, shape)));
  });

  it('stratifies: every class in both splits in the requested share, together exactly the data', async () => {
    const options = { resolution: 28, channels: 1, validationFraction: 0.25 };
    const data = await loadDataset(fashion(40), options);
    assert.deepEqual(perClass(data.train, 10), new Array(10).fill(30));
    assert.deepEqual(perClass(data.validation, 10), new Array(10).fill(10));
    // Another seed splits the same 400 images differently: the union is the same multiset.
    const other = await loadDataset(fashion(40), { ...options, seed: 1 });
    const all = (d: Dataset): string[] =>
      [...imageKeys(d.train, 784), ...imageKeys(d.validation, 784)].sort();
    assert.deepEqual(all(other), all(data));
    // Small classes still give each split at least one image.
    const tiny = await loadDataset(fashion(2), { resolution: 28, channels: 1 });
    assert.deepEqual(perClass(tiny.train, 10), new Array(10).fill(1));
    assert.deepEqual(perClass(tiny.validation, 10), new Array(10).fill(1));
    // The held-out share is rounded, not truncated: 6 x 0.3 = 1.8 -> 2.
    const rounded = await loadDataset(fashion(6), { ...options, validationFraction: 0.3 });
    assert.deepEqual(perClass(rounded.validation, 10), new Array(10).fill(2));
  });

  it('rejects bad options and limits, naming the field and the expectation', async () => {
    const cases: [DatasetSpec, Record<string, number>, RegExp][] = [
      [fashion(10), { resolution: 0, channels: 1 }, /resolution must be an integer >= 1, got 0/],
      [fashion(10), { resolution: 28, channels: 2 }, /channels must be 1 or 3, got 2/],
      [
        fashion(10),
        { resolution: 28, channels: 1, validationFraction: 1 },
        /validationFraction must be a number in \(0, 1\), got 1/,
      ],
      [
        fashion(1),
        { resolution: 28, channels: 1 },
        /fashion-mnist: limitPerClass must be an integer >= 2/,
      ],
      [
        { ...synthetic(1), classes: 1 } as DatasetSpec,
        { resolution: 12, channels: 3 },
        /synthetic: classes must be an integer >= 2, got 1/,
      ],
    ];
    for (const [spec, options, message] of cases) {
      await assert.rejects(
        loadDataset(spec, options as { resolution: number; channels: number }),
        (error: unknown) => error instanceof DatasetError && message.test(error.message),
      );
    }
  });
});

describe('loadDataset: resizing and channels', () => {
  it('resizes 28 -> 32 and repeats 1 -> 3 channels, keeping the images recognisable', async () => {
    const original = await loadDataset(fashion(10), { resolution: 28, channels: 1 });
    const resized = await loadDataset(fashion(10), { resolution: 32, channels: 3 });
    const rgb28 = await loadDataset(fashion(10), { resolution: 28, channels: 3 });
    assert.deepEqual([resized.resolution, resized.channels], [32, 3]);
    const { train } = resized;
    assert.equal(train.images.length, train.count * 32 * 32 * 3);
    assert.deepEqual(
      train.labels,
      original.train.labels,
      'the split depends only on seed and counts',
    );
    const r = range(train.images);
    assert.ok(r.min >= 0 && r.max <= 1 && r.max > 0.9, `range ${r.min}..${r.max}`);
    for (let i = 0; i < train.count; i++) {
      const big = train.images.subarray(i * 3072, (i + 1) * 3072);
      const small = original.train.images.subarray(i * 784, (i + 1) * 784);
      for (let p = 0; p < 1024; p++) {
        assert.equal(big[p * 3], big[p * 3 + 1]);
        assert.equal(big[p * 3], big[p * 3 + 2]);
      }
      // Bilinear resampling keeps the overall brightness and the image's layout.
      assert.ok(Math.abs(mean(big) - mean(small)) < 0.02, `image ${i}: means differ`);
      const centre = big[(16 * 32 + 16) * 3] ?? NaN;
      const near = [13, 14].flatMap((y) => [13, 14].map((x) => small[y * 28 + x] ?? NaN));
      assert.ok(centre >= Math.min(...near) - 1e-6 && centre <= Math.max(...near) + 1e-6);
    }
    // Without a resize, 1 -> 3 is an exact repetition.
    const rgb = rgb28.train.images;
    original.train.images.forEach((v, p) => {
      if (rgb[p * 3] !== v || rgb[p * 3 + 2] !== v) assert.fail(`pixel ${p} not repeated`);
    });
  });

  it('converts 3 -> 1 channels by luminance (0.299 R + 0.587 G + 0.114 B)', async () => {
    const colour = await loadDataset(synthetic(5), { resolution: 12, channels: 3 });
    const grey = await loadDataset(synthetic(5), { resolution: 12, channels: 1 });
    assert.equal(grey.train.images.length, grey.train.count * 144);
    const rgb = colour.train.images;
    grey.train.images.forEach((v, p) => {
      const luma =
        0.299 * (rgb[p * 3] ?? NaN) +
        0.587 * (rgb[p * 3 + 1] ?? NaN) +
        0.114 * (rgb[p * 3 + 2] ?? NaN);
      if (Math.abs(v - luma) > 1e-5) assert.fail(`pixel ${p}: ${v} is not the luminance ${luma}`);
    });
  });
});

describe('loadDataset: image folders', () => {
  let root: string;
  const codec = (): Pick<typeof TfNodeApi, 'encodePng' | 'encodeJpeg'> =>
    (tf as TensorFlow & { node: typeof TfNodeApi }).node;

  /** Writes a solid-colour image of height x width, PNG or JPEG by the file's extension. */
  async function writeImage(
    file: string,
    [r, g, b]: [number, number, number],
    height: number,
    width: number,
  ): Promise<void> {
    const pixels = Array.from({ length: height * width }, () => [r, g, b]).flat();
    const image = tf.tensor3d(pixels, [height, width, 3], 'int32');
    try {
      const bytes = file.endsWith('.png')
        ? await codec().encodePng(image)
        : await codec().encodeJpeg(image, 'rgb', 95);
      await mkdir(dirname(file), { recursive: true });
      await writeFile(file, bytes);
    } finally {
      image.dispose();
    }
  }

  const RED: [number, number, number] = [255, 0, 0];
  const BLUE: [number, number, number] = [0, 0, 255];

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'compofa-datasets-'));
    const pets = join(root, 'pets');
    await writeImage(join(pets, 'cat', 'a.png'), RED, 10, 10);
    await writeImage(join(pets, 'cat', 'b.jpg'), RED, 12, 20);
    await writeImage(join(pets, 'cat', 'c.PNG'), RED, 30, 18);
    await writeImage(join(pets, 'dog', 'a.jpeg'), BLUE, 8, 8);
    await writeImage(join(pets, 'dog', 'b.png'), BLUE, 9, 16);
    // Not images: skipped, as are hidden entries.
    await writeFile(join(pets, 'dog', 'notes.txt'), 'not an image');
    await writeFile(join(pets, 'dog', '.DS_Store'), 'not an image either');
    await mkdir(join(pets, '.cache'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  /** Mean colour of the images of one class, over both splits. */
  function meanColour(data: Dataset, label: number): number[] {
    const sums = new Array<number>(data.channels).fill(0);
    let pixels = 0;
    for (const split of [data.train, data.validation]) {
      const size = data.resolution * data.resolution * data.channels;
      split.labels.forEach((l, i) => {
        if (l !== label) return;
        const image = split.images.subarray(i * size, (i + 1) * size);
        image.forEach((v, p) => (sums[p % data.channels] = (sums[p % data.channels] ?? 0) + v));
        pixels += size / data.channels;
      });
    }
    return sums.map((s) => s / pixels);
  }

  it('loads one class per sorted sub-folder from PNG and JPEG files of any size, skipping other files', async () => {
    const path = join(root, 'pets');
    const data = await loadDataset({ kind: 'imagefolder', path }, { resolution: 6, channels: 3 });
    assert.deepEqual(data.classNames, ['cat', 'dog']);
    assert.equal(data.name, `imagefolder:${path}`);
    assert.equal(data.train.count + data.validation.count, 5);
    assert.deepEqual(perClass(data.validation, 2), [1, 1]);
    assert.equal(data.train.images.length, data.train.count * 6 * 6 * 3);
    const [red, blue] = [meanColour(data, 0), meanColour(data, 1)];
    assert.ok(
      (red[0] ?? 0) > 0.9 && (red[1] ?? 1) < 0.1 && (red[2] ?? 1) < 0.1,
      `cat: ${String(red)}`,
    );
    assert.ok(
      (blue[2] ?? 0) > 0.9 && (blue[0] ?? 1) < 0.1 && (blue[1] ?? 1) < 0.1,
      `dog: ${String(blue)}`,
    );
  });

  it('takes the label order from classes, and luminance for one channel', async () => {
    const path = join(root, 'pets');
    const data = await loadDataset(
      { kind: 'imagefolder', path, classes: ['dog', 'cat'] },
      { resolution: 5, channels: 1 },
    );
    assert.deepEqual(data.classNames, ['dog', 'cat']);
    assert.equal(data.train.images.length, data.train.count * 25);
    const [blue, red] = [meanColour(data, 0)[0] ?? NaN, meanColour(data, 1)[0] ?? NaN];
    assert.ok(Math.abs(blue - 0.114) < 0.03, `dog (blue) luminance ${blue}`);
    assert.ok(Math.abs(red - 0.299) < 0.03, `cat (red) luminance ${red}`);
  });

  it('names the folder and the expectation when the tree is wrong', async () => {
    const pets = join(root, 'pets');
    const single = join(root, 'single');
    await writeImage(join(single, 'only', 'a.png'), RED, 4, 4);
    const empty = join(root, 'empty');
    await writeImage(join(empty, 'full', 'a.png'), RED, 4, 4);
    await writeFile(join(empty, 'full.txt'), 'a file, not a class');
    await mkdir(join(empty, 'hollow'));
    await writeFile(join(empty, 'hollow', 'readme.md'), 'no images here');
    const lonely = join(root, 'lonely');
    await writeImage(join(lonely, 'few', 'a.png'), RED, 4, 4);
    await writeImage(join(lonely, 'many', 'a.png'), RED, 4, 4);
    await writeImage(join(lonely, 'many', 'b.png'), RED, 4, 4);
    const missing = join(root, 'nowhere');
    const file = join(pets, 'dog', 'notes.txt');
    const cases: [DatasetSpec, RegExp][] = [
      [
        { kind: 'imagefolder', path: missing },
        new RegExp(
          `^${escape(missing)}: image folder does not exist; expected a folder with one sub-folder`,
        ),
      ],
      [{ kind: 'imagefolder', path: file }, new RegExp(`^${escape(file)}: is not a folder`)],
      [
        { kind: 'imagefolder', path: single },
        new RegExp(
          `^${escape(single)}: must contain at least 2 class folders .*found 1 \\(only\\)`,
        ),
      ],
      [
        { kind: 'imagefolder', path: pets, classes: ['cat', 'cow'] },
        new RegExp(
          `^${escape(join(pets, 'cow'))}: class folder named in classes does not exist \\(class folders found: cat, dog\\)`,
        ),
      ],
      [
        { kind: 'imagefolder', path: empty },
        new RegExp(
          `^${escape(join(empty, 'hollow'))}: class folder must hold at least one image \\(.png, .jpg, .jpeg\\), found none`,
        ),
      ],
      [
        { kind: 'imagefolder', path: lonely },
        new RegExp(
          `^${escape(join(lonely, 'few'))}: class 'few' needs at least 2 images \\(one for training, one for validation\\), found 1`,
        ),
      ],
    ];
    for (const [spec, message] of cases) {
      await assert.rejects(loadDataset(spec, { resolution: 4, channels: 3 }), (error: unknown) => {
        assert.ok(error instanceof DatasetError, String(error));
        assert.match(error.message, message);
        return true;
      });
    }
  });

  it('names a corrupt or truncated image file: cannot be decoded as PNG or JPEG', async () => {
    const broken = join(root, 'broken');
    await writeImage(join(broken, 'a', 'fine.png'), RED, 4, 4);
    await writeImage(join(broken, 'b', 'fine.jpg'), BLUE, 4, 4);
    const garbage = join(broken, 'a', 'garbage.png');
    await writeFile(garbage, 'this is text, not a PNG');
    for (const bad of [garbage, join(broken, 'b', 'truncated.jpg')]) {
      if (bad.endsWith('truncated.jpg')) {
        await rm(garbage);
        const png = await readFile(join(broken, 'a', 'fine.png'));
        // A real PNG signature with the rest cut off, under a JPEG name.
        await writeFile(bad, png.subarray(0, 30));
      }
      await assert.rejects(
        loadDataset({ kind: 'imagefolder', path: broken }, { resolution: 4, channels: 3 }),
        (error: unknown) => {
          assert.ok(error instanceof DatasetError, String(error));
          assert.match(
            error.message,
            new RegExp(`^${escape(bad)}: cannot be decoded as PNG or JPEG`),
          );
          return true;
        },
      );
    }
  });

  it('leaves no tensors behind, loading or failing', async () => {
    const path = join(root, 'pets');
    await loadDataset({ kind: 'imagefolder', path }, { resolution: 6, channels: 1 }); // warm-up
    const before = tf.memory().numTensors;
    await loadDataset({ kind: 'imagefolder', path }, { resolution: 6, channels: 1 });
    await loadDataset({ kind: 'imagefolder', path }, { resolution: 3, channels: 3 });
    await loadDataset(fashion(5), { resolution: 32, channels: 3 });
    await loadDataset(synthetic(2), { resolution: 8, channels: 1 });
    const broken = join(root, 'leak');
    await writeImage(join(broken, 'a', 'fine.png'), RED, 4, 4);
    await writeImage(join(broken, 'b', 'fine.png'), RED, 4, 4);
    const truncated = (await readFile(join(broken, 'a', 'fine.png'))).subarray(0, 40);
    await writeFile(join(broken, 'b', 'truncated.png'), truncated);
    await assert.rejects(
      loadDataset({ kind: 'imagefolder', path: broken }, { resolution: 4, channels: 3 }),
      DatasetError,
    );
    assert.equal(tf.memory().numTensors, before);
  });
});

describe('loadDataset: synthetic', () => {
  it('is the same for a seed, different for another, and learnable by nearest centroid', async () => {
    const options = { resolution: 12, channels: 3, validationFraction: 0.25 };
    const [a, b, other] = await Promise.all([
      loadDataset(synthetic(11, 40), options),
      loadDataset(synthetic(11, 40), options),
      loadDataset(synthetic(12, 40), options),
    ]);
    assert.deepEqual(a.classNames, ['class-0', 'class-1', 'class-2', 'class-3']);
    assert.ok(bytesOf(a.train.images).equals(bytesOf(b.train.images)));
    assert.ok(bytesOf(a.validation.images).equals(bytesOf(b.validation.images)));
    assert.ok(!bytesOf(a.train.images).equals(bytesOf(other.train.images)));
    const r = range(a.train.images);
    assert.ok(r.min >= 0 && r.max <= 1);

    const size = 12 * 12 * 3;
    const centroids = Array.from({ length: 4 }, () => new Float64Array(size));
    a.train.labels.forEach((label, i) => {
      const centroid = centroids[label];
      for (let p = 0; p < size; p++)
        if (centroid) centroid[p] = (centroid[p] ?? 0) + (a.train.images[i * size + p] ?? 0) / 30;
    });
    let correct = 0;
    a.validation.labels.forEach((label, i) => {
      const image = a.validation.images.subarray(i * size, (i + 1) * size);
      const distances = centroids.map((c) =>
        image.reduce((d, v, p) => d + (v - (c[p] ?? 0)) ** 2, 0),
      );
      if (distances.indexOf(Math.min(...distances)) === label) correct++;
    });
    assert.equal(a.validation.count, 40);
    assert.ok(correct / a.validation.count > 0.9, `nearest centroid: ${correct} of 40 right`);
  });
});

describe('batches', () => {
  it('covers every image exactly once per epoch and keeps the last partial batch', async () => {
    const data = await loadDataset(synthetic(3, 7), { resolution: 12, channels: 3 });
    const { train } = data;
    assert.equal(train.count, 24); // 4 classes x (7 - 1 held out)
    const size = 12 * 12 * 3;
    const index = new Map(imageKeys(train, size).map((key, i) => [key, i]));
    assert.equal(index.size, 24, 'synthetic images are distinct');
    for (const epoch of [0, 1]) {
      const all = [...batches(train, 5, 3, epoch, [12, 12, 3])];
      assert.deepEqual(
        all.map((batch) => batch.count),
        [5, 5, 5, 5, 4],
      );
      const seen: number[] = [];
      for (const batch of all) {
        assert.equal(batch.images.length, batch.count * size);
        assert.equal(batch.labels.length, batch.count);
        imageKeys(batch, size).forEach((key, j) => {
          const i = index.get(key);
          assert.ok(i !== undefined, 'a batch holds an image not in the split');
          assert.equal(batch.labels[j], train.labels[i], 'image and label travel together');
          seen.push(i);
        });
      }
      assert.deepEqual(
        [...seen].sort((x, y) => x - y),
        Array.from({ length: 24 }, (_, i) => i),
      );
      assert.notDeepEqual(
        seen,
        Array.from({ length: 24 }, (_, i) => i),
        'the order is shuffled',
      );
    }
  });

  it('rejects a batch size below 1 and a shape that does not match the split', async () => {
    const { train } = await loadDataset(synthetic(3, 4), { resolution: 12, channels: 3 });
    assert.throws(() => batches(train, 0, 1, 0, [12, 12, 3]), /batchSize must be an integer >= 1/);
    assert.throws(
      () => batches(train, 4, 1, 0, [12, 12, 1]),
      /a split of 12 images of shape \[12, 12, 1\] must hold 1728 values/,
    );
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
