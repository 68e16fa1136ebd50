/**
 * ONNX export of an extracted subnet. The input is the TensorFlow.js LayersModel that extraction
 * builds from the per-subnet layer description (`SubnetLayers`), so the .onnx file and model.json
 * describe one network by construction; each layer becomes the ONNX operators that compute the
 * same function:
 *
 * - the NHWC image input is transposed once to NCHW, ONNX's convolution layout;
 * - batch norm after a bias-free convolution is folded into the convolution's weights and bias
 *   (exact up to float32 rounding; the folding is done in float64);
 * - a uniform 1x1 depthwise affine followed by a ReLU capped at 1 (how extraction builds
 *   h-sigmoid from stock layers) is HardSigmoid, and x * HardSigmoid(x) with alpha 1/6 and beta
 *   1/2 is HardSwish: one fused operator each instead of three;
 * - dropout is the identity at inference.
 *
 * A layer or setting outside that set is refused with its name, never approximated.
 */
import type * as tfjs from '@tensorflow/tfjs';

import {
  DataType,
  encodeModel,
  float,
  type AttributeValue,
  type OnnxNode,
  type OnnxTensor,
  type OnnxValueInfo,
} from './schema.js';

type Layer = tfjs.layers.Layer;
type SymbolicTensor = tfjs.SymbolicTensor;
type Config = Record<string, unknown>;

/** The model metadata key whose value is the JSON of {@link OnnxExportOptions.metadata}. */
export const ONNX_METADATA_KEY = 'compofa';
/** The symbolic batch dimension of the input and outputs. */
const BATCH = 'batch';
/** h-swish's constants, as float32 (what extraction's layers hold). */
const H_SWISH_ALPHA = Math.fround(1 / 6);
const H_SWISH_BETA = 0.5;

/** The layout of a 4-D graph input or output. */
export type OnnxLayout = 'nhwc' | 'nchw';

/** What to convert: see {@link convertToOnnx}. */
export interface OnnxConversionOptions {
  /** Also expose these layers' outputs (e.g. `logits`), after the model's own outputs. */
  readonly extraOutputs?: readonly string[];
  /**
   * The layout of the graph's input and of its 4-D outputs. Default `nhwc`, the layout of
   * TensorFlow.js and of serving. `nchw` is the layout between the layers inside a network, so a
   * part of a network converted on its own pays no transposes the whole would not (profiling's
   * per-layer lookup tables, and the parts that {@link chainOnnxGraphs} joins).
   */
  readonly inputLayout?: OnnxLayout;
  readonly outputLayout?: OnnxLayout;
}

/** Options of {@link exportOnnx}. */
export interface OnnxExportOptions extends OnnxConversionOptions, OnnxFileOptions {}

/** What a model file records besides its graph. */
export interface OnnxFileOptions {
  /** Stored as JSON under {@link ONNX_METADATA_KEY} in the model's metadata_props. */
  readonly metadata: Readonly<Record<string, unknown>>;
  readonly producerVersion: string;
  readonly docString?: string;
}

/** A converted graph: its nodes, weights, one input and its outputs. */
export interface OnnxGraph {
  readonly name: string;
  readonly nodes: readonly OnnxNode[];
  readonly initializers: readonly OnnxTensor[];
  readonly input: OnnxValueInfo;
  readonly outputs: readonly OnnxValueInfo[];
}

/** Thrown for a model the exporter cannot convert exactly; the message names the layer. */
export class OnnxExportError extends Error {
  override readonly name = 'OnnxExportError';
}

/** A converted tensor: its ONNX name and layout, and, for h-sigmoid outputs, what it gates. */
interface Value {
  readonly name: string;
  /** NCHW for 4-D tensors (NHWC in TensorFlow.js), `flat` for 2-D ones. */
  readonly layout: 'nchw' | 'flat';
  readonly hardSigmoidOf?: {
    readonly input: string;
    readonly alpha: number;
    readonly beta: number;
  };
}

/** The ONNX ModelProto bytes of `model` (an extracted subnet or any model of the same layers). */
export function exportOnnx(model: tfjs.LayersModel, options: OnnxExportOptions): Uint8Array {
  return encodeOnnxGraph(convertToOnnx(model, options), options);
}

