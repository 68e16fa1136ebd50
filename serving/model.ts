/**
 * The served model: a subnet as `compofa extract` writes it (one NHWC image input in [0, 1], one
 * class-probability output), run by ONNX Runtime from `model.onnx` (the default) or by
 * TensorFlow.js from `model.json` (`--engine tfjs`), loaded once, checked against what it says
 * about itself, warmed up, and called with flat batches.
 */
import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import type * as tfjs from '@tensorflow/tfjs';

import type { TensorFlow } from '../trainer/backend.js';
import type { EngineFacts, EngineName } from '../compofa/engines.js';
import { OnnxModel, TfjsModel, tfjsEngineFacts, type CompiledModel } from '../trainer/engine.js';
import { MODEL_FILES, type SubnetModelMetadata } from '../trainer/extract.js';
import { ONNX_METADATA_KEY } from '../trainer/onnx/export.js';
import { readOnnxMetadata } from '../trainer/onnx/metadata.js';
import type { ModelSignature } from './protocol.js';

/** Thrown when the model folder cannot be served; the message names the file and why. */
export class ModelLoadError extends Error {
  override readonly name = 'ModelLoadError';
}

/** What the model says about itself, for metadata responses and the model-info metric. */
export interface ModelDescription {
  /** The subnet id from `compofa extract`; undefined for a model without CompOFA metadata. */
  readonly subnet: string | undefined;
  readonly designSpace: string | undefined;
  readonly architectureKey: string | undefined;
  /** The engine running it and that engine's version. */
  readonly engine: EngineFacts;
}

/** The v2 protocol's `platform` of each engine (Triton's names where it has one). */
const PLATFORMS: Readonly<Record<EngineName, string>> = {
  onnxruntime: 'onnxruntime_onnx',
  tfjs: 'tensorflowjs_layers',
};

/** Options of {@link ServedModel.load}. */
export interface ModelLoadOptions {
  readonly engine: EngineName;
  readonly modelDir: string;
  /** Largest batch of one request. */
  readonly maxBatchSize: number;
  /** The engine's threads; undefined keeps its default. */
  readonly threads?: number;
  /** TensorFlow.js, needed by the tfjs engine only. */
  readonly tf?: TensorFlow;
}

/** A loaded, warmed-up image classifier. */
export class ServedModel {
  private constructor(
    private readonly compiled: CompiledModel,
    /** Shapes and names of the input and output, with the request batch limit. */
    readonly signature: ModelSignature,
    readonly description: ModelDescription,
  ) {}

  /**
   * Loads the model folder with `options.engine` and checks that it is a single-input image
   * classifier (input `[batch, R, R, C]`, output `[batch, classes]`) that agrees with its
   * CompOFA metadata.
   */
  static async load(options: ModelLoadOptions): Promise<ServedModel> {
    if (options.engine === 'onnxruntime') return loadOnnx(options);
    if (!options.tf) throw new ModelLoadError('the tfjs engine needs TensorFlow.js loaded');
    return loadTfjs(options.tf, options);
  }

  /** The v2 protocol's platform name of the engine serving this model. */
  get platform(): string {
    return PLATFORMS[this.description.engine.name];
  }

  /** Elements of one input row (R * R * C). */
  get rowSize(): number {
    const { resolution, channels } = this.signature;
    return resolution * resolution * channels;
  }

  /** Class probabilities of `batch` images given row-major in `images`. */
  predict(images: Float32Array, batch: number): Promise<Float32Array> {
    return this.compiled.run(images, batch);
  }

  /** Runs the model once per batch size so the first real requests pay no set-up cost. */
  async warmUp(batchSizes: readonly number[]): Promise<void> {
    for (const batch of new Set(batchSizes)) {
      await this.predict(new Float32Array(batch * this.rowSize), batch);
    }
  }

  dispose(): Promise<void> {
    return this.compiled.dispose();
  }

  /** Wraps a compiled model once its signature has been checked. */
  static from(
    compiled: CompiledModel,
    signature: ModelSignature,
    metadata: SubnetModelMetadata | undefined,
  ): ServedModel {
    return new ServedModel(compiled, signature, {
      subnet: metadata?.subnet,
      designSpace: metadata?.designSpace,
      architectureKey: metadata?.architectureKey,
      engine: compiled.engine,
    });
  }
}

