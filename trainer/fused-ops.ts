/**
 * TensorFlow's fused kernels for the hottest training ops, run through tfjs-node's backend:
 *
 * - Batch norm: tfjs composes it and its gradient from about 30 element-wise kernels, TensorFlow
 *   does each in one (FusedBatchNormV3 / FusedBatchNormGradV3).
 * - ReLU and ReLU6 gradients: TensorFlow's ReluGrad / Relu6Grad, registered in place of tfjs's
 *   (see {@link installNativeActivationGradients}).
 *
 * On the pure-JS backend the ops return undefined and callers use tfjs's own ops; the registered
 * gradients fall back to tfjs's.
 */
import type * as tfjs from '@tensorflow/tfjs';

import type { TensorFlow } from './backend.js';

interface OpAttr {
  readonly name: string;
  readonly type: number;
  readonly value: unknown;
}

/** The parts of tfjs-node's backend used here. */
interface NodeBackend {
  readonly binding: {
    readonly TF_ATTR_FLOAT: number;
    readonly TF_ATTR_BOOL: number;
    readonly TF_ATTR_STRING: number;
    readonly TF_ATTR_TYPE: number;
    readonly TF_FLOAT: number;
  };
  executeMultipleOutputs(
    name: string,
    attrs: readonly OpAttr[],
    inputs: readonly tfjs.Tensor[],
    outputs: number,
  ): tfjs.Tensor[];
  executeSingleOutput(
    name: string,
    attrs: readonly OpAttr[],
    inputs: readonly tfjs.Tensor[],
  ): tfjs.Tensor;
}

function nodeBackend(tf: TensorFlow): NodeBackend | undefined {
  const backend = tf.backend() as unknown as Partial<NodeBackend>;
  return tf.getBackend() === 'tensorflow' &&
    typeof backend.executeMultipleOutputs === 'function' &&
    typeof backend.executeSingleOutput === 'function'
    ? (backend as NodeBackend)
    : undefined;
}

/** `dy` where `features` (the activation's input) is in its linear range: ReluGrad or Relu6Grad. */
function activationGradient(
  backend: NodeBackend,
  op: 'ReluGrad' | 'Relu6Grad',
  dy: tfjs.Tensor,
  features: tfjs.Tensor,
): tfjs.Tensor {
  const { binding } = backend;
  return backend.executeSingleOutput(
    op,
    [{ name: 'T', type: binding.TF_ATTR_TYPE, value: binding.TF_FLOAT }],
    [dy, features],
  );
}

/** The gradient configs this module registered, so that installing twice is a no-op. */
const nativeGradients = new WeakSet<tfjs.GradConfig>();

/**
 * Registers TensorFlow's ReluGrad and Relu6Grad as the gradients of tfjs's Relu and Relu6, once
 * per process; returns whether the native backend is active (otherwise nothing is registered).
 * {@link loadTensorFlow} calls it when it loads native TensorFlow.
 *
 * Why: tfjs computes these gradients as `dy * step(x)` (ReLU6: `dy * (x <= 6) * step(x)`), and
 * tfjs-node runs `Step` as IsNan, Greater, Fill and two Selects plus a ones() array built in
 * JavaScript and copied into TensorFlow on every call. With 68 ReLU/ReLU6 per step of the `small`
 * supernet (h-swish and h-sigmoid included) that was about a quarter of a training step and most of
 * its garbage (docs/benchmarks.md, "Training-step throughput"). TensorFlow's ops are one kernel
 * each, the ones Keras's graph uses.
 *
 * tfjs keeps one gradient registry for all backends, so the registered gradients still run tfjs's
 * original ones whenever another backend (the pure-JS `cpu`) is active or the input is not float32.
 *
 * One difference at a kink: at an input of exactly 6, TensorFlow's Relu6Grad passes 0 (its mask is
 * 0 < x < 6, as in Keras) where tfjs's passes 1 (0 < x <= 6). Both are valid subgradients, and it
 * does occur in training (h-swish's relu6(x + 3) is exactly 6 whenever x + 3 rounds to 6), so runs
 * are not bit-identical to runs with tfjs's gradient; tests must not depend on it. At exactly 0
 * both pass 0.
 */
