import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ConfigError, parseConfig, usage } from './config.js';

describe('serving configuration', () => {
  it('takes defaults, with micro-batching off', () => {
    const config = parseConfig(['--model-dir', '/models/a'], {});
    assert.equal(config.modelDir, '/models/a');
    assert.equal(config.modelName, 'compofa');
    assert.equal(config.modelVersion, '1');
    assert.equal(config.port, 8080);
    assert.equal(config.batching, undefined);
    assert.equal(config.latencyBudgetMs, undefined);
    assert.equal(config.maxBodyBytes, 16 * 1024 * 1024);
    assert.equal(config.drainTimeoutMs, 30_000);
    assert.equal(config.latencyTolerance, 0.1);
    assert.equal(config.latencyStatistic, 'p95');
    assert.equal(config.threads, undefined);
    assert.equal(parseConfig(['--model-dir', 'm', '--threads', '1'], {}).threads, 1);
  });

  it('reads the environment when a flag is absent, and a flag wins over it', () => {
    const env = {
      COMPOFA_MODEL_DIR: '/env/model',
      COMPOFA_PORT: '9000',
      COMPOFA_TARGET: 'edge-arm',
      COMPOFA_LATENCY_BUDGET_MS: '7.5',
      COMPOFA_LATENCY_STATISTIC: 'median',
      COMPOFA_BATCHING: 'true',
      COMPOFA_BATCH_MAX_SIZE: '16',
    };
    const config = parseConfig(['--port', '9001'], env);
    assert.equal(config.modelDir, '/env/model');
    assert.equal(config.port, 9001);
    assert.equal(config.target, 'edge-arm');
    assert.equal(config.latencyBudgetMs, 7.5);
    assert.equal(config.latencyStatistic, 'median');
    assert.deepEqual(config.batching, { maxBatchSize: 16, maxQueueDelayMs: 2 });
  });

  it('turns batching on with the bare flag', () => {
    const config = parseConfig(['--model-dir', 'm', '--batching', '--batch-max-delay-ms', '5'], {});
    assert.deepEqual(config.batching, { maxBatchSize: 32, maxQueueDelayMs: 5 });
  });

  const rejected: [string, string[], Record<string, string>, RegExp][] = [
    ['a missing model folder', [], {}, /--model-dir \(COMPOFA_MODEL_DIR\) is required/],
    [
      'a port out of range',
      ['--model-dir', 'm', '--port', '70000'],
      {},
      /--port \(COMPOFA_PORT\) must be an integer in \[0, 65535\], got '70000'/,
    ],
    [
      'a budget that is not positive',
      ['--model-dir', 'm'],
      { COMPOFA_LATENCY_BUDGET_MS: '0' },
      /--latency-budget-ms \(COMPOFA_LATENCY_BUDGET_MS\) must be a number > 0, got '0'/,
    ],
    [
      'an unknown latency statistic',
      ['--model-dir', 'm', '--latency-statistic', 'p99'],
      {},
      /--latency-statistic \(COMPOFA_LATENCY_STATISTIC\) must be one of median, p95, got 'p99'/,
    ],
    [
      'a statistic named like an object property',
      ['--model-dir', 'm'],
      { COMPOFA_LATENCY_STATISTIC: 'toString' },
      /must be one of median, p95, got 'toString'/,
    ],
    [
      'a non-boolean batching switch',
      ['--model-dir', 'm'],
      { COMPOFA_BATCHING: 'sometimes' },
      /--batching \(COMPOFA_BATCHING\) must be true or false, got 'sometimes'/,
    ],
    [
      'a model name with a slash',
      ['--model-dir', 'm', '--model-name', 'a/b'],
      {},
      /--model-name \(COMPOFA_MODEL_NAME\) must be letters/,
    ],
    [
      'an unknown log level',
      ['--model-dir', 'm', '--log-level', 'loud'],
      {},
      /--log-level \(COMPOFA_LOG_LEVEL\) must be one of debug, info, warn, error/,
    ],
    ['an unknown flag', ['--model-dir', 'm', '--bogus', 'x'], {}, /Unknown option '--bogus'/],
    [
      'a fractional batch limit',
      ['--model-dir', 'm', '--max-request-batch', '2.5'],
      {},
      /--max-request-batch \(COMPOFA_MAX_REQUEST_BATCH\) must be an integer in \[1, 4096\]/,
    ],
  ];
  for (const [what, args, env, message] of rejected) {
    it(`rejects ${what}`, () => {
      assert.throws(
        () => parseConfig(args, env),
        (error: unknown) => error instanceof ConfigError && message.test(error.message),
      );
    });
  }

  it('documents every flag with its variable', () => {
    const text = usage();
    for (const flag of [
      '--model-dir',
      '--batching',
      '--drain-timeout-ms',
      'COMPOFA_MAX_BODY_BYTES',
    ]) {
      assert.ok(text.includes(flag), `usage lacks ${flag}`);
    }
  });
});
