/**
 * Time as the operator's runtime sees it: injectable so that backoff, delayed requeues and
 * timeouts can be tested on a {@link FakeClock} without sleeping.
 */

/** An opaque handle from {@link Clock.setTimeout}, only good for {@link Clock.clearTimeout}. */
export type TimerHandle = object;

/** The current time and one-shot timers. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Calls `callback` once, `ms` milliseconds from now. */
  setTimeout(callback: () => void, ms: number): TimerHandle;
  /** Cancels a timer; a handle that already fired or was cleared is ignored. */
  clearTimeout(handle: TimerHandle): void;
}

/** The wall clock and the global timers. */
export const REAL_CLOCK: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => {
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};

interface FakeTimer {
  readonly at: number;
  /** Creation order: timers due at the same time fire in the order they were set. */
  readonly seq: number;
  readonly callback: () => void;
}

/**
 * A manual clock for tests: time stands still until {@link FakeClock.advance} moves it, firing
 * due timers in order of due time (then creation), each with `now()` at its due time.
 */
export class FakeClock implements Clock {
  private time: number;
  private seq = 0;
  private readonly timers = new Set<FakeTimer>();

  constructor(startMs = 0) {
    this.time = startMs;
  }

  now(): number {
    return this.time;
  }

  setTimeout(callback: () => void, ms: number): TimerHandle {
    // Like the global setTimeout, a negative or NaN delay means "as soon as possible".
    const delay = ms > 0 ? ms : 0;
    const timer: FakeTimer = { at: this.time + delay, seq: this.seq++, callback };
    this.timers.add(timer);
    return timer;
  }

  clearTimeout(handle: TimerHandle): void {
    this.timers.delete(handle as FakeTimer);
  }

  /** Timers set and not yet fired or cleared. */
  get pendingTimers(): number {
    return this.timers.size;
  }

  /**
   * Moves time forward by `ms`, synchronously firing every timer due by then, including ones
   * that the fired callbacks set. Promise continuations run only after it returns: use
   * {@link advanceAsync} when they set further timers.
   */
  advance(ms: number): void {
    const target = this.time + ms;
    for (let timer = this.nextDue(target); timer; timer = this.nextDue(target)) {
      this.fire(timer);
    }
    this.time = target;
  }

  /**
   * Like {@link advance}, but lets pending promise continuations and I/O callbacks run before
   * and after each timer, so that work a timer starts asynchronously can set timers that fall
   * due within the same advance.
   */
  async advanceAsync(ms: number): Promise<void> {
    const target = this.time + ms;
    await macrotask();
    for (let timer = this.nextDue(target); timer; timer = this.nextDue(target)) {
      this.fire(timer);
      await macrotask();
    }
    this.time = target;
  }

  private fire(timer: FakeTimer): void {
    this.timers.delete(timer);
    this.time = Math.max(this.time, timer.at);
    timer.callback();
  }

  private nextDue(limit: number): FakeTimer | undefined {
    let next: FakeTimer | undefined;
    for (const timer of this.timers) {
      if (timer.at > limit) continue;
      if (
        next === undefined ||
        timer.at < next.at ||
        (timer.at === next.at && timer.seq < next.seq)
      )
        next = timer;
    }
    return next;
  }
}

/** Resolves after every promise continuation queued so far has run. */
function macrotask(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