export function installNativeActivationGradients(tf: TensorFlow): boolean {
  if (!nodeBackend(tf)) return false;
  const kernels = [
    ['Relu', 'ReluGrad'],
    ['Relu6', 'Relu6Grad'],
  ] as const;
  for (const [kernelName, op] of kernels) {
    const previous = tf.getGradient(kernelName) as tfjs.GradConfig | undefined;
    if (previous && nativeGradients.has(previous)) continue;
    const config: tfjs.GradConfig = {
      kernelName,
      inputsToSave: ['x'],
      gradFunc: (dy, saved, attrs) => {
        const [x] = saved;
        const backend = nodeBackend(tf);
        if (backend && x?.dtype === 'float32' && !Array.isArray(dy) && dy.dtype === 'float32')
          return { x: () => activationGradient(backend, op, dy, x) };
        if (!previous) throw new Error(`tfjs has no gradient for ${kernelName} to fall back to`);
        return previous.gradFunc(dy, saved, attrs);
      },
    };
    nativeGradients.add(config);
    tf.registerGradient(config);
  }
  return true;
}

/** Batch statistics of a fused batch norm, for the caller's moving averages. */
export interface BatchStatistics {
  readonly mean: tfjs.Tensor1D;
  /** Bessel-corrected, as moving averages keep it. */
  readonly variance: tfjs.Tensor1D;
}

/**
 * Training-mode batch norm of NHWC `x` over batch statistics with TensorFlow's fused kernels, and
 * its gradient for x, gamma and beta. `onStatistics` receives the batch mean and (unbiased)
 * variance; the caller owns and must dispose them. Returns undefined without native TensorFlow.
 */
export function fusedBatchNormTraining(
  tf: TensorFlow,
  x: tfjs.Tensor4D,
  gamma: tfjs.Tensor1D,
  beta: tfjs.Tensor1D,
  epsilon: number,
  onStatistics: (statistics: BatchStatistics) => void,
): tfjs.Tensor4D | undefined {
  const backend = nodeBackend(tf);
  if (!backend) return undefined;
  const { binding } = backend;
  const attrs = (training: boolean): OpAttr[] => [
    { name: 'T', type: binding.TF_ATTR_TYPE, value: binding.TF_FLOAT },
    { name: 'U', type: binding.TF_ATTR_TYPE, value: binding.TF_FLOAT },
    { name: 'epsilon', type: binding.TF_ATTR_FLOAT, value: epsilon },
    { name: 'data_format', type: binding.TF_ATTR_STRING, value: 'NHWC' },
    { name: 'is_training', type: binding.TF_ATTR_BOOL, value: training },
  ];
  const op = tf.customGrad((...args: (tfjs.Tensor | ((tensors: tfjs.Tensor[]) => void))[]) => {
    const [input, scale, offset, save] = args as [
      tfjs.Tensor4D,
      tfjs.Tensor1D,
      tfjs.Tensor1D,
      (tensors: tfjs.Tensor[]) => void,
    ];
    const empty = tf.tensor1d([]);
    const [y, mean, variance, reserve1, reserve2, reserve3] = backend.executeMultipleOutputs(
      'FusedBatchNormV3',
      [...attrs(true), { name: 'exponential_avg_factor', type: binding.TF_ATTR_FLOAT, value: 1 }],
      [input, scale, offset, empty, empty],
      6,
    ) as [tfjs.Tensor4D, tfjs.Tensor1D, tfjs.Tensor1D, tfjs.Tensor, tfjs.Tensor, tfjs.Tensor];
    empty.dispose();
    onStatistics({ mean: tf.keep(mean), variance: tf.keep(variance) });
    save([input, scale, reserve1, reserve2, reserve3]);
    return {
      value: y,
      gradFunc: (dy: tfjs.Tensor, saved: tfjs.Tensor[]) => {
        const [savedX, savedScale, r1, r2, r3] = saved as [
          tfjs.Tensor,
          tfjs.Tensor,
          tfjs.Tensor,
          tfjs.Tensor,
          tfjs.Tensor,
        ];
        const [dx, dScale, dOffset, extra1, extra2] = backend.executeMultipleOutputs(
          'FusedBatchNormGradV3',
          attrs(true),
          [dy, savedX, savedScale, r1, r2, r3],
          5,
        ) as [tfjs.Tensor, tfjs.Tensor, tfjs.Tensor, tfjs.Tensor, tfjs.Tensor];
        tf.dispose([extra1, extra2]);
        return [dx, dScale, dOffset];
      },
    };
  });
  return op(x, gamma, beta);
}
