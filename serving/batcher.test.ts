import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { type BatcherTimers, MicroBatcher, type MicroBatcherOptions } from './batcher.js';
import { HttpError } from './http-error.js';
import type { ImageBatch } from './protocol.js';

/** A manual clock: timers fire only in {@link advance}. */
class FakeClock implements BatcherTimers {
  time = 0;
  private nextId = 1;
  private readonly timers = new Map<number, { at: number; callback: () => void }>();

  now(): number {
    return this.time;
  }

  setTimeout(callback: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.set(id, { at: this.time + ms, callback });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  get pendingTimers(): number {
    return this.timers.size;
  }

  /** Moves the clock forward, firing due timers in order. */
  advance(ms: number): void {
    const target = this.time + ms;
    for (;;) {
      let next: [number, { at: number; callback: () => void }] | undefined;
      for (const entry of this.timers) {
        if (entry[1].at <= target && (next === undefined || entry[1].at < next[1].at)) {
          next = entry;
        }
      }
      if (next === undefined) break;
      this.timers.delete(next[0]);
      this.time = Math.max(this.time, next[1].at);
      next[1].callback();
    }
    this.time = target;
  }
}

/**
 * A fake model on rows of 2 values: row [a, b] gives [a + b, a - b]. Each call is recorded and
 * waits until the test completes it (or completes at once when `auto`).
 */
class FakeModel {
  readonly calls: { data: number[]; batch: number; complete: () => void; fail: () => void }[] = [];
  auto = false;

  readonly run = (data: Float32Array, batch: number): Promise<Float32Array> => {
    const input = Array.from(data);
    return new Promise<Float32Array>((resolve, reject) => {
      const output = new Float32Array(batch * 2);
      for (let r = 0; r < batch; r++) {
        const a = input[2 * r] ?? NaN;
        const b = input[2 * r + 1] ?? NaN;
        output[2 * r] = a + b;
        output[2 * r + 1] = a - b;
      }
      const call = {
        data: input,
        batch,
        complete: () => {
          resolve(output);
        },
        fail: () => {
          reject(new Error(`model failed on a batch of ${batch}`));
        },
      };
      this.calls.push(call);
      if (this.auto) call.complete();
    });
  };