/** The ONNX graph of `model`, before it is written: see {@link exportOnnx}. */
export function convertToOnnx(
  model: tfjs.LayersModel,
  options: OnnxConversionOptions = {},
): OnnxGraph {
  const layouts = { input: options.inputLayout ?? 'nhwc', output: options.outputLayout ?? 'nhwc' };
  const converter = new GraphConverter(model, layouts);
  const outputLayers = [...model.outputNames, ...(options.extraOutputs ?? [])];
  const outputs = converter.convert(outputLayers);
  const [input] = model.inputs;
  const [, height, width, channels] = input?.shape ?? [];
  if (!input || !height || !width || !channels) {
    throw new OnnxExportError('the model must have one NHWC image input of known size');
  }
  const nchw = (h: number, w: number, c: number) => [BATCH, c, h, w];
  return {
    name: model.name,
    nodes: converter.nodes,
    initializers: converter.initializers,
    input: {
      name: model.inputNames[0] ?? 'image',
      elementType: DataType.FLOAT,
      shape:
        layouts.input === 'nchw' ? nchw(height, width, channels) : [BATCH, height, width, channels],
    },
    outputs: outputs.map(({ name, shape }) => {
      const [h = 0, w = 0, c = 0] = shape;
      return {
        name,
        elementType: DataType.FLOAT,
        shape: shape.length === 3 && layouts.output === 'nchw' ? nchw(h, w, c) : [BATCH, ...shape],
      };
    }),
  };
}

/** `graph` as the bytes of a model file, with `options`' metadata. */
export function encodeOnnxGraph(graph: OnnxGraph, options: OnnxFileOptions): Uint8Array {
  return encodeModel({
    producerName: 'compofa-operator',
    producerVersion: options.producerVersion,
    docString: options.docString ?? '',
    graphName: graph.name,
    nodes: graph.nodes,
    initializers: graph.initializers,
    inputs: [graph.input],
    outputs: graph.outputs,
    metadata: { [ONNX_METADATA_KEY]: JSON.stringify(options.metadata) },
  });
}

/** Walks the model's layers in topological order, emitting nodes and initializers. */
class GraphConverter {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: OnnxTensor[] = [];
  /** ONNX values by SymbolicTensor id. */
  private readonly values = new Map<number, Value>();
  /** The layers reading each SymbolicTensor, by id. */
  private readonly consumers = new Map<number, Layer[]>();
  /** Layers already emitted as part of the layer before them (a folded batch norm, a clip). */
  private readonly absorbed = new Set<Layer>();
  private keep = new Set<string>();

  constructor(
    private readonly model: tfjs.LayersModel,
    private readonly layouts: { readonly input: OnnxLayout; readonly output: OnnxLayout },
  ) {
    for (const layer of model.layers) {
      for (const tensor of inputsOf(layer)) {
        const list = this.consumers.get(tensor.id) ?? [];
        list.push(layer);
        this.consumers.set(tensor.id, list);
      }
    }
  }

  /** Converts every layer; returns the graph outputs (named after `outputLayers`). */
  convert(outputLayers: readonly string[]): { name: string; shape: number[] }[] {
    this.keep = new Set(outputLayers);
    for (const layer of this.model.layers) {
      if (!this.absorbed.has(layer)) this.layer(layer);
    }
    const outputs = outputLayers.map((name) => {
      let layer: Layer;
      try {
        layer = this.model.getLayer(name);
      } catch {
        throw new OnnxExportError(`the model has no layer '${name}' to expose as an output`);
      }
      const tensor = outputOf(layer);
      let value = this.value(tensor);
      if (value.layout === 'nchw' && this.layouts.output === 'nhwc') {
        // The output keeps the layer's name and TensorFlow.js's NHWC layout.
        const internal = this.rename(value.name, `${name}_nchw`);
        value = this.emit('Transpose', name, [internal], 'flat', { perm: [0, 2, 3, 1] });
      }
      if (value.name !== name) value = this.emit('Identity', name, [value.name], value.layout);
      return { name, shape: tensor.shape.slice(1).map((d) => d ?? 0) };
    });
    this.removeUnusedNodes(outputs.map(({ name }) => name));
    return outputs;
  }

