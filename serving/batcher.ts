/**
 * Dynamic micro-batching: concurrent requests are merged into one model call, which costs little
 * more than a call for one of them, so throughput grows with load while a lone request waits at
 * most `maxQueueDelayMs`.
 */
import { unavailable } from './http-error.js';
import type { ImageBatch } from './protocol.js';

/** The timer functions the batcher uses; injectable so tests can run on a fake clock. */
export interface BatcherTimers {
  /** Milliseconds on a monotonic clock. */
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Settings of a {@link MicroBatcher}. */
export interface MicroBatcherOptions {
  /** Most rows in one model call; a single request with more rows is run alone. */
  maxBatchSize: number;
  /** Longest time the oldest queued request waits for others before its batch is run. */
  maxQueueDelayMs: number;
  /**
   * Most rows waiting for the model (not counting the batch being run): a request that would
   * exceed it is refused with 503, except that an empty queue takes any request.
   */
  maxQueuedRows: number;
  /** Values per input row (R * R * C). */
  rowSize: number;
  /** Values per output row (the number of classes). */
  outputRowSize: number;
  /** Runs the model on `batch` rows; resolves to `batch * outputRowSize` values. */
  run: (data: Float32Array, batch: number) => Promise<Float32Array>;
  /** Called with the rows of every model call as it starts (a batch-size histogram). */
  onBatch?: (size: number) => void;
  /** Defaults to `performance.now` and the global timers. */
  timers?: BatcherTimers;
}

interface Pending {
  readonly rows: number;
  readonly data: Float32Array;
  readonly enqueuedAt: number;
  readonly resolve: (output: Float32Array) => void;
  readonly reject: (error: unknown) => void;
}

const REAL_TIMERS: BatcherTimers = {
  now: () => performance.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => {
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};

/**
 * Queues requests and runs them in merged batches, one model call at a time.
 *
 * - Requests are merged in arrival order, whole: a request is never split across model calls,
 *   and a batch stops before the first request that would take it past `maxBatchSize` (a request
 *   larger than `maxBatchSize` is run alone).
 * - When the model is free, a batch is run as soon as it is full (the queue holds at least
 *   `maxBatchSize` rows), or from a timer once its oldest request has waited `maxQueueDelayMs`
 *   (so requests read in the same turn of the event loop join it). While the model runs, the
 *   next batch fills up.
 * - Each caller gets its own rows of the output (a copy); an error from `run` (or `onBatch`)
 *   rejects every request of that batch and no other.
 * - Backpressure: {@link submit} rejects with HttpError 503 when its rows would take the queue
 *   past `maxQueuedRows`.
 * - {@link drain} runs what is queued without waiting for the delay and resolves once nothing is
 *   queued or running.
 */
export class MicroBatcher {
  private readonly options: MicroBatcherOptions;
  private readonly timers: BatcherTimers;
  private readonly queue: Pending[] = [];
  private queued = 0;
  private running = 0;
  private timer: { handle: unknown } | undefined;
  private drainWaiters: (() => void)[] = [];

  constructor(options: MicroBatcherOptions) {
    const { maxBatchSize, maxQueueDelayMs, maxQueuedRows, rowSize, outputRowSize } = options;
    for (const [name, value] of Object.entries({
      maxBatchSize,
      maxQueuedRows,
      rowSize,
      outputRowSize,
    })) {
      if (!Number.isInteger(value) || value < 1) {
        throw new RangeError(`MicroBatcher: ${name} must be an integer >= 1, got ${value}`);
      }
    }
    if (!(maxQueueDelayMs >= 0 && Number.isFinite(maxQueueDelayMs))) {
      throw new RangeError(`MicroBatcher: maxQueueDelayMs must be >= 0, got ${maxQueueDelayMs}`);
    }
    this.options = options;
    this.timers = options.timers ?? REAL_TIMERS;
  }

  /** Rows waiting for the model, not counting the batch being run. */
  get queuedRows(): number {
    return this.queued;
  }

  /** Rows of the model call now running; 0 when the model is idle. */
  get inFlight(): number {
    return this.running;
  }

  /**
   * Queues `batch` and resolves to its `batch.batch * outputRowSize` outputs.
   *
   * Rejects with HttpError 503 when the queue is full, with the error of `run` when its model call
   * fails, and with a RangeError when `batch.data` does not hold `batch.batch` rows.
   */
  submit(batch: ImageBatch): Promise<Float32Array> {
    const rows = batch.batch;
    const { rowSize, maxQueuedRows } = this.options;
    if (!Number.isInteger(rows) || rows < 1 || batch.data.length !== rows * rowSize) {
      return Promise.reject(
        new RangeError(
          `MicroBatcher.submit: expected ${rows} rows of ${rowSize} values, ` +
            `got ${batch.data.length} values`,
        ),
      );
    }
    if (this.queued > 0 && this.queued + rows > maxQueuedRows) {
      return Promise.reject(
        unavailable(
          `server overloaded: ${this.queued} rows already wait for the model ` +
            `(limit ${maxQueuedRows}); retry later`,
        ),
      );
    }
    return new Promise<Float32Array>((resolve, reject) => {
      this.queue.push({ rows, data: batch.data, enqueuedAt: this.timers.now(), resolve, reject });
      this.queued += rows;
      this.pump();
    });
  }

  /**
   * Resolves when nothing is queued or running. Queued requests are run at once, without waiting
   * for `maxQueueDelayMs`. Requests submitted meanwhile are waited for too.
   */
  drain(): Promise<void> {
    if (this.idle) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.drainWaiters.push(resolve);
      this.pump();
    });
  }

