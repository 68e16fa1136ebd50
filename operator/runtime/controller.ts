/**
 * A controller in controller-runtime's mould: workers take keys from a {@link WorkQueue} and
 * reconcile them, and the outcome decides whether and when a key comes back. Watching the API
 * server and adding keys is the informers' part; nothing here talks to Kubernetes.
 */
import { inspect } from 'node:util';

import { Registry } from 'prom-client';

import { type Clock, REAL_CLOCK } from './clock.js';
import { type ControllerMetrics, controllerMetrics } from './metrics.js';
import { WorkQueue } from './workqueue.js';

/**
 * What a reconcile asks for when it succeeds: nothing (the key returns on the next change), or
 * another look after `requeueAfterMs` (for state that changes without an event, like a Job's
 * progress). Failures are thrown, never returned.
 */
// eslint-disable-next-line @typescript-eslint/no-invalid-void-type -- so `async () => {}` fits
export type ReconcileResult = { readonly requeueAfterMs?: number } | void;

/**
 * Brings the object named by `key` to its desired state. `signal` aborts when the controller
 * stops: pass it to API calls so that stopping does not wait on them.
 */
export type Reconcile = (key: string, signal: AbortSignal) => Promise<ReconcileResult>;

/** The structured logger a controller writes to; serving's `Logger` is one. */
export interface OperatorLogger {
  debug(msg: string, fields?: Readonly<Record<string, unknown>>): void;
  info(msg: string, fields?: Readonly<Record<string, unknown>>): void;
  warn(msg: string, fields?: Readonly<Record<string, unknown>>): void;
  error(msg: string, fields?: Readonly<Record<string, unknown>>): void;
}

/**
 * An error that retrying cannot fix, such as an invalid spec: the controller logs and counts it
 * but does not requeue the key, which comes back only when the object changes. The reconciler
 * records the problem in the object's status itself. Found through `cause` chains too, so it can
 * be wrapped.
 */
export class TerminalError extends Error {
  override readonly name = 'TerminalError';
}

/** True if `error` or an error in its `cause` chain is a {@link TerminalError}. */
export function isTerminalError(error: unknown): boolean {
  // Bounded: a cause chain can be cyclic.
  for (let depth = 0; depth < 16 && error instanceof Error; depth++) {
    if (error instanceof TerminalError) return true;
    error = error.cause;
  }
  return false;
}

/** Settings of a {@link Controller}. */
export interface ControllerOptions {
  /** Names the controller in logs and the `controller` label of its metrics; also its queue's name. */
  readonly name: string;
  readonly reconcile: Reconcile;
  readonly logger: OperatorLogger;
  /** Where the controller and queue metrics go; a private registry when left out. */
  readonly registry?: Registry;
  /** Workers, hence keys reconciled at once; 1 by default, as in controller-runtime. */
  readonly maxConcurrentReconciles?: number;
  /** Longest {@link Controller.stop} waits for running reconciles; 30 s by default. */
  readonly stopTimeoutMs?: number;
  /** Backoff of failed keys, as in {@link WorkQueue}. */
  readonly baseDelayMs?: number;
  readonly maxDelayMs?: number;
  /** Defaults to {@link REAL_CLOCK}. */
  readonly clock?: Clock;
}

/** controller-runtime's graceful shutdown timeout. */
const DEFAULT_STOP_TIMEOUT_MS = 30_000;

/** Values of `controller_runtime_reconcile_total`'s `result` label that this controller sets. */
type ReconcileOutcome = 'success' | 'error' | 'requeue_after';
const OUTCOMES: readonly ReconcileOutcome[] = ['success', 'error', 'requeue_after'];

/**
 * Runs `maxConcurrentReconciles` workers over its {@link queue}. After each reconcile of a key:
 *
 * | outcome                          | the key                                    |
 * | -------------------------------- | ------------------------------------------ |
 * | resolves                         | backoff forgotten                          |
 * | resolves with `requeueAfterMs`   | backoff forgotten, added after that delay  |
 * | throws a {@link TerminalError}   | logged, backoff forgotten, not retried     |
 * | throws anything else             | logged, added after its backoff            |
 *
 * A key is never reconciled by two workers at once (the queue sees to that).
 */
export class Controller {
  readonly name: string;
  /** Where event handlers add the keys of changed objects. */
  readonly queue: WorkQueue;
  private readonly reconcile: Reconcile;
  private readonly logger: OperatorLogger;
  private readonly clock: Clock;
  private readonly concurrency: number;
  private readonly stopTimeoutMs: number;
  private readonly metrics: ControllerMetrics;
  private readonly labels: { readonly controller: string };
  private readonly abort = new AbortController();
  /** Keys being reconciled now, for the log of a stop that timed out. */
  private readonly running = new Set<string>();
  private workers: Promise<void>[] | undefined;
  private stopped: Promise<void> | undefined;

