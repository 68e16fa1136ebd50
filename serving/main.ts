#!/usr/bin/env node
/**
 * `compofa-serve`: the serving pod's process. Flags or environment variables configure it
 * (`--help` lists them); it exits 2 on a bad setting, 1 when the model cannot be loaded, and 0
 * after a SIGTERM or SIGINT once in-flight requests have drained.
 */
import { loadTensorFlow, setTensorFlowThreads, type TensorFlow } from '../trainer/backend.js';
import { ConfigError, parseConfig, usage } from './config.js';
import { Logger } from './logger.js';
import { startServing } from './serve.js';

async function main(args: readonly string[]): Promise<number | undefined> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${usage()}\n`);
    return 0;
  }
  let config;
  try {
    config = parseConfig(args, process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    new Logger('error').error('invalid configuration', { error: error.message });
    return 2;
  }
  const logger = new Logger(config.logLevel);
  // ONNX Runtime needs no TensorFlow: loading it would cost start-up time and memory.
  let tf: TensorFlow | undefined;
  if (config.engine === 'tfjs') {
    if (config.threads !== undefined) setTensorFlowThreads(config.threads);
    ({ tf } = await loadTensorFlow({
      purpose: 'inference',
      log: ({ msg, level, ...fields }) => {
        logger.log(level === 'warn' ? 'warn' : 'info', String(msg), fields);
      },
    }));
  }
  const running = await startServing(config, tf, logger);
  const stop = (signal: NodeJS.Signals): void => {
    logger.info('shutdown requested', { signal });
    void running.shutdown().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  running.loaded.catch((error: unknown) => {
    logger.error('model could not be loaded', {
      error: error instanceof Error ? error.message : String(error),
    });
    void running.shutdown().then(() => process.exit(1));
  });
  return undefined;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (error: unknown) => {
    new Logger('error').error('serving failed', {
      error: error instanceof Error ? (error.stack ?? error.message) : String(error),
    });
    process.exitCode = 1;
  },
);
