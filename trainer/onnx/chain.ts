/**
 * One ONNX graph from parts converted on their own, each part's output feeding the next part's
 * input: the same nodes and weights as converting the whole network at once, without building
 * the whole network in TensorFlow.js first. Profiling builds the 243 compound subnets of a
 * resolution from 17 parts (the stem, the 3 choices of each of 5 units, the head) this way.
 */
import type { OnnxGraph } from './export.js';
import type { OnnxNode } from './schema.js';

/** Thrown when two neighbouring parts do not fit (the message names both). */
export class OnnxChainError extends Error {
  override readonly name = 'OnnxChainError';
}

/**
 * Joins `parts` (each with one output, except the last) into one graph. The first part's input
 * and the last part's outputs keep their names; every other name gets the part's index as a
 * prefix, so names never collide.
 */
export function chainOnnxGraphs(name: string, parts: readonly OnnxGraph[]): OnnxGraph {
  const [first] = parts;
  const last = parts.at(-1);
  if (!first || !last) throw new OnnxChainError('nothing to chain');
  const nodes: OnnxNode[] = [];
  const initializers: OnnxGraph['initializers'][number][] = [];
  let previous: OnnxGraph | undefined;
  let previousOutput = first.input.name;
  parts.forEach((part, index) => {
    const [output, ...more] = part.outputs;
    if (!output || (part !== last && more.length > 0)) {
      throw new OnnxChainError(`part ${index} (${part.name}) must have exactly one output`);
    }
    if (previous) checkFits(previous, part, index);
    const keep = new Map<string, string>([[part.input.name, previousOutput]]);
    if (part === last) for (const o of part.outputs) keep.set(o.name, o.name);
    const rename = (value: string): string => keep.get(value) ?? `p${index}/${value}`;
    for (const node of part.nodes) {
      nodes.push({
        ...node,
        name: rename(node.name),
        inputs: node.inputs.map(rename),
        outputs: node.outputs.map(rename),
      });
    }
    for (const tensor of part.initializers)
      initializers.push({ ...tensor, name: rename(tensor.name) });
    previous = part;
    previousOutput = rename(output.name);
  });
  return { name, nodes, initializers, input: first.input, outputs: last.outputs };
}

/** The output of `before` must have the shape of the input of `after` (batch aside). */
function checkFits(before: OnnxGraph, after: OnnxGraph, index: number): void {
  const produced = before.outputs[0]?.shape.slice(1) ?? [];
  const expected = after.input.shape.slice(1);
  if (JSON.stringify(produced) !== JSON.stringify(expected)) {
    throw new OnnxChainError(
      `part ${index} (${after.name}) takes ${JSON.stringify(expected)} but part ${index - 1} (${before.name}) gives ${JSON.stringify(produced)}`,
    );
  }
}
