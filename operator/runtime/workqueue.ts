/**
 * A rate-limited work queue of object keys with client-go's semantics, so that controllers here
 * behave like controller-runtime's: keys are de-duplicated while they wait, and a key is handed
 * to one worker at a time however often it is added.
 */
import { Registry } from 'prom-client';

import { type Clock, REAL_CLOCK, type TimerHandle } from './clock.js';
import {
  type ProcessingSample,
  type WorkQueueLabel,
  type WorkQueueMetrics,
  workQueueMetrics,
} from './metrics.js';

/** controller-runtime's default per-item backoff: 5 ms, doubling on each failure... */
export const DEFAULT_BASE_DELAY_MS = 5;
/** ...up to 1000 s. */
export const DEFAULT_MAX_DELAY_MS = 1_000_000;

/** Settings of a {@link WorkQueue}. */
export interface WorkQueueOptions {
  /** Labels the queue's metric series (`name` and `controller`); unique within a registry. */
  readonly name: string;
  /** Where the `workqueue_*` metrics go; a private registry when left out. */
  readonly registry?: Registry;
  /** Defaults to {@link REAL_CLOCK}. */
  readonly clock?: Clock;
  /** Delay of an item's first rate-limited add; defaults to {@link DEFAULT_BASE_DELAY_MS}. */
  readonly baseDelayMs?: number;
  /** Cap of the per-item backoff; defaults to {@link DEFAULT_MAX_DELAY_MS}. */
  readonly maxDelayMs?: number;
}

/** One scheduled add; stale once a sooner add of the same key replaced it. */
interface DelayedAdd {
  readonly key: string;
  readonly at: number;
  /** Keys due at the same time are added in the order they were scheduled. */
  readonly seq: number;
}

/**
 * A work queue of string keys (`namespace/name`), de-duplicated, delayed and rate-limited.
 *
 * - {@link add} of a key that is already waiting does nothing. A key added while a worker
 *   processes it is marked dirty and queued again only when that worker calls {@link done}, so
 *   no key is ever processed by two workers at once, and no change is missed.
 * - {@link addAfter} adds a key later; of several pending delays for one key the earliest wins.
 * - {@link addRateLimited} adds after a per-key exponential backoff that {@link forget} resets.
 *
 * Unlike client-go, whose Get hands out the remaining items after ShutDown, {@link get} answers
 * `undefined` at once after {@link shutDown}: a stopping controller (one that lost its lease, say)
 * should not work through its backlog, which the next leader lists again anyway.
 */
export class WorkQueue {
  /** Name of the metric series, for logs as well. */
  readonly name: string;
  private readonly clock: Clock;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly metrics: WorkQueueMetrics;
  private readonly labels: Record<WorkQueueLabel, string>;

  /** Keys ready for a worker, oldest first. */
  private readonly ready: string[] = [];
  /** Keys that need processing: those in `ready` and those re-added while being processed. */
  private readonly dirty = new Set<string>();
  /** When each dirty key was first added, for the queue-duration histogram. */
  private readonly addedAt = new Map<string, number>();
  /** Keys being processed and when their worker got them. */
  private readonly processing = new Map<string, number>();
  /** Callers of {@link get} waiting for a key; only while `ready` is empty. */
  private readonly getters: ((key: string | undefined) => void)[] = [];
  /** Callers of {@link shutDownWithDrain} waiting for `processing` to empty. */
  private readonly drainers: (() => void)[] = [];

  /** Min-heap of delayed adds by (at, seq); entries replaced by a sooner one are skipped. */
  private readonly delayed: DelayedAdd[] = [];
  /** The current due time of each delayed key. */
  private readonly delayedAt = new Map<string, number>();
  private delaySeq = 0;
  private timer: { readonly handle: TimerHandle; readonly at: number } | undefined;

  /** Failures of each key since it was last forgotten. */
  private readonly failures = new Map<string, number>();
  private closed = false;

