import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Registry } from 'prom-client';

import { Logger } from '../../serving/logger.js';
import { FakeClock } from './clock.js';
import {
  Controller,
  type ControllerOptions,
  isTerminalError,
  type OperatorLogger,
  type Reconcile,
  TerminalError,
} from './controller.js';
import { createOperatorRegistry } from './metrics.js';

/** Lets every pending promise continuation run. */
const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

interface LogRecord {
  level: string;
  msg: string;
  fields: Readonly<Record<string, unknown>>;
}

class RecordingLogger implements OperatorLogger {
  readonly records: LogRecord[] = [];
  debug(msg: string, fields: Readonly<Record<string, unknown>> = {}): void {
    this.records.push({ level: 'debug', msg, fields });
  }
  info(msg: string, fields: Readonly<Record<string, unknown>> = {}): void {
    this.records.push({ level: 'info', msg, fields });
  }
  warn(msg: string, fields: Readonly<Record<string, unknown>> = {}): void {
    this.records.push({ level: 'warn', msg, fields });
  }
  error(msg: string, fields: Readonly<Record<string, unknown>> = {}): void {
    this.records.push({ level: 'error', msg, fields });
  }
  at(level: string): LogRecord[] {
    return this.records.filter((r) => r.level === level);
  }
}

/** A promise with its resolve function, for reconciles that the test finishes. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** The value of one series (see workqueue.test.ts); undefined when there is none. */
async function metric(
  registry: Registry,
  name: string,
  labels: Record<string, string> = {},
): Promise<number | undefined> {
  for (const family of await registry.getMetricsAsJSON()) {
    for (const value of family.values as { metricName?: string; value: number; labels: any }[]) {
      if ((value.metricName ?? family.name) !== name) continue;
      if (Object.entries(labels).every(([k, v]) => value.labels[k] === v)) return value.value;
    }
  }
  return undefined;
}

/** controller_runtime_reconcile_total of controller `test` by result. */
async function totals(registry: Registry): Promise<Record<string, number | undefined>> {
  const results = ['success', 'error', 'requeue_after'];
  const values = await Promise.all(
    results.map((result) =>
      metric(registry, 'controller_runtime_reconcile_total', { controller: 'test', result }),
    ),
  );
  return Object.fromEntries(results.map((result, i) => [result, values[i]]));
}

function setup(reconcile: Reconcile, options: Partial<ControllerOptions> = {}) {
  const clock = new FakeClock();
  const registry = new Registry();
  const logger = new RecordingLogger();
  const controller = new Controller({
    name: 'test',
    reconcile,
    logger,
    clock,
    registry,
    ...options,
  });
  return { clock, registry, logger, controller };
}

