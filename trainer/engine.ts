/**
 * The inference engines that run an extracted subnet: ONNX Runtime on `model.onnx` (the default:
 * the whole network is one native call, several times faster at small batches) and TensorFlow.js
 * on `model.json` (each layer an eager op through JavaScript). Profiling and serving both go
 * through this module, so a latency table measures the engine, version and threads that serve.
 */
import type * as tfjs from '@tensorflow/tfjs';
import type * as OnnxRuntimeModule from 'onnxruntime-node';
import type { InferenceSession } from 'onnxruntime-node';

type OnnxRuntime = typeof OnnxRuntimeModule;

import type { EngineFacts } from '../compofa/engines.js';
import type { TensorFlow } from './backend.js';

/** onnxruntime-node's facts (loads its native binding). */
export async function onnxRuntimeFacts(): Promise<EngineFacts> {
  const { env } = await import('onnxruntime-node');
  return { name: 'onnxruntime', version: env.versions.node ?? env.versions.common };
}

/**
 * The tfjs engine's facts: TensorFlow's version (the C library behind tfjs-node), or tfjs's own
 * on the pure-JS backend. Profiling and serving both record this.
 */
export function tfjsEngineFacts(tf: TensorFlow): EngineFacts {
  const binding = (tf.backend() as { binding?: { TF_Version?: string } }).binding;
  return { name: 'tfjs', version: binding?.TF_Version ?? `tfjs-${tf.version_core}` };
}

/** A model ready to run: flat row-major NHWC batches in, flat outputs out. */
export interface CompiledModel {
  readonly engine: EngineFacts;
  /** The first output (class probabilities) of `batch` images of `shape` (H, W, C). */
  run(images: Float32Array, batch: number): Promise<Float32Array>;
  dispose(): Promise<void>;
}

/** Settings of an ONNX Runtime session. */
export interface OnnxSessionOptions {
  /**
   * Intra- and inter-op threads; undefined keeps ONNX Runtime's default (one per physical core
   * the process sees, which in a container is often more than its CPU limit).
   */
  readonly threads?: number;
}

/** A session's input or output: its name and shape (a string for a symbolic dimension). */
interface OnnxValue {
  readonly name: string;
  readonly shape: readonly (number | string)[];
}

/** An ONNX Runtime session over one model, with its single input and first output. */
export class OnnxModel implements CompiledModel {
  /** The first input and output, and how many the session has. */
  readonly signature: {
    readonly input: OnnxValue;
    readonly output: OnnxValue;
    readonly inputs: number;
    readonly outputs: number;
  };
  /** One image's dimensions (all but the batch), read once: run() is the serving hot path. */
  private readonly imageShape: readonly number[];

  private constructor(
    private readonly ort: OnnxRuntime,
    private readonly session: InferenceSession,
    readonly engine: EngineFacts,
  ) {
    const describe = (value: InferenceSession.ValueMetadata | undefined): OnnxValue => ({
      name: value?.name ?? '',
      shape: value?.isTensor ? value.shape : [],
    });
    this.signature = {
      input: describe(session.inputMetadata[0]),
      output: describe(session.outputMetadata[0]),
      inputs: session.inputNames.length,
      outputs: session.outputNames.length,
    };
    // Every dimension but the batch is fixed in our models (checked when serving loads one).
    this.imageShape = this.signature.input.shape.slice(1).map(Number);
  }

  /**
   * Compiles `model` (the bytes of a .onnx file) on the CPU execution provider with every graph
   * optimisation.
   */
  static async create(model: Uint8Array, options: OnnxSessionOptions = {}): Promise<OnnxModel> {
    const ort = await import('onnxruntime-node');
    const facts = await onnxRuntimeFacts();
    const threads = options.threads ?? 0;
    const session = await ort.InferenceSession.create(model, {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      intraOpNumThreads: threads,
      interOpNumThreads: threads,
      // Warnings only: ONNX Runtime's informational lines would flood a pod's log.
      logSeverityLevel: 2,
    });
    return new OnnxModel(ort, session, facts);
  }

  async run(images: Float32Array, batch: number): Promise<Float32Array> {
    const { input, output: wanted } = this.signature;
    const tensor = new this.ort.Tensor('float32', images, [batch, ...this.imageShape]);
    const outputName = wanted.name;
    const results = await this.session.run({ [input.name]: tensor }, [outputName]);
    const output = results[outputName];
    if (!output || !(output.data instanceof Float32Array)) {
      throw new Error(`the ONNX model's output '${outputName}' is not float32`);
    }
    return output.data;
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

/** A TensorFlow.js LayersModel run eagerly, with no tensor outliving a call. */
export class TfjsModel implements CompiledModel {
  constructor(
    private readonly tf: TensorFlow,
    readonly model: tfjs.LayersModel,
    readonly engine: EngineFacts,
    private readonly inputShape: readonly [number, number, number],
  ) {}

  run(images: Float32Array, batch: number): Promise<Float32Array> {
    const output = this.tf.tidy(
      () =>
        this.model.predict(this.tf.tensor4d(images, [batch, ...this.inputShape])) as tfjs.Tensor,
    );
    return output.data().then(
      (data) => {
        output.dispose();
        return data as Float32Array;
      },
      (error: unknown) => {
        output.dispose();
        throw error;
      },
    );
  }

  dispose(): Promise<void> {
    this.model.dispose();
    return Promise.resolve();
  }
}
