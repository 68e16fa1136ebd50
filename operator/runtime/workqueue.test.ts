import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Registry } from 'prom-client';

import { FakeClock } from './clock.js';
import { WorkQueue, type WorkQueueOptions } from './workqueue.js';

/** Lets every pending promise continuation run. */
const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function setup(options: Partial<WorkQueueOptions> = {}) {
  const clock = new FakeClock();
  const registry = new Registry();
  const queue = new WorkQueue({ name: 'test', clock, registry, ...options });
  return { clock, registry, queue };
}

/**
 * The value of one series: `name` is the series' own name (`*_sum`, `*_count` for histograms),
 * `labels` a subset of its labels. Undefined when there is no such series.
 */
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

/** Takes the next key, failing the test instead of hanging when none is ready. */
async function take(queue: WorkQueue): Promise<string | undefined> {
  assert.ok(queue.len > 0, 'expected a ready key');
  return queue.get();
}

/** Checks that `key` becomes ready exactly `ms` from now, then takes and finishes it. */
function assertReadyAfter(clock: FakeClock, queue: WorkQueue, ms: number): void {
  if (ms > 1) clock.advance(ms - 1);
  assert.equal(queue.len, 0, `ready before ${ms} ms`);
  clock.advance(1);
  assert.equal(queue.len, 1, `not ready after ${ms} ms`);
}