describe('Controller', () => {
  it('reconciles an added key once and forgets it on success', async () => {
    const calls: string[] = [];
    const { controller, registry, clock } = setup(async (key) => {
      calls.push(key);
      clock.advance(250);
      await Promise.resolve();
    });
    controller.start();
    controller.queue.add('ns/a');
    await flush();
    assert.deepEqual(calls, ['ns/a']);
    assert.deepEqual(await totals(registry), { success: 1, error: 0, requeue_after: 0 });
    const time = { controller: 'test' };
    assert.equal(
      await metric(registry, 'controller_runtime_reconcile_time_seconds_count', time),
      1,
    );
    assert.equal(
      await metric(registry, 'controller_runtime_reconcile_time_seconds_sum', time),
      0.25,
    );
    await clock.advanceAsync(2_000_000);
    assert.deepEqual(calls, ['ns/a'], 'a successful key came back');
    await controller.stop();
  });

  it('requeues after the asked delay without counting a failure', async () => {
    const calls: number[] = [];
    const { controller, registry, clock } = setup(() => {
      calls.push(clock.now());
      return Promise.resolve(calls.length === 1 ? { requeueAfterMs: 60_000 } : undefined);
    });
    controller.start();
    controller.queue.add('a');
    await flush();
    assert.equal(controller.queue.numRequeues('a'), 0);
    await clock.advanceAsync(59_999);
    assert.deepEqual(calls, [0]);
    await clock.advanceAsync(1);
    assert.deepEqual(calls, [0, 60_000]);
    assert.deepEqual(await totals(registry), { success: 1, error: 0, requeue_after: 1 });
    assert.equal(await metric(registry, 'workqueue_retries_total', { name: 'test' }), 1);
    await controller.stop();
  });

  it('retries a failing key with growing backoff until it succeeds', async () => {
    const calls: number[] = [];
    const { controller, registry, clock, logger } = setup(() => {
      calls.push(clock.now());
      return calls.length <= 3
        ? Promise.reject(new Error('conflict', { cause: new Error('etcd') }))
        : Promise.resolve();
    });
    controller.start();
    controller.queue.add('a');
    await clock.advanceAsync(1000);
    // 5, 10 and 20 ms after each failure.
    assert.deepEqual(calls, [0, 5, 15, 35]);
    assert.deepEqual(await totals(registry), { success: 1, error: 3, requeue_after: 0 });
    const errors = { controller: 'test' };
    assert.equal(await metric(registry, 'controller_runtime_reconcile_errors_total', errors), 3);
    assert.equal(
      await metric(registry, 'controller_runtime_terminal_reconcile_errors_total', errors),
      0,
    );
    assert.equal(controller.queue.numRequeues('a'), 0, 'success did not forget the backoff');
    assert.deepEqual(
      logger.at('error').map((r) => [r.msg, r.fields.key, r.fields.error, r.fields.retries]),
      [1, 2, 3].map((n) => ['Reconciler error', 'a', 'conflict: etcd', n]),
    );
    await controller.stop();
  });

  it('does not retry a terminal error, even a wrapped one, and forgets the backoff', async () => {
    const calls: string[] = [];
    const { controller, registry, clock, logger } = setup((key) => {
      calls.push(key);
      if (key === 'plain') return Promise.reject(new Error('flaky'));
      const invalid = new TerminalError('spec.targets[0].latencyBudgetMs must be positive');
      return Promise.reject(
        key === 'wrapped' ? new Error('reconcile', { cause: invalid }) : invalid,
      );
    });
    controller.queue.addRateLimited('invalid');
    controller.start();
    await clock.advanceAsync(5);
    controller.queue.add('wrapped');
    await flush();
    await clock.advanceAsync(2_000_000);
    assert.deepEqual(calls, ['invalid', 'wrapped']);
    assert.equal(controller.queue.numRequeues('invalid'), 0);
    assert.deepEqual(await totals(registry), { success: 0, error: 2, requeue_after: 0 });
    const labels = { controller: 'test' };
    assert.equal(await metric(registry, 'controller_runtime_reconcile_errors_total', labels), 2);
    assert.equal(
      await metric(registry, 'controller_runtime_terminal_reconcile_errors_total', labels),
      2,
    );
    assert.deepEqual(
      logger.at('error').map((r) => [r.fields.key, r.fields.terminal]),
      [
        ['invalid', true],
        ['wrapped', true],
      ],
    );
    // The same controller still retries ordinary errors (the test above would pass if nothing did).
    controller.queue.add('plain');
    await clock.advanceAsync(5);
    assert.deepEqual(calls.slice(2), ['plain', 'plain']);
    await controller.stop();
  });

  it('runs up to maxConcurrentReconciles keys at once', async () => {
    const gates = new Map<string, { promise: Promise<void>; resolve: () => void }>();
    const { controller, registry } = setup(
      (key) => {
        const gate = deferred();
        gates.set(key, gate);
        return gate.promise;
      },
      { maxConcurrentReconciles: 2 },
    );
    const labels = { controller: 'test' };
    assert.equal(await metric(registry, 'controller_runtime_max_concurrent_reconciles', labels), 2);
    controller.start();
    for (const key of ['a', 'b', 'c']) controller.queue.add(key);
    await flush();
    assert.deepEqual([...gates.keys()], ['a', 'b']);
    assert.equal(await metric(registry, 'controller_runtime_active_workers', labels), 2);
    gates.get('a')?.resolve();
    await flush();
    assert.deepEqual([...gates.keys()], ['a', 'b', 'c']);
    gates.get('b')?.resolve();
    gates.get('c')?.resolve();
    await flush();
    assert.equal(await metric(registry, 'controller_runtime_active_workers', labels), 0);
    await controller.stop();
  });

  it('stop waits for running reconciles and aborts their signal', async () => {
    const gate = deferred();
    let signal: AbortSignal | undefined;
    const calls: string[] = [];
    const { controller } = setup(async (key, s) => {
      calls.push(key);
      signal = s;
      await gate.promise;
    });
    controller.start();
    controller.queue.add('a');
    controller.queue.add('b');
    await flush();
    let stopped = false;
    const stopping = controller.stop().then(() => (stopped = true));
    await flush();
    assert.equal(stopped, false, 'stop did not wait for the running reconcile');
    assert.equal(signal?.aborted, true);
    gate.resolve();
    await stopping;
    assert.deepEqual(calls, ['a'], 'a worker took another key after stop');
    assert.throws(() => {
      controller.start();
    }, /already started or stopped/);
  });

  it('stop gives up on a reconcile that never settles after stopTimeoutMs', async () => {
    const { controller, clock, logger } = setup(() => new Promise<void>(() => undefined), {
      stopTimeoutMs: 10_000,
    });
    controller.start();
    controller.queue.add('stuck');
    await flush();
    let stopped = false;
    const stopping = controller.stop().then(() => (stopped = true));
    await clock.advanceAsync(9_999);
    assert.equal(stopped, false);
    await clock.advanceAsync(1);
    await stopping;
    assert.deepEqual(
      logger.at('warn').map((r) => r.fields.keys),
      [['stuck']],
    );
  });

  it("logs through serving's JSON Logger", async () => {
    const lines: string[] = [];
    const logger = new Logger('info', (line) => lines.push(line));
    const clock = new FakeClock();
    const controller = new Controller({
      name: 'test',
      reconcile: () => Promise.reject(new TerminalError('bad spec')),
      logger,
      clock,
    });
    controller.start();
    controller.queue.add('ns/a');
    await flush();
    await controller.stop();
    const records = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.deepEqual(
      records
        .filter((r) => r.level === 'error')
        .map((r) => [r.msg, r.controller, r.key, r.error, r.terminal]),
      [['Reconciler error', 'test', 'ns/a', 'bad spec', true]],
    );
  });

  it('rejects a worker count that is not a positive integer', () => {
    for (const n of [0, -1, 1.5, NaN]) {
      assert.throws(
        () => setup(() => Promise.resolve(), { maxConcurrentReconciles: n }),
        RangeError,
      );
    }
  });

  it('shares an operator registry with other controllers', async () => {
    const registry = createOperatorRegistry();
    const logger = new RecordingLogger();
    const reconcile = () => Promise.resolve();
    new Controller({ name: 'trainings', reconcile, logger, registry });
    new Controller({ name: 'targets', reconcile, logger, registry, maxConcurrentReconciles: 4 });
    const gauge = 'controller_runtime_max_concurrent_reconciles';
    assert.equal(await metric(registry, gauge, { controller: 'trainings' }), 1);
    assert.equal(await metric(registry, gauge, { controller: 'targets' }), 4);
    assert.equal(await metric(registry, 'workqueue_depth', { name: 'targets' }), 0);
    assert.notEqual(await metric(registry, 'process_cpu_user_seconds_total'), undefined);
  });
});

describe('isTerminalError', () => {
  it('finds a TerminalError through causes, and only there', () => {
    const terminal = new TerminalError('invalid');
    assert.ok(isTerminalError(terminal));
    assert.ok(isTerminalError(new Error('a', { cause: new Error('b', { cause: terminal }) })));
    assert.ok(!isTerminalError(new Error('a', { cause: new Error('b') })));
    assert.ok(!isTerminalError('invalid'));
    const cyclic = new Error('cyclic');
    cyclic.cause = cyclic;
    assert.ok(!isTerminalError(cyclic));
    assert.equal(terminal.name, 'TerminalError');
  });
});