  private layer(layer: Layer): void {
    const output = outputOf(layer);
    const name = layer.name;
    if (layer.getClassName() === 'InputLayer') {
      this.values.set(
        output.id,
        this.layouts.input === 'nchw'
          ? { name, layout: 'nchw' }
          : this.emit('Transpose', `${name}_nchw`, [name], 'nchw', { perm: [0, 3, 1, 2] }),
      );
      return;
    }
    const config = layer.getConfig() as Config;
    const inputs = inputsOf(layer).map((tensor) => this.value(tensor));
    const [input] = inputs;
    const set = (value: Value): void => {
      this.values.set(output.id, value);
    };
    switch (layer.getClassName()) {
      case 'Conv2D':
      case 'DepthwiseConv2D':
        set(this.convolution(layer, config, this.only(input, layer)));
        return;
      case 'BatchNormalization':
        set(this.batchNorm(layer, config, this.only(input, layer)));
        return;
      case 'ReLU': {
        const value = this.only(input, layer);
        const maxValue = config.maxValue;
        if (config.threshold || config.negativeSlope) throw unsupported(layer, 'a leaky ReLU');
        set(
          typeof maxValue === 'number'
            ? this.emit(
                'Clip',
                name,
                [value.name, this.scalar(0), this.scalar(maxValue)],
                value.layout,
              )
            : this.emit('Relu', name, [value.name], value.layout),
        );
        return;
      }
      case 'Activation': {
        const value = this.only(input, layer);
        set(this.activation(layer, String(config.activation), value, name));
        return;
      }
      case 'Add':
      case 'Multiply':
        set(this.elementwise(layer, inputs));
        return;
      case 'GlobalAveragePooling2D': {
        const value = this.nchw(input, layer);
        if (config.keepDims) throw unsupported(layer, 'keepDims');
        const pooled = this.emit('GlobalAveragePool', `${name}_pool`, [value.name], 'nchw');
        set(this.emit('Flatten', name, [pooled.name], 'flat', { axis: 1 }));
        return;
      }
      case 'Reshape': {
        const value = this.only(input, layer);
        const target = config.targetShape as number[];
        const [h, w, c] = target;
        if (value.layout !== 'flat' || target.length !== 3 || h !== 1 || w !== 1 || !c) {
          throw unsupported(layer, `a reshape to ${JSON.stringify(target)}`);
        }
        // [N, C] -> NHWC [N, 1, 1, C] is NCHW [N, C, 1, 1]; 0 keeps the batch dimension.
        const shape = this.constant(
          `${name}_shape`,
          [4],
          BigInt64Array.from([0n, BigInt(c), 1n, 1n]),
        );
        set(this.emit('Reshape', name, [value.name, shape], 'nchw'));
        return;
      }
      case 'Flatten': {
        const value = this.only(input, layer);
        const [, h, w] = inputsOf(layer)[0]?.shape ?? [];
        // NHWC flattens in (h, w, c) order: with a spatial extent, back to NHWC first.
        const source =
          value.layout === 'nchw' && (h !== 1 || w !== 1)
            ? this.emit('Transpose', `${name}_nhwc`, [value.name], 'nchw', { perm: [0, 2, 3, 1] })
            : value;
        set(this.emit('Flatten', name, [source.name], 'flat', { axis: 1 }));
        return;
      }
      case 'Dropout':
        set(this.only(input, layer));
        return;
      case 'Dense':
        set(this.dense(layer, config, this.only(input, layer)));
        return;
      default:
        throw unsupported(layer, `layers of class ${layer.getClassName()}`);
    }
  }

