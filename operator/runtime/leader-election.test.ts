import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ApiException, type V1Lease, type V1LeaseSpec } from '@kubernetes/client-node';

import { FakeClock } from './clock.js';
import { type Logger } from './events.js';
import {
  LeaderElector,
  type LeaderElectorOptions,
  type LeaseApi,
  type StoppedLeadingReason,
} from './leader-election.js';

const NAMESPACE = 'compofa-system';
const NAME = 'compofa-operator';

/** An in-memory Lease endpoint with the API server's optimistic concurrency. */
class FakeLeaseApi implements LeaseApi {
  /** Stored as JSON, as the server does: times come back as strings. */
  private stored: string | undefined;
  private version = 0;
  /** When set, every call fails with this HTTP status. */
  failWith: number | undefined;
  calls = 0;

  get lease(): V1Lease | undefined {
    return this.stored === undefined ? undefined : (JSON.parse(this.stored) as V1Lease);
  }

  /** The stored Lease's spec, with times as the strings the server returns. */
  get spec(): Omit<V1LeaseSpec, 'renewTime'> & { renewTime?: string } {
    const spec = this.lease?.spec;
    assert.ok(spec, 'there is a Lease');
    return spec as unknown as Omit<V1LeaseSpec, 'renewTime'> & { renewTime?: string };
  }

  /** Overwrites the Lease as another client would, bumping its resourceVersion. */
  tamper(change: (lease: V1Lease) => void): void {
    const lease = this.lease;
    assert.ok(lease);
    change(lease);
    this.store(lease);
  }

  readNamespacedLease(param: { name: string; namespace: string }): Promise<V1Lease> {
    return this.call(param, () => {
      const lease = this.lease;
      if (!lease) throw new ApiException(404, 'NotFound', '{"message":"not found"}', {});
      return lease;
    });
  }

  createNamespacedLease(param: { namespace: string; body: V1Lease }): Promise<V1Lease> {
    return this.call({ name: param.body.metadata?.name ?? '', ...param }, () => {
      if (this.stored !== undefined)
        throw new ApiException(409, 'Conflict', '{"message":"already exists"}', {});
      return this.store(param.body);
    });
  }

  replaceNamespacedLease(param: {
    name: string;
    namespace: string;
    body: V1Lease;
  }): Promise<V1Lease> {
    return this.call(param, () => {
      const current = this.lease;
      if (!current) throw new ApiException(404, 'NotFound', '{"message":"not found"}', {});
      if (param.body.metadata?.resourceVersion !== current.metadata?.resourceVersion)
        throw new ApiException(409, 'Conflict', '{"message":"the object has been modified"}', {});
      return this.store(param.body);
    });
  }

  private async call(
    param: { name: string; namespace: string },
    handle: () => V1Lease,
  ): Promise<V1Lease> {
    await Promise.resolve();
    this.calls++;
    assert.equal(param.namespace, NAMESPACE);
    assert.equal(param.name, NAME);
    if (this.failWith !== undefined)
      throw new ApiException(this.failWith, 'Error', '{"message":"injected failure"}', {});
    return handle();
  }

  private store(lease: V1Lease): V1Lease {
    const copy = JSON.parse(JSON.stringify(lease)) as { metadata?: Record<string, unknown> };
    copy.metadata = { ...copy.metadata, resourceVersion: String(++this.version) };
    this.stored = JSON.stringify(copy);
    return JSON.parse(this.stored) as V1Lease;
  }
}

/** A logger that keeps what it is given, to assert on. */
class MemoryLogger implements Logger {
  readonly lines: { level: string; msg: string; fields?: Readonly<Record<string, unknown>> }[] = [];
  debug(msg: string, fields?: Readonly<Record<string, unknown>>): void {
    this.lines.push({ level: 'debug', msg, fields });
  }
  info(msg: string, fields?: Readonly<Record<string, unknown>>): void {
    this.lines.push({ level: 'info', msg, fields });
  }
  warn(msg: string, fields?: Readonly<Record<string, unknown>>): void {
    this.lines.push({ level: 'warn', msg, fields });
  }
  error(msg: string, fields?: Readonly<Record<string, unknown>>): void {
    this.lines.push({ level: 'error', msg, fields });
  }
}