  constructor(options: ControllerOptions) {
    const concurrency = options.maxConcurrentReconciles ?? 1;
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new RangeError(
        `maxConcurrentReconciles must be a positive integer, not ${concurrency}`,
      );
    }
    const registry = options.registry ?? new Registry();
    this.name = options.name;
    this.reconcile = options.reconcile;
    this.logger = options.logger;
    this.clock = options.clock ?? REAL_CLOCK;
    this.concurrency = concurrency;
    this.stopTimeoutMs = options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
    this.queue = new WorkQueue({
      name: options.name,
      registry,
      clock: this.clock,
      ...(options.baseDelayMs === undefined ? {} : { baseDelayMs: options.baseDelayMs }),
      ...(options.maxDelayMs === undefined ? {} : { maxDelayMs: options.maxDelayMs }),
    });
    this.metrics = controllerMetrics(registry);
    this.labels = { controller: this.name };
    // Zero-valued series from the start, so that rate() and alerts see the first event.
    for (const result of OUTCOMES) this.metrics.reconcileTotal.inc({ ...this.labels, result }, 0);
    this.metrics.reconcileErrors.inc(this.labels, 0);
    this.metrics.terminalReconcileErrors.inc(this.labels, 0);
    this.metrics.maxConcurrentReconciles.set(this.labels, concurrency);
    this.metrics.activeWorkers.set(this.labels, 0);
  }

  /** Starts the workers; a controller starts once (and not after {@link stop}). */
  start(): void {
    if (this.workers !== undefined || this.stopped !== undefined) {
      throw new Error(`controller ${this.name} was already started or stopped`);
    }
    this.logger.info('Starting workers', { controller: this.name, workerCount: this.concurrency });
    this.workers = Array.from({ length: this.concurrency }, () => this.work());
  }

  /**
   * Shuts the queue down, aborts the reconciles' signal and waits for running reconciles to
   * settle, at most `stopTimeoutMs`: one that ignores the signal and never settles is left
   * behind (and logged) rather than blocking the process's shutdown. Idempotent.
   */
  stop(): Promise<void> {
    this.stopped ??= this.shutDown();
    return this.stopped;
  }

  private async shutDown(): Promise<void> {
    this.queue.shutDown();
    this.abort.abort(new Error(`controller ${this.name} is stopping`));
    if (this.workers === undefined) return;
    this.logger.info('Shutdown signal received, waiting for all workers to finish', {
      controller: this.name,
    });
    let timer: ReturnType<Clock['setTimeout']> | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = this.clock.setTimeout(() => {
        resolve(false);
      }, this.stopTimeoutMs);
    });
    const finished = await Promise.race([Promise.all(this.workers).then(() => true), timedOut]);
    if (timer !== undefined) this.clock.clearTimeout(timer);
    if (finished) {
      this.logger.info('All workers finished', { controller: this.name });
    } else {
      this.logger.warn('Stopped without waiting for reconciles that outlived the stop timeout', {
        controller: this.name,
        keys: [...this.running],
        stopTimeoutMs: this.stopTimeoutMs,
      });
    }
  }

  private async work(): Promise<void> {
    for (let key = await this.queue.get(); key !== undefined; key = await this.queue.get()) {
      await this.process(key);
    }
  }

  private async process(key: string): Promise<void> {
    this.running.add(key);
    this.metrics.activeWorkers.inc(this.labels);
    const startedAt = this.clock.now();
    try {
      await this.reconcileHandler(key);
    } finally {
      const seconds = Math.max(0, this.clock.now() - startedAt) / 1000;
      this.metrics.reconcileTime.observe(this.labels, seconds);
      this.metrics.activeWorkers.dec(this.labels);
      this.running.delete(key);
      this.queue.done(key);
    }
  }

  private async reconcileHandler(key: string): Promise<void> {
    const signal = this.abort.signal;
    let result: ReconcileResult;
    try {
      result = await this.reconcile(key, signal);
    } catch (error) {
      this.count('error');
      this.metrics.reconcileErrors.inc(this.labels);
      const fields = { controller: this.name, key, error: describe(error) };
      if (isTerminalError(error)) {
        this.metrics.terminalReconcileErrors.inc(this.labels);
        this.queue.forget(key);
        this.logger.error('Reconciler error', { ...fields, terminal: true });
      } else if (signal.aborted) {
        // Most likely the abort itself; the next leader or start reconciles the key anew.
        this.logger.info('Reconcile ended by stop', fields);
      } else {
        this.queue.addRateLimited(key);
        this.logger.error('Reconciler error', { ...fields, retries: this.queue.numRequeues(key) });
      }
      return;
    }
    const requeueAfterMs = result?.requeueAfterMs;
    this.queue.forget(key);
    if (requeueAfterMs !== undefined && requeueAfterMs > 0) {
      this.queue.addAfter(key, requeueAfterMs);
      this.count('requeue_after');
      this.logger.debug('Reconcile done, requeueing', {
        controller: this.name,
        key,
        requeueAfterMs,
      });
    } else {
      this.count('success');
      this.logger.debug('Reconcile successful', { controller: this.name, key });
    }
  }

  private count(result: ReconcileOutcome): void {
    this.metrics.reconcileTotal.inc({ ...this.labels, result });
  }
}

/** An error's message for logs, with its causes' messages (a stack is rarely what operators need). */
function describe(error: unknown): string {
  const messages: string[] = [];
  for (let depth = 0; depth < 16 && error !== undefined; depth++) {
    const message =
      error instanceof Error ? error.message : typeof error === 'string' ? error : inspect(error);
    messages.push(message);
    error = error instanceof Error ? error.cause : undefined;
  }
  return messages.join(': ');
}