/** `read(path)`, with a missing or unreadable file as a ModelLoadError naming it. */
async function modelFile<T>(path: string, read: (path: string) => Promise<T>): Promise<T> {
  try {
    return await read(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new ModelLoadError(
      code === 'ENOENT'
        ? `${path}: no such file; expected the model folder of compofa extract`
        : `${path}: cannot be read: ${(error as Error).message}`,
    );
  }
}

async function loadOnnx(options: ModelLoadOptions): Promise<ServedModel> {
  const path = resolve(join(options.modelDir, MODEL_FILES.onnx));
  const bytes = await modelFile(path, (p) => readFile(p));
  let text: string | undefined;
  try {
    text = readOnnxMetadata(bytes).get(ONNX_METADATA_KEY);
  } catch (error) {
    throw new ModelLoadError(`${path}: not an ONNX model: ${(error as Error).message}`);
  }
  const metadata = text === undefined ? undefined : parseMetadata(text, path);
  let session: OnnxModel;
  try {
    session = await OnnxModel.create(bytes, { threads: options.threads });
  } catch (error) {
    throw new ModelLoadError(`${path}: not a loadable ONNX model: ${(error as Error).message}`);
  }
  try {
    const { input, output, inputs, outputs } = session.signature;
    if (inputs !== 1 || outputs !== 1) {
      throw new ModelLoadError(
        `${path}: expected one input and one output, got ${inputs} and ${outputs}`,
      );
    }
    const signature = checkSignature(path, input, output, metadata, options.maxBatchSize);
    return ServedModel.from(session, signature, metadata);
  } catch (error) {
    await session.dispose();
    throw error;
  }
}

/** The JSON under metadata_props['compofa'], checked to be what extraction writes. */
function parseMetadata(text: string, path: string): SubnetModelMetadata {
  const where = `${path}: metadata_props['${ONNX_METADATA_KEY}']`;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ModelLoadError(`${where} is not JSON: ${(error as Error).message}`);
  }
  const fields = value as Partial<Record<keyof SubnetModelMetadata, unknown>> | null;
  const counts = ['resolution', 'inputChannels', 'numClasses'] as const;
  if (
    typeof fields !== 'object' ||
    fields === null ||
    counts.some((name) => !Number.isInteger(fields[name]) || Number(fields[name]) < 1)
  ) {
    throw new ModelLoadError(
      `${where} must be an object with positive integers ${counts.join(', ')} (as compofa extract writes it)`,
    );
  }
  return value as SubnetModelMetadata;
}

async function loadTfjs(tf: TensorFlow, options: ModelLoadOptions): Promise<ServedModel> {
  const path = resolve(join(options.modelDir, MODEL_FILES.layers));
  // tfjs reads the file itself: only whether it is there is asked here.
  await modelFile(path, (p) => access(p, constants.R_OK));
  let model: tfjs.LayersModel;
  try {
    model = await tf.loadLayersModel(pathToFileURL(path).href);
  } catch (error) {
    throw new ModelLoadError(`${path}: not a loadable TensorFlow.js LayersModel: ${String(error)}`);
  }
  const metadata = (model.getUserDefinedMetadata() as { compofa?: SubnetModelMetadata } | undefined)
    ?.compofa;
  try {
    if (model.inputs.length !== 1 || model.outputs.length !== 1) {
      throw new ModelLoadError(
        `${path}: expected one input and one output, got ${model.inputs.length} and ${model.outputs.length}`,
      );
    }
    const signature = checkSignature(
      path,
      { name: model.inputNames[0] ?? '', shape: model.inputs[0]?.shape ?? [] },
      { name: model.outputNames[0] ?? '', shape: model.outputs[0]?.shape ?? [] },
      metadata,
      options.maxBatchSize,
    );
    const { resolution, channels } = signature;
    return ServedModel.from(
      new TfjsModel(tf, model, tfjsEngineFacts(tf), [resolution, resolution, channels]),
      signature,
      metadata,
    );
  } catch (error) {
    model.dispose();
    throw error;
  }
}

type Dimension = number | string | null;

/**
 * The served signature of an input `[batch, R, R, C]` and output `[batch, classes]`, refused when
 * the shapes are not an image classifier's or disagree with the model's CompOFA metadata.
 */
function checkSignature(
  path: string,
  input: { readonly name: string; readonly shape: readonly Dimension[] },
  output: { readonly name: string; readonly shape: readonly Dimension[] },
  metadata: SubnetModelMetadata | undefined,
  maxBatchSize: number,
): ModelSignature {
  const [, height, width, channels] = input.shape;
  if (
    input.shape.length !== 4 ||
    typeof height !== 'number' ||
    height !== width ||
    typeof channels !== 'number'
  ) {
    throw new ModelLoadError(
      `${path}: input '${input.name}' must be square NHWC images [batch, R, R, C], got ${JSON.stringify(input.shape)}`,
    );
  }
  const [, numClasses] = output.shape;
  if (output.shape.length !== 2 || typeof numClasses !== 'number') {
    throw new ModelLoadError(
      `${path}: output '${output.name}' must be [batch, classes], got ${JSON.stringify(output.shape)}`,
    );
  }
  if (
    metadata &&
    (metadata.resolution !== height ||
      metadata.inputChannels !== channels ||
      metadata.numClasses !== numClasses)
  ) {
    throw new ModelLoadError(
      `${path}: input ${JSON.stringify(input.shape)} and output ${JSON.stringify(output.shape)} disagree with the model's metadata (resolution ${metadata.resolution}, ${metadata.inputChannels} channels, ${metadata.numClasses} classes)`,
    );
  }
  return {
    inputName: input.name,
    outputName: output.name,
    resolution: height,
    channels,
    numClasses,
    maxBatchSize,
  };
}