interface Candidate {
  readonly elector: LeaderElector;
  readonly started: number[];
  readonly stopped: { at: number; reason: StoppedLeadingReason }[];
  readonly newLeaders: string[];
  readonly signals: AbortSignal[];
  done: Promise<void>;
}

function candidate(
  identity: string,
  api: FakeLeaseApi,
  clock: FakeClock,
  options: Partial<LeaderElectorOptions> = {},
): Candidate {
  const result: Candidate = {
    started: [],
    stopped: [],
    newLeaders: [],
    signals: [],
    done: Promise.resolve(),
    elector: new LeaderElector({
      api,
      namespace: NAMESPACE,
      name: NAME,
      identity,
      clock,
      random: () => 0,
      onStartedLeading: (signal) => {
        result.started.push(clock.now());
        result.signals.push(signal);
      },
      onStoppedLeading: (reason) => result.stopped.push({ at: clock.now(), reason }),
      onNewLeader: (leader) => result.newLeaders.push(leader),
      ...options,
    }),
  };
  result.done = result.elector.run();
  return result;
}

/** Advances in small steps, checking after each that at most one candidate leads. */
async function advance(clock: FakeClock, ms: number, candidates: Candidate[] = []): Promise<void> {
  for (let left = ms; left > 0; left -= 100) {
    await clock.advanceAsync(Math.min(100, left));
    const leaders = candidates.filter((c) => c.elector.isLeader).map((c) => c.elector.identity);
    assert.ok(leaders.length <= 1, `both lead at ${clock.now()}: ${leaders.join(', ')}`);
  }
}

/** When (virtual ms) `predicate` first holds, advancing up to `limit`. */
async function timeUntil(
  clock: FakeClock,
  predicate: () => boolean,
  limit: number,
  candidates: Candidate[] = [],
): Promise<number> {
  const start = clock.now();
  while (!predicate()) {
    assert.ok(clock.now() - start < limit, `not within ${limit} ms`);
    await advance(clock, 100, candidates);
  }
  return clock.now() - start;
}

