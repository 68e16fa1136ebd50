/**
 * The inference engines that serve an extracted subnet, and the rule that a latency table only
 * describes serving with the engine (and version) it was measured with. No engine is loaded here.
 */

/** The engines, default first: ONNX Runtime on model.onnx, TensorFlow.js on model.json. */
export const ENGINES = ['onnxruntime', 'tfjs'] as const;
export type EngineName = (typeof ENGINES)[number];
export const DEFAULT_ENGINE: EngineName = 'onnxruntime';

/**
 * The onnxruntime-node version this release pins (package.json; a test keeps the two equal), so
 * the version its runtime image profiles and serves with, known without loading the engine.
 */
export const ONNX_RUNTIME_VERSION = '1.30.0';

/** An engine and its version: onnxruntime-node's, or TensorFlow's (the C library) for tfjs. */
export interface EngineFacts {
  readonly name: EngineName;
  readonly version: string;
}

/** Whether `value` names an engine. */
export function isEngine(value: unknown): value is EngineName {
  return (ENGINES as readonly unknown[]).includes(value);
}

/** `value` as an engine name; the error names `where` (a flag, a variable, a field). */
export function parseEngine(value: string, where: string): EngineName {
  if (isEngine(value)) return value;
  throw new RangeError(`${where} must be one of ${ENGINES.join(', ')}, got '${value}'`);
}

/** How an engine reads in messages: `onnxruntime 1.30.0`. */
export function describeEngine(engine: EngineFacts): string {
  return `${engine.name} ${engine.version}`;
}

/**
 * Why a table measured with `measured` does not describe serving with `serving`, or undefined
 * when it does (same engine and version). Latency differs several-fold between engines, and
 * between versions of one engine, so neither may be mixed.
 */
export function engineMismatch(
  measured: EngineFacts,
  serving: EngineFacts,
  where: string,
): string | undefined {
  if (measured.name === serving.name && measured.version === serving.version) return undefined;
  return `${where} was measured with ${describeEngine(measured)}, but the model is served with ${describeEngine(serving)}; profile again with the engine that serves`;
}