  private convolution(layer: Layer, config: Config, input: Value): Value {
    if (input.layout !== 'nchw') throw unsupported(layer, 'a convolution of a 2-D tensor');
    if (config.dataFormat !== 'channelsLast') throw unsupported(layer, 'channelsFirst');
    if (pair(config.dilationRate, layer).some((d) => d !== 1)) throw unsupported(layer, 'dilation');
    const depthwise = layer.getClassName() === 'DepthwiseConv2D';
    const [kernelTensor, biasTensor] = layer.getWeights();
    if (!kernelTensor) throw unsupported(layer, 'a convolution without weights');
    const [kh = 0, kw = 0, inChannels = 0, last = 0] = kernelTensor.shape;
    const kernel = kernelTensor.dataSync() as Float32Array;
    const bias = config.useBias ? (biasTensor?.dataSync() as Float32Array | undefined) : undefined;
    const strides = pair(config.strides, layer);
    const activation = String(config.activation);

    // Only a depth multiplier of 1 keeps the channels, as HardSigmoid does.
    if (depthwise && last === 1 && kh === 1 && kw === 1 && strides.every((s) => s === 1) && bias) {
      const hardSigmoid = this.hardSigmoid(layer, kernel, bias, input, activation);
      if (hardSigmoid) return hardSigmoid;
    }

    // OIHW: (out, in/group, kh, kw); a depthwise kernel (kh, kw, C, M) has out = C * M.
    const outChannels = depthwise ? inChannels * last : last;
    const weights = new Float64Array(outChannels * (depthwise ? 1 : inChannels) * kh * kw);
    for (let y = 0; y < kh; y++) {
      for (let x = 0; x < kw; x++) {
        for (let i = 0; i < inChannels; i++) {
          for (let o = 0; o < last; o++) {
            const from = ((y * kw + x) * inChannels + i) * last + o;
            const to = depthwise
              ? ((i * last + o) * kh + y) * kw + x
              : ((o * inChannels + i) * kh + y) * kw + x;
            weights[to] = kernel[from] ?? 0;
          }
        }
      }
    }
    const biases = Float64Array.from({ length: outChannels }, (_, o) => bias?.[o] ?? 0);

    // A batch norm that is this convolution's only reader becomes part of its weights.
    let outputName = layer.name;
    const norm = activation === 'linear' ? this.soleReader(layer, 'BatchNormalization') : undefined;
    if (norm) {
      const { scale, shift } = batchNormAffine(norm);
      const perOutput = weights.length / outChannels;
      for (let o = 0; o < outChannels; o++) {
        const s = scale[o] ?? 1;
        for (let k = 0; k < perOutput; k++)
          weights[o * perOutput + k] = (weights[o * perOutput + k] ?? 0) * s;
        biases[o] = (biases[o] ?? 0) * s + (shift[o] ?? 0);
      }
      this.absorbed.add(norm);
      this.values.set(outputOf(norm).id, { name: norm.name, layout: 'nchw' });
      outputName = norm.name;
    }

    const [, height = 0, width = 0] = inputsOf(layer)[0]?.shape ?? [];
    const same = config.padding === 'same';
    const [top, bottom] = same ? samePadding(height ?? 0, kh, strides[0]) : [0, 0];
    const [left, right] = same ? samePadding(width ?? 0, kw, strides[1]) : [0, 0];
    const w = this.constant(
      `${layer.name}_weight`,
      [outChannels, depthwise ? 1 : inChannels, kh, kw],
      Float32Array.from(weights),
    );
    const inputs = [input.name, w];
    if (bias || norm)
      inputs.push(this.constant(`${layer.name}_bias`, [outChannels], Float32Array.from(biases)));
    const conv = this.emit(
      'Conv',
      activation === 'linear' ? outputName : `${outputName}_linear`,
      inputs,
      'nchw',
      {
        kernel_shape: [kh, kw],
        strides,
        pads: [top, left, bottom, right],
        group: depthwise ? inChannels : 1,
      },
    );
    return activation === 'linear' ? conv : this.activation(layer, activation, conv, outputName);
  }

  /**
   * HardSigmoid for a uniform per-channel affine `a * x + b` (a 1x1 depthwise convolution)
   * whose only reader clips it to [0, 1]; undefined for any other depthwise 1x1 convolution.
   */
  private hardSigmoid(
    layer: Layer,
    kernel: Float32Array,
    bias: Float32Array,
    input: Value,
    activation: string,
  ): Value | undefined {
    const alpha = kernel[0];
    const beta = bias[0];
    const clip = this.soleReader(layer, 'ReLU');
    const clipConfig = clip?.getConfig() as Config | undefined;
    if (
      alpha === undefined ||
      beta === undefined ||
      activation !== 'linear' ||
      !clip ||
      clipConfig?.maxValue !== 1 ||
      clipConfig.threshold ||
      clipConfig.negativeSlope ||
      !kernel.every((v) => v === alpha) ||
      !bias.every((v) => v === beta)
    ) {
      return undefined;
    }
    this.absorbed.add(clip);
    const value = this.emit('HardSigmoid', clip.name, [input.name], input.layout, {
      alpha: float(alpha),
      beta: float(beta),
    });
    const gate: Value = { ...value, hardSigmoidOf: { input: input.name, alpha, beta } };
    this.values.set(outputOf(clip).id, gate);
    return gate;
  }