describe('LeaderElector', () => {
  it('creates the Lease when there is none and leads', async () => {
    const api = new FakeLeaseApi();
    const clock = new FakeClock(1_000_000);
    const a = candidate('a', api, clock);
    await advance(clock, 0);
    await clock.advanceAsync(0);
    assert.equal(a.elector.isLeader, true);
    assert.deepEqual(a.started, [1_000_000]);
    assert.deepEqual(a.newLeaders, ['a']);
    const spec = api.spec;
    assert.equal(spec.holderIdentity, 'a');
    assert.equal(spec.leaseDurationSeconds, 15);
    assert.equal(spec.leaseTransitions, 0);
    // MicroTime: six fractional digits, or the API server rejects the Lease.
    assert.match(String(spec.renewTime), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    await a.elector.stop();
    await a.done;
  });

  it('renews every retry period while a standby waits', async () => {
    const api = new FakeLeaseApi();
    const clock = new FakeClock(1_000_000);
    const a = candidate('a', api, clock);
    await clock.advanceAsync(0);
    const b = candidate('b', api, clock);
    const renewTimes = new Set<string>();
    for (let i = 0; i < 30; i++) {
      await advance(clock, 1_000, [a, b]);
      renewTimes.add(String(api.spec.renewTime));
    }
    assert.equal(a.elector.isLeader, true);
    assert.equal(b.elector.isLeader, false);
    assert.deepEqual(b.newLeaders, ['a']);
    assert.equal(b.elector.leader, 'a');
    assert.ok(renewTimes.size >= 14, `${renewTimes.size} renewals in 30 s`);
    assert.equal(api.spec.leaseTransitions, 0);
    await Promise.all([a.elector.stop(), b.elector.stop()]);
    assert.equal(b.stopped.length, 0, 'a candidate that never led is not told it stopped');
    assert.equal(a.stopped[0]?.reason, 'stopped');
  });

  it('takes over a Lease that nobody renewed for a lease duration after a crash', async () => {
    const api = new FakeLeaseApi();
    const clock = new FakeClock(1_000_000);
    const a = candidate('a', api, clock);
    await clock.advanceAsync(0);
    const b = candidate('b', api, clock);
    await advance(clock, 5_000, [a, b]);
    await a.elector.stop(); // the crash: no release
    const lastRenewal = Date.parse(String(api.spec.renewTime));
    const waited = await timeUntil(clock, () => b.elector.isLeader, 30_000, [a, b]);
    const takeover = clock.now() - lastRenewal;
    assert.ok(takeover > 15_000 && takeover <= 15_000 + 2 * 2_000, `took over after ${takeover}`);
    assert.ok(waited > 12_000, `waited ${waited}`);
    assert.equal(api.spec.holderIdentity, 'b');
    assert.equal(api.spec.leaseTransitions, 1);
    assert.deepEqual(b.newLeaders, ['a', 'b']);
    await b.elector.stop();
  });

  it('judges expiry by its own clock, not by the renewTime in the Lease', async () => {
    const api = new FakeLeaseApi();
    const clock = new FakeClock(10_000_000);
    // Another holder whose clock is an hour behind ours; it renews as we watch.
    const stale = new Date(clock.now() - 3_600_000).toISOString();
    await api.createNamespacedLease({
      namespace: NAMESPACE,
      body: {
        metadata: { name: NAME, namespace: NAMESPACE },
        spec: {
          holderIdentity: 'skewed',
          leaseDurationSeconds: 15,
          renewTime: stale as unknown as Date,
          leaseTransitions: 4,
        },
      },
    });
    const b = candidate('b', api, clock);
    await advance(clock, 14_000, [b]);
    assert.equal(b.elector.isLeader, false, 'a Lease first seen now is valid for 15 s from now');
    api.tamper((lease) => {
      (lease.spec as unknown as { renewTime: string }).renewTime = new Date(
        clock.now() - 3_600_000,
      ).toISOString();
    });
    await advance(clock, 14_000, [b]);
    assert.equal(b.elector.isLeader, false, 'a renewal restarts the wait');
    // It saw the change within a retry period (2 s) and waits 15 s from then: 1-3 s more.
    const waited = await timeUntil(clock, () => b.elector.isLeader, 10_000);
    assert.ok(waited > 1_000 && waited <= 3_000 + 2_000, `waited ${waited} more`);
    assert.equal(api.spec.leaseTransitions, 5);
    await b.elector.stop();
  });

  it('steps down when renewals fail until the renew deadline, before the lease expires', async () => {
    const api = new FakeLeaseApi();
    const clock = new FakeClock(1_000_000);
    const a = candidate('a', api, clock);
    await advance(clock, 4_100, [a]);
    const lastRenewal = Date.parse(String(api.spec.renewTime));
    api.failWith = 500;
    const calls = api.calls;
    await timeUntil(clock, () => a.stopped.length > 0, 15_000);
    await a.done;
    const [stop] = a.stopped;
    assert.ok(stop);
    assert.equal(stop.reason, 'lost');
    assert.equal(a.elector.isLeader, false);
    assert.equal(a.signals[0]?.aborted, true);
    const lostAfter = stop.at - lastRenewal;
    assert.ok(lostAfter >= 10_000 && lostAfter < 15_000, `stepped down ${lostAfter} ms after`);
    assert.ok(api.calls - calls >= 4, 'kept retrying within the deadline');
  });

  it('is no longer leader at the renew deadline even when its loop is stalled', async () => {
    const api = new FakeLeaseApi();
    const clock = new FakeClock(1_000_000);
    const a = candidate('a', api, clock);
    await clock.advanceAsync(0);
    assert.equal(a.elector.isLeader, true);
    clock.advance(10_000); // time passes, but no continuation runs
    assert.equal(a.elector.isLeader, false);
    await a.elector.stop();
  });

  it('steps down at once when the Lease names another holder', async () => {
    const api = new FakeLeaseApi();
    const clock = new FakeClock(1_000_000);
    const a = candidate('a', api, clock);
    await advance(clock, 3_000, [a]);
    api.tamper((lease) => {
      (lease.spec as unknown as { holderIdentity: string }).holderIdentity = 'intruder';
    });
    const waited = await timeUntil(clock, () => a.stopped.length > 0, 15_000);
    assert.ok(waited <= 2_000, `stepped down after ${waited}`);
    assert.equal(a.stopped[0]?.reason, 'lost');
    assert.deepEqual(a.newLeaders, ['a', 'intruder']);
    assert.equal(api.spec.holderIdentity, 'intruder', 'and did not overwrite it');
  });

  it('releases the Lease so that a standby takes over within a retry period', async () => {
    const api = new FakeLeaseApi();
    const clock = new FakeClock(1_000_000);
    const a = candidate('a', api, clock);
    await clock.advanceAsync(0);
    const b = candidate('b', api, clock);
    await advance(clock, 3_000, [a, b]);
    assert.equal(await a.elector.release(), true);
    assert.equal(api.spec.holderIdentity, '');
    assert.equal(api.spec.leaseDurationSeconds, 1);
    assert.equal(a.stopped[0]?.reason, 'stopped');
    const waited = await timeUntil(clock, () => b.elector.isLeader, 15_000, [a, b]);
    assert.ok(waited <= 2_000, `took over after ${waited}`);
    assert.equal(api.spec.leaseTransitions, 1);
    assert.equal(api.spec.leaseDurationSeconds, 15);
    await b.elector.stop();
  });

  it('does not release a Lease that another candidate holds', async () => {
    const api = new FakeLeaseApi();
    const clock = new FakeClock(1_000_000);
    const a = candidate('a', api, clock);
    await clock.advanceAsync(0);
    const b = candidate('b', api, clock);
    await advance(clock, 1_000, [a, b]);
    assert.equal(await b.elector.release(), true);
    assert.equal(api.spec.holderIdentity, 'a');
    await a.elector.stop();
  });

  it('lets exactly one of several simultaneous candidates win', async () => {
    const api = new FakeLeaseApi();
    const clock = new FakeClock(1_000_000);
    const all = ['a', 'b', 'c'].map((id) => candidate(id, api, clock));
    await advance(clock, 10_000, all);
    assert.equal(all.filter((c) => c.elector.isLeader).length, 1);
    assert.equal(all.find((c) => c.elector.isLeader)?.elector.identity, api.spec.holderIdentity);
    await Promise.all(all.map((c) => c.elector.stop()));
  });

  it('logs a callback that throws and goes on leading', async () => {
    const api = new FakeLeaseApi();
    const clock = new FakeClock(1_000_000);
    const logger = new MemoryLogger();
    const a = candidate('a', api, clock, {
      logger,
      onStartedLeading: () => Promise.reject(new Error('boom')),
      onNewLeader: () => {
        throw new Error('bang');
      },
    });
    await advance(clock, 3_000, [a]);
    assert.equal(a.elector.isLeader, true);
    const errors = logger.lines.filter((line) => line.level === 'error').map((line) => line.msg);
    assert.deepEqual(errors.sort(), ['onNewLeader failed', 'onStartedLeading failed']);
    await a.elector.stop();
  });

  it('refuses to run twice at once, and runs again after stopping', async () => {
    const api = new FakeLeaseApi();
    const clock = new FakeClock(1_000_000);
    const a = candidate('a', api, clock);
    await assert.rejects(a.elector.run(), /already running/);
    await clock.advanceAsync(0);
    await a.elector.stop();
    assert.equal(a.elector.isLeader, false);
    a.done = a.elector.run();
    await clock.advanceAsync(0);
    assert.equal(a.elector.isLeader, true, 'it still holds the Lease and renews it');
    assert.equal(api.spec.leaseTransitions, 0);
    await a.elector.stop();
  });

  it('rejects timings that cannot be safe', () => {
    const api = new FakeLeaseApi();
    const make = (timing: Partial<LeaderElectorOptions>) =>
      new LeaderElector({ api, namespace: NAMESPACE, name: NAME, ...timing });
    assert.throws(() => make({ leaseDurationMs: 1_500 }), /whole number of seconds/);
    assert.throws(() => make({ leaseDurationMs: 5_000, renewDeadlineMs: 5_000 }), /renewDeadline/);
    assert.throws(() => make({ renewDeadlineMs: 2_000, retryPeriodMs: 2_000 }), /retryPeriod/);
    assert.match(make({}).identity, /^.+_[0-9a-f-]{36}$/);
  });
});