  constructor(options: WorkQueueOptions) {
    this.name = options.name;
    this.clock = options.clock ?? REAL_CLOCK;
    this.baseDelayMs = options.baseDelayMs ?? DEFAULT_BASE_DELAY_MS;
    this.maxDelayMs = options.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
    this.metrics = workQueueMetrics(options.registry ?? new Registry());
    this.labels = { name: this.name, controller: this.name };
    this.metrics.depth.set(this.labels, 0);
    this.metrics.adds.inc(this.labels, 0);
    this.metrics.retries.inc(this.labels, 0);
    this.metrics.processing.set(this.name, this.sampleProcessing);
  }

  /** Keys ready for a worker (not counting dirty keys still being processed). */
  get len(): number {
    return this.ready.length;
  }

  /** True once {@link shutDown} or {@link shutDownWithDrain} was called. */
  get shuttingDown(): boolean {
    return this.closed;
  }

  /** Queues `key` unless it is already waiting; ignored after shut-down. */
  add(key: string): void {
    if (this.closed || this.dirty.has(key)) return;
    this.metrics.adds.inc(this.labels);
    this.dirty.add(key);
    this.addedAt.set(key, this.clock.now());
    this.metrics.depth.set(this.labels, this.dirty.size);
    // A key being processed goes back to `ready` when its worker is done with it.
    if (!this.processing.has(key)) this.push(key);
  }

  /**
   * Queues `key` in `ms` milliseconds (at once when `ms` <= 0). A key already due sooner keeps
   * its earlier time; one due later is brought forward. Counts as a retry, as in client-go.
   */
  addAfter(key: string, ms: number): void {
    if (this.closed) return;
    this.metrics.retries.inc(this.labels);
    if (!(ms > 0)) {
      this.add(key);
      return;
    }
    const at = this.clock.now() + ms;
    const current = this.delayedAt.get(key);
    if (current !== undefined && current <= at) return;
    this.delayedAt.set(key, at);
    this.heapPush({ key, at, seq: this.delaySeq++ });
    this.armTimer();
  }

  /** Queues `key` after its backoff: base * 2^failures, capped; each call counts a failure. */
  addRateLimited(key: string): void {
    if (this.closed) return;
    const failures = this.failures.get(key) ?? 0;
    this.failures.set(key, failures + 1);
    this.addAfter(key, Math.min(this.baseDelayMs * 2 ** failures, this.maxDelayMs));
  }

  /** Resets the backoff of `key` (it does not cancel an add already scheduled). */
  forget(key: string): void {
    this.failures.delete(key);
  }

  /** Rate-limited adds of `key` since it was last forgotten. */
  numRequeues(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /**
   * The next key to process, waiting for one if none is ready; `undefined` once the queue is
   * shut down. The caller must call {@link done} with the key when it has finished with it.
   */
  get(): Promise<string | undefined> {
    if (this.closed) return Promise.resolve(undefined);
    const key = this.ready.shift();
    if (key !== undefined) return Promise.resolve(this.take(key));
    return new Promise((resolve) => this.getters.push(resolve));
  }

  /** Marks `key` processed; if it was added meanwhile, queues it again. */
  done(key: string): void {
    const startedAt = this.processing.get(key);
    if (startedAt === undefined) return;
    this.processing.delete(key);
    this.metrics.workDuration.observe(this.labels, this.secondsSince(startedAt));
    if (this.dirty.has(key) && !this.closed) this.push(key);
    if (this.processing.size === 0 && this.closed) this.finishDrain();
  }

  /**
   * Stops the queue: waiting and later {@link get} calls answer `undefined`, adds are ignored and
   * delayed adds dropped. Keys being processed may still be marked {@link done}.
   */
  shutDown(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer.handle);
    this.timer = undefined;
    this.delayed.length = 0;
    this.delayedAt.clear();
    for (const resolve of this.getters.splice(0)) resolve(undefined);
    if (this.processing.size === 0) this.finishDrain();
  }