  /** An unfolded batch norm (one that follows something other than a convolution). */
  private batchNorm(layer: Layer, config: Config, input: Value): Value {
    if (input.layout !== 'nchw') throw unsupported(layer, 'batch norm of a 2-D tensor');
    const { scale, shift } = batchNormAffine(layer);
    const channels = scale.length;
    const mul = this.constant(`${layer.name}_scale`, [channels, 1, 1], Float32Array.from(scale));
    const add = this.constant(`${layer.name}_shift`, [channels, 1, 1], Float32Array.from(shift));
    const scaled = this.emit('Mul', `${layer.name}_scaled`, [input.name, mul], 'nchw');
    return this.emit('Add', layer.name, [scaled.name, add], 'nchw');
  }

  private dense(layer: Layer, config: Config, input: Value): Value {
    if (input.layout !== 'flat') throw unsupported(layer, 'a dense layer over a 4-D tensor');
    const [kernel, bias] = layer.getWeights();
    if (!kernel) throw unsupported(layer, 'a dense layer without weights');
    const activation = String(config.activation);
    const inputs = [
      input.name,
      this.constant(`${layer.name}_weight`, kernel.shape, kernel.dataSync() as Float32Array),
    ];
    if (config.useBias && bias) {
      inputs.push(this.constant(`${layer.name}_bias`, bias.shape, bias.dataSync() as Float32Array));
    }
    const linear = activation === 'linear' ? layer.name : `${layer.name}_linear`;
    const gemm = this.emit('Gemm', linear, inputs, 'flat');
    return activation === 'linear' ? gemm : this.activation(layer, activation, gemm, layer.name);
  }

  private activation(layer: Layer, activation: string, input: Value, name: string): Value {
    switch (activation) {
      case 'linear':
        return input;
      case 'relu':
        return this.emit('Relu', name, [input.name], input.layout);
      case 'softmax':
        if (input.layout !== 'flat') throw unsupported(layer, 'softmax over a 4-D tensor');
        return this.emit('Softmax', name, [input.name], 'flat', { axis: -1 });
      default:
        throw unsupported(layer, `the activation '${activation}'`);
    }
  }

  /** Add or Multiply of any number of inputs; x * HardSigmoid(x) with h-swish's constants is HardSwish. */
  private elementwise(layer: Layer, inputs: Value[]): Value {
    const [first, second, ...rest] = inputs;
    if (!first || !second) throw unsupported(layer, 'fewer than two inputs');
    if (inputs.some((v) => v.layout !== first.layout)) {
      throw unsupported(layer, 'inputs of different ranks');
    }
    const multiply = layer.getClassName() === 'Multiply';
    if (multiply && rest.length === 0) {
      const [x, gate] =
        second.hardSigmoidOf?.input === first.name ? [first, second] : [second, first];
      const of = gate.hardSigmoidOf;
      if (of?.input === x.name && of.alpha === H_SWISH_ALPHA && of.beta === H_SWISH_BETA) {
        return this.emit('HardSwish', layer.name, [x.name], x.layout);
      }
    }
    const op = multiply ? 'Mul' : 'Add';
    let result = first;
    [second, ...rest].forEach((value, i) => {
      const name = i === rest.length ? layer.name : `${layer.name}_${i}`;
      result = this.emit(op, name, [result.name, value.name], first.layout);
    });
    return result;
  }

  /** The one layer reading `layer`'s output, if it is of `className` and not itself an output. */
  private soleReader(layer: Layer, className: string): Layer | undefined {
    if (this.keep.has(layer.name)) return undefined;
    const readers = this.consumers.get(outputOf(layer).id) ?? [];
    const [reader] = readers;
    return readers.length === 1 && reader?.getClassName() === className ? reader : undefined;
  }

  private value(tensor: SymbolicTensor): Value {
    const value = this.values.get(tensor.id);
    if (value) return value;
    throw new OnnxExportError(`tensor ${tensor.name} is read before it is computed`);
  }

  private only(input: Value | undefined, layer: Layer): Value {
    if (!input || inputsOf(layer).length !== 1) throw unsupported(layer, 'more than one input');
    return input;
  }

  private nchw(input: Value | undefined, layer: Layer): Value {
    const value = this.only(input, layer);
    if (value.layout !== 'nchw') throw unsupported(layer, 'a 2-D input');
    return value;
  }

