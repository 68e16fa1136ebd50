/**
 * The served model: a standard TensorFlow.js LayersModel as `compofa extract` writes it (one NHWC
 * image input in [0, 1], one class-probability output), loaded once, warmed up, and called with
 * flat batches so that no tensor outlives a call.
 */
import { access } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import type * as tfjs from '@tensorflow/tfjs';

import type { TensorFlow } from '../trainer/backend.js';
import type { SubnetModelMetadata } from '../trainer/extract.js';
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
}

/** A loaded, warmed-up image classifier. */
export class ServedModel {
  private constructor(
    private readonly tf: TensorFlow,
    private readonly model: tfjs.LayersModel,
    /** Shapes and names of the input and output, with the request batch limit. */
    readonly signature: ModelSignature,
    readonly description: ModelDescription,
  ) {}

  /**
   * Loads `modelDir/model.json` and checks that it is a single-input image classifier: input
   * `[null, R, R, C]`, output `[null, classes]`.
   */
  static async load(tf: TensorFlow, modelDir: string, maxBatchSize: number): Promise<ServedModel> {
    const path = resolve(join(modelDir, 'model.json'));
    try {
      await access(path);
    } catch {
      throw new ModelLoadError(
        `${path}: no such file; expected the model folder of compofa extract`,
      );
    }
    let model: tfjs.LayersModel;
    try {
      model = await tf.loadLayersModel(pathToFileURL(path).href);
    } catch (error) {
      throw new ModelLoadError(
        `${path}: not a loadable TensorFlow.js LayersModel: ${String(error)}`,
      );
    }
    const signature = signatureOf(model, path, maxBatchSize);
    const metadata = (
      model.getUserDefinedMetadata() as { compofa?: SubnetModelMetadata } | undefined
    )?.compofa;
    return new ServedModel(tf, model, signature, {
      subnet: metadata?.subnet,
      designSpace: metadata?.designSpace,
      architectureKey: metadata?.architectureKey,
    });
  }

  /** Elements of one input row (R * R * C). */
  get rowSize(): number {
    const { resolution, channels } = this.signature;
    return resolution * resolution * channels;
  }

  /** Class probabilities of `batch` images given row-major in `images`. */
  async predict(images: Float32Array, batch: number): Promise<Float32Array> {
    const { resolution, channels } = this.signature;
    const output = this.tf.tidy(
      () =>
        this.model.predict(
          this.tf.tensor4d(images, [batch, resolution, resolution, channels]),
        ) as tfjs.Tensor,
    );
    try {
      return (await output.data()) as Float32Array;
    } finally {
      output.dispose();
    }
  }

  /** Runs the model once per batch size so the first real requests pay no set-up cost. */
  async warmUp(batchSizes: readonly number[]): Promise<void> {
    for (const batch of new Set(batchSizes)) {
      await this.predict(new Float32Array(batch * this.rowSize), batch);
    }
  }

  dispose(): void {
    this.model.dispose();
  }
}

function signatureOf(model: tfjs.LayersModel, path: string, maxBatchSize: number): ModelSignature {
  const [input, ...moreInputs] = model.inputs;
  const [output, ...moreOutputs] = model.outputs;
  const inputName = model.inputNames[0];
  const outputName = model.outputNames[0];
  if (!input || !output || !inputName || !outputName || moreInputs.length || moreOutputs.length) {
    throw new ModelLoadError(
      `${path}: expected one input and one output, got ${model.inputs.length} and ${model.outputs.length}`,
    );
  }
  const [, height, width, channels] = input.shape;
  if (input.shape.length !== 4 || !height || height !== width || !channels) {
    throw new ModelLoadError(
      `${path}: input '${inputName}' must be square NHWC images [null, R, R, C], got ${JSON.stringify(input.shape)}`,
    );
  }
  const [, numClasses] = output.shape;
  if (output.shape.length !== 2 || !numClasses) {
    throw new ModelLoadError(
      `${path}: output '${outputName}' must be [null, classes], got ${JSON.stringify(output.shape)}`,
    );
  }
  return { inputName, outputName, resolution: height, channels, numClasses, maxBatchSize };
}