  /** {@link shutDown}, then waits until every key being processed is marked {@link done}. */
  shutDownWithDrain(): Promise<void> {
    this.shutDown();
    if (this.processing.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainers.push(resolve));
  }

  /** Hands `key` to a waiting getter, or makes it ready. */
  private push(key: string): void {
    const getter = this.getters.shift();
    if (getter === undefined) this.ready.push(key);
    else getter(this.take(key));
  }

  /** Moves `key` from dirty to processing. */
  private take(key: string): string {
    const now = this.clock.now();
    this.dirty.delete(key);
    this.processing.set(key, now);
    const addedAt = this.addedAt.get(key);
    this.addedAt.delete(key);
    if (addedAt !== undefined) {
      this.metrics.queueDuration.observe(this.labels, Math.max(0, now - addedAt) / 1000);
    }
    this.metrics.depth.set(this.labels, this.dirty.size);
    return key;
  }

  private finishDrain(): void {
    // A stopped, idle queue has nothing left to report to the collect-time gauges.
    if (this.metrics.processing.get(this.name) === this.sampleProcessing) {
      this.metrics.processing.delete(this.name);
    }
    for (const resolve of this.drainers.splice(0)) resolve();
  }

  private readonly sampleProcessing = (): ProcessingSample => {
    let unfinishedSeconds = 0;
    let longestSeconds = 0;
    for (const startedAt of this.processing.values()) {
      const seconds = this.secondsSince(startedAt);
      unfinishedSeconds += seconds;
      longestSeconds = Math.max(longestSeconds, seconds);
    }
    return { unfinishedSeconds, longestSeconds };
  };

  private secondsSince(ms: number): number {
    // The wall clock can step back; a negative duration would corrupt the histograms.
    return Math.max(0, this.clock.now() - ms) / 1000;
  }

  /** Sets the timer for the soonest delayed add, unless one already fires by then. */
  private armTimer(): void {
    const next = this.peekDelayed();
    if (next === undefined || (this.timer !== undefined && this.timer.at <= next.at)) return;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer.handle);
    const handle = this.clock.setTimeout(
      () => {
        this.timer = undefined;
        this.addDue();
      },
      Math.max(0, next.at - this.clock.now()),
    );
    this.timer = { handle, at: next.at };
  }

  private addDue(): void {
    const now = this.clock.now();
    for (let next = this.peekDelayed(); next && next.at <= now; next = this.peekDelayed()) {
      this.heapPop();
      this.delayedAt.delete(next.key);
      this.add(next.key);
    }
    this.armTimer();
  }

  /** The soonest live delayed add, dropping stale entries above it. */
  private peekDelayed(): DelayedAdd | undefined {
    for (let top = this.delayed[0]; top; top = this.delayed[0]) {
      if (this.delayedAt.get(top.key) === top.at) return top;
      this.heapPop();
    }
    return undefined;
  }

  private heapPush(entry: DelayedAdd): void {
    const heap = this.delayed;
    heap.push(entry);
    for (let i = heap.length - 1; i > 0;) {
      const parent = (i - 1) >> 1;
      if (!earlier(entry, nth(heap, parent))) break;
      heap[i] = nth(heap, parent);
      heap[parent] = entry;
      i = parent;
    }
  }

  private heapPop(): void {
    const heap = this.delayed;
    const last = heap.pop();
    if (last === undefined || heap.length === 0) return;
    heap[0] = last;
    for (let i = 0; ;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let least = i;
      if (left < heap.length && earlier(nth(heap, left), nth(heap, least))) least = left;
      if (right < heap.length && earlier(nth(heap, right), nth(heap, least))) least = right;
      if (least === i) return;
      heap[i] = nth(heap, least);
      heap[least] = last;
      i = least;
    }
  }
}

function earlier(a: DelayedAdd, b: DelayedAdd): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/** `heap[i]` for an index known to be in range (noUncheckedIndexedAccess cannot tell). */
function nth(heap: readonly DelayedAdd[], i: number): DelayedAdd {
  return heap[i] as DelayedAdd;
}