  private emit(
    opType: string,
    output: string,
    inputs: string[],
    layout: Value['layout'],
    attributes?: Record<string, AttributeValue>,
  ): Value {
    this.nodes.push({ opType, name: output, inputs, outputs: [output], attributes });
    return { name: output, layout };
  }

  private constant(
    name: string,
    dims: readonly number[],
    data: Float32Array | BigInt64Array,
  ): string {
    this.initializers.push({ name, dims, data });
    return name;
  }

  private scalar(value: number): string {
    const name = `scalar_${value}`;
    if (!this.initializers.some((t) => t.name === name)) {
      this.constant(name, [], Float32Array.of(value));
    }
    return name;
  }

  /** Renames the value `from` (its producer, its readers) to `to`; returns `to`. */
  private rename(from: string, to: string): string {
    const swap = (names: readonly string[]): string[] => names.map((n) => (n === from ? to : n));
    for (const [id, value] of this.values) {
      if (value.name === from) this.values.set(id, { ...value, name: to });
    }
    this.nodes.forEach((node, i) => {
      this.nodes[i] = {
        ...node,
        name: node.name === from ? to : node.name,
        inputs: swap(node.inputs),
        outputs: swap(node.outputs),
      };
    });
    return to;
  }

  /** Drops nodes nothing reads (a HardSigmoid fused into HardSwish) and their initializers. */
  private removeUnusedNodes(outputs: readonly string[]): void {
    const needed = new Set(outputs);
    const kept: OnnxNode[] = [];
    for (const node of [...this.nodes].reverse()) {
      if (!node.outputs.some((o) => needed.has(o))) continue;
      kept.push(node);
      for (const input of node.inputs) needed.add(input);
    }
    this.nodes.splice(0, this.nodes.length, ...kept.reverse());
    const initializers = this.initializers.filter((t) => needed.has(t.name));
    this.initializers.splice(0, this.initializers.length, ...initializers);
  }
}

/** Per-channel `scale * x + shift` of an inference-mode batch norm, computed in float64. */
function batchNormAffine(layer: Layer): { scale: Float64Array; shift: Float64Array } {
  const config = layer.getConfig() as Config;
  // Channels last: the axis that folding and NCHW's per-channel constants both assume.
  if (config.axis !== -1 && config.axis !== 3)
    throw unsupported(layer, `axis ${String(config.axis)}`);
  if (config.center === false || config.scale === false) {
    throw unsupported(layer, 'batch norm without both center and scale');
  }
  const [gamma, beta, mean, variance] = layer.getWeights().map((w) => w.dataSync() as Float32Array);
  if (!gamma || !beta || !mean || !variance)
    throw unsupported(layer, 'batch norm without its four weights');
  const epsilon = Number(config.epsilon);
  const scale = Float64Array.from(gamma, (g, c) => g / Math.sqrt((variance[c] ?? 0) + epsilon));
  const shift = Float64Array.from(beta, (b, c) => b - (mean[c] ?? 0) * (scale[c] ?? 0));
  return { scale, shift };
}

/**
 * TensorFlow's 'same' padding of one spatial axis: the total that keeps ceil(size / stride)
 * outputs, with the odd pixel at the end (ONNX's SAME_UPPER), as explicit (begin, end).
 */
export function samePadding(size: number, kernel: number, stride: number): [number, number] {
  const outputs = Math.ceil(size / stride);
  const total = Math.max((outputs - 1) * stride + kernel - size, 0);
  const begin = Math.floor(total / 2);
  return [begin, total - begin];
}

function inputsOf(layer: Layer): SymbolicTensor[] {
  // An InputLayer's node lists its own output as its input.
  if (layer.getClassName() === 'InputLayer') return [];
  return layer.inboundNodes[0]?.inputTensors ?? [];
}

function outputOf(layer: Layer): SymbolicTensor {
  const output = layer.output;
  if (Array.isArray(output)) throw unsupported(layer, 'more than one output');
  return output;
}

function pair(value: unknown, layer: Layer): [number, number] {
  const [a, b] = Array.isArray(value) ? (value as number[]) : [value, value];
  if (typeof a !== 'number' || typeof b !== 'number')
    throw unsupported(layer, `the setting ${JSON.stringify(value)}`);
  return [a, b];
}

function unsupported(layer: Layer, what: string): OnnxExportError {
  return new OnnxExportError(`layer '${layer.name}': ${what} cannot be exported to ONNX`);
}