  private get idle(): boolean {
    return this.queue.length === 0 && this.running === 0;
  }

  /**
   * Runs the next batch if the model is free and the batch is full; otherwise decides in a timer.
   * A batch that is due only by its delay is started from the timer, never from `submit`: the
   * model call blocks the event loop, and requests that arrived during the previous call are
   * still being read in this turn of the loop, so starting now would leave them for later.
   */
  private pump(fromTimer = false): void {
    if (this.running > 0) return;
    const oldest = this.queue[0];
    if (oldest === undefined) return;
    const { maxBatchSize, maxQueueDelayMs } = this.options;
    const waited = this.timers.now() - oldest.enqueuedAt;
    const full = this.queued >= maxBatchSize || this.drainWaiters.length > 0;
    if (!full && !(fromTimer && waited >= maxQueueDelayMs)) {
      this.timer ??= {
        handle: this.timers.setTimeout(
          () => {
            this.timer = undefined;
            this.pump(true);
          },
          Math.max(0, maxQueueDelayMs - waited),
        ),
      };
      return;
    }
    this.cancelTimer();
    let rows = 0;
    let count = 0;
    for (const pending of this.queue) {
      if (count > 0 && rows + pending.rows > maxBatchSize) break;
      rows += pending.rows;
      count++;
    }
    const batch = this.queue.splice(0, count);
    this.queued -= rows;
    this.execute(batch, rows);
  }

  private cancelTimer(): void {
    if (this.timer !== undefined) {
      this.timers.clearTimeout(this.timer.handle);
      this.timer = undefined;
    }
  }

  private execute(batch: Pending[], rows: number): void {
    const { rowSize, run, onBatch } = this.options;
    this.running = rows;
    let data: Float32Array;
    if (batch.length === 1 && batch[0] !== undefined) {
      data = batch[0].data;
    } else {
      data = new Float32Array(rows * rowSize);
      let offset = 0;
      for (const pending of batch) {
        data.set(pending.data, offset);
        offset += pending.data.length;
      }
    }
    // An async function turns a synchronous throw of onBatch or run into a rejection; run is
    // still called synchronously.
    const result = (async () => {
      onBatch?.(rows);
      return run(data, rows);
    })();
    result.then(
      (output) => {
        this.finish(batch, rows, output);
      },
      (error: unknown) => {
        this.finish(batch, rows, undefined, error);
      },
    );
  }

  /**
   * Settles the callers of a finished batch and starts the next one, all in one step, so that
   * a caller resuming after its result already sees the model free (or running the next batch).
   */
  private finish(
    batch: readonly Pending[],
    rows: number,
    output: Float32Array | undefined,
    error?: unknown,
  ): void {
    this.running = 0;
    const { outputRowSize } = this.options;
    if (error === undefined) {
      if (!(output instanceof Float32Array)) {
        error = new Error(`model returned ${typeof output} instead of a Float32Array`);
      } else if (output.length !== rows * outputRowSize) {
        error = new Error(
          `model returned ${output.length} values for ${rows} rows of ${outputRowSize}`,
        );
      }
    }
    if (output === undefined || error !== undefined) {
      for (const pending of batch) pending.reject(error);
    } else {
      let offset = 0;
      for (const pending of batch) {
        const end = offset + pending.rows * outputRowSize;
        pending.resolve(output.slice(offset, end));
        offset = end;
      }
    }
    this.pump();
    if (this.idle) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }
}