  call(index: number): FakeModel['calls'][number] {
    const call = this.calls[index];
    assert.ok(call, `no model call #${index}; ${this.calls.length} so far`);
    return call;
  }
}

/** Request `id` of `rows` rows: row r is [id * 10 + r, 0.5]. */
function request(id: number, rows: number): ImageBatch {
  const data = new Float32Array(rows * 2);
  for (let r = 0; r < rows; r++) {
    data[2 * r] = id * 10 + r;
    data[2 * r + 1] = 0.5;
  }
  return { batch: rows, data };
}

/** What FakeModel answers for {@link request}. */
function expected(id: number, rows: number): Float32Array {
  const out = new Float32Array(rows * 2);
  for (let r = 0; r < rows; r++) {
    out[2 * r] = id * 10 + r + 0.5;
    out[2 * r + 1] = id * 10 + r - 0.5;
  }
  return out;
}

/** Lets pending promise callbacks run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Tracks a promise's outcome without awaiting it. */
function track<T>(promise: Promise<T>): {
  state: 'pending' | 'resolved' | 'rejected';
  error?: any;
} {
  const tracked: { state: 'pending' | 'resolved' | 'rejected'; error?: any } = {
    state: 'pending',
  };
  void promise.then(
    () => {
      tracked.state = 'resolved';
    },
    (error: unknown) => {
      tracked.state = 'rejected';
      tracked.error = error;
    },
  );
  return tracked;
}

function setup(options: Partial<MicroBatcherOptions> = {}): {
  batcher: MicroBatcher;
  model: FakeModel;
  clock: FakeClock;
  batches: number[];
} {
  const model = new FakeModel();
  const clock = new FakeClock();
  const batches: number[] = [];
  const batcher = new MicroBatcher({
    maxBatchSize: 8,
    maxQueueDelayMs: 5,
    maxQueuedRows: 100,
    rowSize: 2,
    outputRowSize: 2,
    run: model.run,
    timers: clock,
    onBatch: (size) => {
      batches.push(size);
    },
    ...options,
  });
  return { batcher, model, clock, batches };
}

describe('MicroBatcher', () => {
  it('merges concurrent requests into one call and gives each caller its rows', async () => {
    const { batcher, model, clock, batches } = setup();
    model.auto = true;
    const a = batcher.submit(request(1, 1));
    const b = batcher.submit(request(2, 3));
    const c = batcher.submit(request(3, 2));
    assert.equal(model.calls.length, 0);
    assert.equal(batcher.queuedRows, 6);
    clock.advance(4);
    assert.equal(model.calls.length, 0, 'ran before the oldest request waited maxQueueDelayMs');
    clock.advance(1);
    assert.equal(model.calls.length, 1);
    assert.equal(model.call(0).batch, 6);
    assert.deepEqual(model.call(0).data, [10, 0.5, 20, 0.5, 21, 0.5, 22, 0.5, 30, 0.5, 31, 0.5]);
    assert.deepEqual(await a, expected(1, 1));
    assert.deepEqual(await b, expected(2, 3));
    assert.deepEqual(await c, expected(3, 2));
    assert.deepEqual(batches, [6]);
    assert.equal(batcher.queuedRows, 0);
    assert.equal(batcher.inFlight, 0);
  });

  it('runs a full batch at once, without waiting for the delay', async () => {
    const { batcher, model, clock } = setup({ maxBatchSize: 4 });
    const a = batcher.submit(request(1, 2));
    assert.equal(clock.pendingTimers, 1);
    const b = batcher.submit(request(2, 2));
    assert.equal(model.calls.length, 1);
    assert.equal(model.call(0).batch, 4);
    assert.equal(clock.pendingTimers, 0, 'the delay timer was not cleared');
    assert.equal(batcher.inFlight, 4);
    model.call(0).complete();
    assert.deepEqual(await a, expected(1, 2));
    assert.deepEqual(await b, expected(2, 2));
  });

  it('keeps arrival order, never splits a request, and respects maxBatchSize', async () => {
    const { batcher, model, clock, batches } = setup({ maxBatchSize: 4 });
    const results = [
      batcher.submit(request(1, 3)),
      batcher.submit(request(2, 2)),
      batcher.submit(request(3, 1)),
      batcher.submit(request(4, 2)),
      batcher.submit(request(5, 3)),
    ];
    // 11 rows queued: request 1 alone (request 2 would make 5), at once since the queue is full.
    assert.equal(model.calls.length, 1);
    assert.equal(batcher.queuedRows, 8);
    model.call(0).complete();
    await settle();
    // The next batch formed while the model ran: requests 2 and 3; request 4 would make 5.
    assert.equal(model.call(1).batch, 3);
    assert.deepEqual(model.call(1).data, [20, 0.5, 21, 0.5, 30, 0.5]);
    model.call(1).complete();
    await settle();
    assert.equal(model.call(2).batch, 2);
    model.call(2).complete();
    await settle();
    // Request 5 alone (3 rows) is not full: it runs once it has waited the delay.
    assert.equal(model.calls.length, 3);
    clock.advance(5);
    assert.equal(model.call(3).batch, 3);
    model.call(3).complete();
    const outputs = await Promise.all(results);
    assert.deepEqual(outputs, [
      expected(1, 3),
      expected(2, 2),
      expected(3, 1),
      expected(4, 2),
      expected(5, 3),
    ]);
    assert.deepEqual(batches, [3, 3, 2, 3]);
  });

  it('runs a request larger than maxBatchSize alone', async () => {
    const { batcher, model } = setup({ maxBatchSize: 2, maxQueueDelayMs: 0 });
    const small = batcher.submit(request(1, 1));
    const big = batcher.submit(request(2, 5));
    assert.equal(model.call(0).batch, 1);
    model.call(0).complete();
    await settle();
    assert.equal(model.call(1).batch, 5);
    model.call(1).complete();
    assert.deepEqual(await small, expected(1, 1));
    assert.deepEqual(await big, expected(2, 5));
  });

  it('flushes a lone request after maxQueueDelayMs on real timers', async () => {
    const model = new FakeModel();
    model.auto = true;
    const batcher = new MicroBatcher({
      maxBatchSize: 8,
      maxQueueDelayMs: 1,
      maxQueuedRows: 8,
      rowSize: 2,
      outputRowSize: 2,
      run: model.run,
    });
    assert.deepEqual(await batcher.submit(request(7, 2)), expected(7, 2));
    assert.equal(model.calls.length, 1);
  });

  it('rejects only the callers of a failing batch', async () => {
    const { batcher, model, clock } = setup({ maxBatchSize: 3 });
    const a = track(batcher.submit(request(1, 1)));
    const b = track(batcher.submit(request(2, 2)));
    const c = batcher.submit(request(3, 1));
    assert.equal(model.call(0).batch, 3);
    model.call(0).fail();
    await settle();
    assert.equal(a.state, 'rejected');
    assert.equal(b.state, 'rejected');
    assert.equal((a.error as Error).message, 'model failed on a batch of 3');
    assert.equal(b.error, a.error);
    clock.advance(5);
    assert.equal(model.call(1).batch, 1);
    model.call(1).complete();
    assert.deepEqual(await c, expected(3, 1));
  });

  it('rejects a batch whose run throws or returns the wrong length', async () => {
    let calls = 0;
    const { batcher, clock } = setup({
      maxQueueDelayMs: 0,
      run: () => {
        calls++;
        if (calls === 1) throw new Error('synchronous failure');
        return Promise.resolve(new Float32Array(3));
      },
    });
    const first = batcher.submit(request(1, 1));
    clock.advance(0);
    await assert.rejects(first, /synchronous failure/);
    const second = batcher.submit(request(1, 2));
    clock.advance(0);
    await assert.rejects(second, /model returned 3 values for 2 rows of 2/);
    assert.equal(batcher.inFlight, 0);
  });

  it('starts a batch that is due by its delay from a timer, so requests of the same turn join it', async () => {
    const { batcher, model, clock } = setup({ maxQueueDelayMs: 0, maxBatchSize: 8 });
    model.auto = true;
    const a = batcher.submit(request(1, 1));
    const b = batcher.submit(request(2, 2));
    assert.equal(model.calls.length, 0, 'no model call from inside submit');
    clock.advance(0);
    assert.equal(model.calls.length, 1);
    assert.equal(model.call(0).batch, 3);
    assert.deepEqual(await a, expected(1, 1));
    assert.deepEqual(await b, expected(2, 2));
  });

  it('refuses requests with 503 beyond maxQueuedRows', async () => {
    const { batcher, model, clock } = setup({ maxBatchSize: 2, maxQueuedRows: 3 });
    const running = batcher.submit(request(1, 2));
    assert.equal(batcher.inFlight, 2);
    assert.equal(batcher.queuedRows, 0);
    const queued = batcher.submit(request(2, 2));
    assert.equal(batcher.queuedRows, 2);
    await assert.rejects(batcher.submit(request(3, 2)), (error: unknown) => {
      assert.ok(error instanceof HttpError);
      assert.equal(error.status, 503);
      assert.match(error.message, /2 rows already wait for the model \(limit 3\)/);
      return true;
    });
    const last = batcher.submit(request(4, 1));
    assert.equal(batcher.queuedRows, 3);
    await assert.rejects(batcher.submit(request(5, 1)), { status: 503 });
    model.call(0).complete();
    await settle();
    model.call(1).complete();
    await settle();
    clock.advance(5);
    model.call(2).complete();
    assert.deepEqual(await running, expected(1, 2));
    assert.deepEqual(await queued, expected(2, 2));
    assert.deepEqual(await last, expected(4, 1));
    // An empty queue takes a request of any size.
    const big = batcher.submit(request(6, 5));
    assert.equal(model.call(3).batch, 5);
    model.call(3).complete();
    assert.deepEqual(await big, expected(6, 5));
  });

  it('drain runs queued requests at once and waits for the model', async () => {
    const { batcher, model } = setup({ maxQueueDelayMs: 1000 });
    await batcher.drain();
    const a = batcher.submit(request(1, 8));
    const b = batcher.submit(request(2, 1));
    assert.equal(model.calls.length, 1);
    const drained = track(batcher.drain());
    await settle();
    assert.equal(drained.state, 'pending');
    model.call(0).complete();
    await settle();
    // The queued request ran without waiting 1000 ms of the (fake) clock.
    assert.equal(model.call(1).batch, 1);
    assert.equal(drained.state, 'pending');
    model.call(1).complete();
    await settle();
    assert.equal(drained.state, 'resolved');
    assert.equal(batcher.queuedRows, 0);
    assert.equal(batcher.inFlight, 0);
    assert.deepEqual(await a, expected(1, 8));
    assert.deepEqual(await b, expected(2, 1));
  });

  it('refuses malformed batches and settings', async () => {
    const { batcher } = setup();
    await assert.rejects(batcher.submit({ batch: 2, data: new Float32Array(3) }), RangeError);
    await assert.rejects(batcher.submit({ batch: 0, data: new Float32Array(0) }), RangeError);
    assert.throws(() => setup({ maxBatchSize: 0 }), /maxBatchSize must be an integer >= 1/);
    assert.throws(() => setup({ maxQueueDelayMs: -1 }), /maxQueueDelayMs must be >= 0/);
  });
});
