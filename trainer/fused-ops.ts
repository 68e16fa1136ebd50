/**
 * TensorFlow's fused kernels for the hottest training ops, run through tfjs-node's backend: tfjs
 * composes batch norm and its gradient from about 30 element-wise kernels, TensorFlow does each in
 * one (FusedBatchNormV3 / FusedBatchNormGradV3). On the pure-JS backend these return undefined
 * and callers use tfjs's own ops.
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
}

function nodeBackend(tf: TensorFlow): NodeBackend | undefined {
  const backend = tf.backend() as unknown as Partial<NodeBackend>;
  return tf.getBackend() === 'tensorflow' && typeof backend.executeMultipleOutputs === 'function'
    ? (backend as NodeBackend)
    : undefined;
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