describe('WorkQueue', () => {
  it('keeps one entry per waiting key, in first-added order', async () => {
    const { queue, registry } = setup();
    queue.add('ns/a');
    queue.add('ns/b');
    queue.add('ns/a');
    assert.equal(queue.len, 2);
    assert.equal(await metric(registry, 'workqueue_depth', { name: 'test' }), 2);
    assert.equal(await take(queue), 'ns/a');
    assert.equal(await take(queue), 'ns/b');
    assert.equal(queue.len, 0);
    assert.equal(
      await metric(registry, 'workqueue_adds_total', { name: 'test', controller: 'test' }),
      2,
    );
    assert.equal(await metric(registry, 'workqueue_depth', { name: 'test' }), 0);
  });

  it('holds a key re-added while processing until done, then hands it out again', async () => {
    const { queue } = setup();
    queue.add('a');
    assert.equal(await take(queue), 'a');
    queue.add('a');
    queue.add('a');
    assert.equal(queue.len, 0, 'a key being processed is not ready');
    let next: string | undefined;
    void queue.get().then((key) => (next = key));
    await flush();
    assert.equal(next, undefined, 'a second worker got the key being processed');
    queue.done('a');
    await flush();
    assert.equal(next, 'a');
    queue.done('a');
    assert.equal(queue.len, 0, 'the two re-adds were merged into one');
  });

  it('never lets two workers process one key at once', async () => {
    const { queue, clock } = setup();
    const active = new Set<string>();
    const overlaps: string[] = [];
    const processed: string[] = [];
    const worker = async (): Promise<void> => {
      for (let key = await queue.get(); key !== undefined; key = await queue.get()) {
        if (active.has(key)) overlaps.push(key);
        active.add(key);
        processed.push(key);
        // a is slow, so the other worker is free while a is re-added.
        await new Promise<void>((resolve) => clock.setTimeout(resolve, key === 'a' ? 30 : 10));
        active.delete(key);
        queue.done(key);
      }
    };
    const workers = [worker(), worker()];
    queue.add('a');
    queue.add('b');
    await flush();
    queue.add('a');
    queue.add('c');
    queue.add('b');
    await clock.advanceAsync(5);
    queue.add('a');
    await clock.advanceAsync(100);
    queue.shutDown();
    await Promise.all(workers);
    assert.deepEqual(overlaps, []);
    // b and c run on the second worker meanwhile; a runs again only after its first run.
    assert.deepEqual(processed, ['a', 'b', 'c', 'b', 'a']);
  });

  it('adds delayed keys when due, in due order', async () => {
    const { queue, clock } = setup();
    queue.addAfter('late', 100);
    queue.addAfter('soon', 50);
    queue.addAfter('soon-too', 50);
    queue.addAfter('now', 0);
    assert.equal(queue.len, 1);
    clock.advance(49);
    assert.equal(queue.len, 1);
    clock.advance(1);
    assert.equal(queue.len, 3);
    clock.advance(49);
    assert.equal(queue.len, 3);
    clock.advance(1);
    assert.equal(queue.len, 4);
    const order: (string | undefined)[] = [];
    while (queue.len > 0) order.push(await queue.get());
    assert.deepEqual(order, ['now', 'soon', 'soon-too', 'late']);
  });

  it('keeps the earliest of several delays for one key', async () => {
    const { queue, clock, registry } = setup();
    queue.addAfter('brought-forward', 100);
    queue.addAfter('brought-forward', 30);
    queue.addAfter('kept', 30);
    queue.addAfter('kept', 100);
    clock.advance(29);
    assert.equal(queue.len, 0);
    clock.advance(1);
    assert.equal(queue.len, 2);
    for (const key of [await take(queue), await take(queue)]) queue.done(key ?? '');
    clock.advance(1000);
    assert.equal(queue.len, 0, 'the later delay added the key again');
    assert.equal(clock.pendingTimers, 0);
    assert.equal(await metric(registry, 'workqueue_retries_total', { name: 'test' }), 4);
  });

  it('backs off exponentially per key from 5 ms to 1000 s, until forgotten', async () => {
    const { queue, clock } = setup();
    const expected = [5, 10, 20, 40, 80];
    for (let i = 0; i < 18; i++) expected.push(5 * 2 ** (i + 5));
    // 5 ms * 2^17 = 655 s; the next doubling passes 1000 s and is capped.
    const capped = expected.map((ms) => Math.min(ms, 1_000_000));
    assert.equal(capped.at(-1), 1_000_000);
    for (const [i, ms] of capped.entries()) {
      queue.addRateLimited('a');
      assert.equal(queue.numRequeues('a'), i + 1);
      assertReadyAfter(clock, queue, ms);
      queue.done((await take(queue)) ?? '');
    }
    // Another key has its own count.
    queue.addRateLimited('b');
    assertReadyAfter(clock, queue, 5);
    queue.done((await take(queue)) ?? '');

    queue.forget('a');
    assert.equal(queue.numRequeues('a'), 0);
    queue.addRateLimited('a');
    assertReadyAfter(clock, queue, 5);
  });

  it('takes the backoff base and cap from its options', async () => {
    const { queue, clock } = setup({ baseDelayMs: 100, maxDelayMs: 350 });
    for (const ms of [100, 200, 350, 350]) {
      queue.addRateLimited('a');
      assertReadyAfter(clock, queue, ms);
      queue.done((await take(queue)) ?? '');
    }
  });

  it('answers undefined to waiting and later gets after shutDown, and ignores adds', async () => {
    const { queue, clock } = setup();
    const waiting = [queue.get(), queue.get()];
    queue.addAfter('delayed', 10);
    queue.shutDown();
    assert.deepEqual(await Promise.all(waiting), [undefined, undefined]);
    queue.add('a');
    clock.advance(10);
    assert.equal(queue.len, 0);
    assert.equal(await queue.get(), undefined);
    assert.equal(clock.pendingTimers, 0, 'shutDown left the delay timer set');
    assert.ok(queue.shuttingDown);
  });

  it('drains: shutDownWithDrain resolves once the keys in process are done', async () => {
    const { queue } = setup();
    queue.add('a');
    queue.add('b');
    const a = await take(queue);
    const b = await take(queue);
    let drained = false;
    const drain = queue.shutDownWithDrain().then(() => (drained = true));
    queue.done(a ?? '');
    await flush();
    assert.equal(drained, false, 'resolved with b still in process');
    queue.done(b ?? '');
    await drain;
    assert.ok(drained);
    await queue.shutDownWithDrain();
  });

  it('measures time queued and in process, and samples unfinished work when collected', async () => {
    const { queue, clock, registry } = setup();
    const labels = { name: 'test', controller: 'test' };
    queue.add('a');
    queue.add('b');
    clock.advance(2000);
    await take(queue);
    clock.advance(1000);
    await take(queue);
    clock.advance(3000);
    assert.equal(await metric(registry, 'workqueue_queue_duration_seconds_count', labels), 2);
    assert.equal(await metric(registry, 'workqueue_queue_duration_seconds_sum', labels), 5);
    // a has run 4 s, b 3 s.
    assert.equal(await metric(registry, 'workqueue_unfinished_work_seconds', labels), 7);
    assert.equal(await metric(registry, 'workqueue_longest_running_processor_seconds', labels), 4);
    queue.done('a');
    assert.equal(await metric(registry, 'workqueue_work_duration_seconds_sum', labels), 4);
    assert.equal(await metric(registry, 'workqueue_longest_running_processor_seconds', labels), 3);
    queue.done('b');
    assert.equal(await metric(registry, 'workqueue_unfinished_work_seconds', labels), 0);
  });

  it('shares metric families between queues of one registry, labelled by queue name', async () => {
    const clock = new FakeClock();
    const registry = new Registry();
    const first = new WorkQueue({ name: 'first', clock, registry });
    const second = new WorkQueue({ name: 'second', clock, registry });
    first.add('a');
    second.add('a');
    second.add('b');
    assert.equal(await metric(registry, 'workqueue_adds_total', { name: 'first' }), 1);
    assert.equal(await metric(registry, 'workqueue_adds_total', { name: 'second' }), 2);
    assert.equal(await metric(registry, 'workqueue_depth', { controller: 'second' }), 2);
    first.shutDown();
    assert.equal(
      await metric(registry, 'workqueue_unfinished_work_seconds', { name: 'first' }),
      undefined,
    );
    assert.equal(
      await metric(registry, 'workqueue_unfinished_work_seconds', { name: 'second' }),
      0,
    );
  });
});
