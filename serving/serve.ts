/**
 * The serving pod's life: listen at once (so liveness answers while the model loads), load and
 * warm up the model, then turn ready; on shutdown turn unready at once, go on accepting and
 * answering for the shutdown delay (while the pod leaves its Service's endpoints), then stop
 * listening, let accepted requests finish within the drain timeout, and close.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';

import type { TensorFlow } from '../trainer/backend.js';
import type { ServingConfig } from './config.js';
import type { Logger } from './logger.js';
import { ServingMetrics } from './metrics.js';
import { ServedModel } from './model.js';
import { createApp, ServingState } from './server.js';

/** A started server: its address, state, and how to stop it. */
export interface RunningServer {
  readonly port: number;
  readonly state: ServingState;
  /** Resolves when the model is loaded and warmed up; rejects when it cannot be. */
  readonly loaded: Promise<ServedModel>;
  /** Drains (bounded by the drain timeout) and closes; resolves with whether all requests finished. */
  shutdown(): Promise<boolean>;
}

/** How often shutdown looks whether the last request has finished. */
const DRAIN_POLL_MS = 10;

/**
 * Starts listening, then loads the model in the background; `tf` is needed only by the tfjs
 * engine.
 */
export async function startServing(
  config: ServingConfig,
  tf: TensorFlow | undefined,
  logger: Logger,
): Promise<RunningServer> {
  const metrics = new ServingMetrics(
    { model: config.modelName, version: config.modelVersion, target: config.target },
    config.latencyBudgetMs === undefined
      ? undefined
      : {
          budgetMs: config.latencyBudgetMs,
          tolerance: config.latencyTolerance,
          statistic: config.latencyStatistic,
        },
  );
  const state = new ServingState(config, metrics);
  const server = createServer(createApp({ config, state, metrics, logger }));
  await listen(server, config.host, config.port);
  const port = (server.address() as AddressInfo).port;
  logger.info('listening', { host: config.host, port, model: config.modelName });

  const loaded = loadModel(config, tf, logger).then((model) => {
    metrics.modelLoaded({
      subnet: model.description.subnet ?? '',
      resolution: model.signature.resolution,
      designSpace: model.description.designSpace ?? '',
    });
    state.modelLoaded(model);
    logger.info('ready', { model: config.modelName, subnet: model.description.subnet ?? null });
    return model;
  });

  let stopping: Promise<boolean> | undefined;
  const shutdown = (): Promise<boolean> => {
    stopping ??= drainAndClose(server, state, config, logger).then(async (drained) => {
      await (await loaded.catch(() => undefined))?.dispose();
      return drained;
    });
    return stopping;
  };
  return { port, state, loaded, shutdown };
}

async function loadModel(
  config: ServingConfig,
  tf: TensorFlow | undefined,
  logger: Logger,
): Promise<ServedModel> {
  const started = performance.now();
  const model = await ServedModel.load({
    engine: config.engine,
    modelDir: config.modelDir,
    maxBatchSize: config.maxRequestBatch,
    threads: config.threads,
    tf,
  });
  // Warm up every batch size a model call will commonly have: one request, one merged batch.
  const sizes = [1, ...(config.batching ? [config.batching.maxBatchSize] : [])];
  try {
    await model.warmUp(sizes);
  } catch (error) {
    await model.dispose();
    throw error;
  }
  logger.info('model loaded', {
    dir: config.modelDir,
    subnet: model.description.subnet ?? null,
    engine: model.description.engine,
    threads: config.threads ?? 'default',
    input: model.signature,
    warmedUpBatchSizes: sizes,
    loadMs: Math.round(performance.now() - started),
  });
  return model;
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

async function drainAndClose(
  server: Server,
  state: ServingState,
  config: Pick<ServingConfig, 'shutdownDelayMs' | 'drainTimeoutMs'>,
  logger: Logger,
): Promise<boolean> {
  state.startDraining();
  const timeoutMs = config.drainTimeoutMs;
  // A server that never had a model was never in a Service's endpoints: nothing to wait for.
  if (config.shutdownDelayMs > 0 && state.hasModel) {
    // Unready, and every response asks for a new connection, but still listening: requests that
    // kube-proxy routes here until the endpoints update are answered, not refused.
    logger.info('shutdown delay: still accepting while unready', {
      delayMs: config.shutdownDelayMs,
    });
    await delay(config.shutdownDelayMs);
  }
  logger.info('draining', { inFlight: state.inFlight, timeoutMs });
  const closed = new Promise<void>((resolve) => {
    server.close(() => {
      resolve();
    });
  });
  server.closeIdleConnections();
  const deadline = performance.now() + timeoutMs;
  while (state.inFlight > 0 && performance.now() < deadline) await delay(DRAIN_POLL_MS);
  const drained = state.inFlight === 0;
  if (drained) await state.drained();
  else logger.warn('drain timeout: closing with requests in flight', { inFlight: state.inFlight });
  server.closeAllConnections();
  await closed;
  logger.info('stopped', { drained });
  return drained;
}
