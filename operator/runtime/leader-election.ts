/**
 * Leader election over a `coordination.k8s.io/v1` Lease, modelled on client-go's
 * `tools/leaderelection`: candidates poll the Lease, the holder renews it every retry period, and a
 * standby takes it over once it has seen no change to the record for a whole lease duration.
 * Expiry is judged by the local clock from the moment a change was observed, never from the
 * Lease's own timestamps, so that clock skew between replicas cannot shorten a lease.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';

import {
  ApiException,
  V1MicroTime,
  type CoordinationV1Api,
  type V1Lease,
  type V1LeaseSpec,
} from '@kubernetes/client-node';

import { REAL_CLOCK, type Clock } from './clock.js';
import {
  describeError,
  silentLogger,
  withSignal,
  type EventRecorder,
  type Logger,
} from './events.js';

/** The calls on a Lease that the elector makes; a `CoordinationV1Api` has them. */
export type LeaseApi = Pick<
  CoordinationV1Api,
  'readNamespacedLease' | 'createNamespacedLease' | 'replaceNamespacedLease'
>;

/** Why leadership ended: `lost` when it could not be kept, `stopped` after {@link LeaderElector.stop}. */
export type StoppedLeadingReason = 'lost' | 'stopped';

/** What the elector reports; exceptions thrown by a callback are logged and otherwise ignored. */
export interface LeaderCallbacks {
  /**
   * This candidate now leads. `signal` aborts when it stops leading: work started here should end
   * with it. Not awaited.
   */
  readonly onStartedLeading?: (signal: AbortSignal) => void | Promise<void>;
  /**
   * This candidate stopped leading. Unlike client-go, it is not called when the candidate never
   * led. On `lost` another replica may already lead: an operator should exit at once, as
   * controller-runtime does.
   */
  readonly onStoppedLeading?: (reason: StoppedLeadingReason) => void;
  /** A candidate (this one included) was seen holding the Lease; not called for an empty holder. */
  readonly onNewLeader?: (identity: string) => void;
}

/** Options of {@link LeaderElector}. */
export interface LeaderElectorOptions extends LeaderCallbacks {
  readonly api: LeaseApi;
  readonly namespace: string;
  /** The Lease's name, shared by all candidates. */
  readonly name: string;
  /** Unique per candidate; default `<hostname>_<random UUID>`. */
  readonly identity?: string;
  /**
   * How long a standby waits, after it last saw the record change, before taking the Lease over.
   * Whole seconds, as the Lease stores seconds. Default 15 s.
   */
  readonly leaseDurationMs?: number;
  /**
   * How long the leader keeps trying to renew, counted from the start of its last successful
   * renewal, before it steps down. Less than the lease duration. Default 10 s.
   */
  readonly renewDeadlineMs?: number;
  /** Pause between attempts to acquire or renew. Default 2 s. */
  readonly retryPeriodMs?: number;
  /** Acquire attempts wait `retryPeriod * (1 + jitter * random())`; default 1.2 as in client-go. */
  readonly jitterFactor?: number;
  readonly logger?: Logger;
  /** If given, `LeaderElection` Events about the Lease say who became leader and who stopped. */
  readonly events?: EventRecorder;
  /** Time and timers; a `FakeClock` in tests. */
  readonly clock?: Clock;
  /** For the jitter; injectable for tests. */
  readonly random?: () => number;
}

/** The part of a LeaseSpec that the election reads and writes. */
interface LeaderRecord {
  readonly holderIdentity: string;
  readonly leaseDurationSeconds: number;
  readonly acquireTime: V1MicroTime | string | undefined;
  readonly renewTime: V1MicroTime | string | undefined;
  readonly leaseTransitions: number;
}

/**
 * Elects one leader among the replicas that run a `LeaderElector` on the same Lease. Call
 * {@link run} once; it resolves when this candidate stops leading or is stopped.
 *
 * ```ts
 * const elector = new LeaderElector({
 *   api: kubeConfig.makeApiClient(CoordinationV1Api),
 *   namespace: 'compofa-system',
 *   name: 'compofa-operator',
 *   onStartedLeading: (signal) => controllers.start(signal),
 *   onStoppedLeading: (reason) => { if (reason === 'lost') process.exit(1); },
 * });
 * void elector.run();
 * // on SIGTERM: await controllers.stopped; await elector.release();
 * ```
 */
export class LeaderElector {
  /** This candidate's holderIdentity. */
  readonly identity: string;
  readonly leaseDurationMs: number;
  readonly renewDeadlineMs: number;
  readonly retryPeriodMs: number;

  private readonly api: LeaseApi;
  private readonly namespace: string;
  private readonly name: string;
  private readonly callbacks: LeaderCallbacks;
  private readonly jitterFactor: number;
  private readonly logger: Logger;
  private readonly events: EventRecorder | undefined;
  private readonly clock: Clock;
  private readonly random: () => number;

  /** The Lease as last read or written, for its resourceVersion. */
  private lease: V1Lease | undefined;
  private observedRecord: LeaderRecord | undefined;
  /** The record as last read from the server, to notice changes. */
  private observedRaw = '';
  /** Local time when the record was last seen to change. */
  private observedTime = 0;
  private reportedLeader = '';
  private leading = false;
  /** Start of the last successful acquire or renew request. */
  private renewedAt = 0;
  private stopping = new AbortController();
  private running: Promise<void> | undefined;

  constructor(options: LeaderElectorOptions) {
    this.api = options.api;
    this.namespace = options.namespace;
    this.name = options.name;
    this.identity = options.identity ?? `${hostname()}_${randomUUID()}`;
    this.leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = options.retryPeriodMs ?? 2_000;
    this.jitterFactor = options.jitterFactor ?? 1.2;
    this.callbacks = options;
    this.logger = options.logger ?? silentLogger;
    this.events = options.events;
    this.clock = options.clock ?? REAL_CLOCK;
    this.random = options.random ?? Math.random;
    if (!this.identity) throw new RangeError('identity must not be empty');
    if (this.leaseDurationMs < 1_000 || this.leaseDurationMs % 1_000 !== 0)
      throw new RangeError('leaseDurationMs must be a whole number of seconds');
    if (this.renewDeadlineMs >= this.leaseDurationMs)
      throw new RangeError('renewDeadlineMs must be less than leaseDurationMs');
    if (this.retryPeriodMs <= 0 || this.retryPeriodMs >= this.renewDeadlineMs)
      throw new RangeError('retryPeriodMs must be positive and less than renewDeadlineMs');
  }

  /**
   * True while this candidate leads. It turns false at the renew deadline even before the loop
   * notices, so a stalled event loop cannot make it claim a lease that may have expired.
   */
  get isLeader(): boolean {
    return this.leading && this.clock.now() < this.renewedAt + this.renewDeadlineMs;
  }

  /** The holder of the Lease as last observed; `undefined` before the first read. */
  get leader(): string | undefined {
    return this.observedRecord?.holderIdentity || undefined;
  }

  /**
   * Tries to acquire the Lease every retry period until it succeeds, then renews it until renewal
   * fails for the renew deadline or {@link stop} is called. Resolves when that loop ends; never
   * rejects.
   */
  run(): Promise<void> {
    if (this.running) return Promise.reject(new Error('this LeaderElector is already running'));
    this.stopping = new AbortController();
    const running = this.loop().finally(() => {
      this.running = undefined;
    });
    this.running = running;
    return running;
  }

  /**
   * Ends the loop, aborting a request in flight, and resolves once it has ended and
   * `onStoppedLeading` was called. Leaves the Lease as it is, so that to the other candidates it
   * looks like a crash: they take over when it expires. See {@link release}.
   */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.running;
  }

  /**
   * Stops, then gives the Lease up if this candidate holds it (empty holderIdentity,
   * leaseDurationSeconds 1; client-go's ReleaseOnCancel) so that a standby takes over within a
   * retry period. Call it on graceful shutdown after the work begun in `onStartedLeading` has
   * ended. Resolves with false if the Lease could not be written (it then expires as usual).
   */
  async release(): Promise<boolean> {
    await this.stop();
    const observed = this.observedRecord;
    if (observed?.holderIdentity !== this.identity) return true;
    const now = new V1MicroTime(this.clock.now());
    const record: LeaderRecord = {
      holderIdentity: '',
      leaseDurationSeconds: 1,
      acquireTime: now,
      renewTime: now,
      leaseTransitions: observed.leaseTransitions,
    };
    try {
      await this.update(record, AbortSignal.timeout(this.renewDeadlineMs));
    } catch (error) {
      this.logger.error('failed to release the leader election lease', {
        ...this.fields(),
        error: describeError(error),
      });
      return false;
    }
    this.logger.info('released the leader election lease', this.fields());
    return true;
  }

  private async loop(): Promise<void> {
    try {
      if (!(await this.acquire())) return;
      this.leading = true;
      const leadership = new AbortController();
      this.logger.info('became leader', this.fields());
      this.recordEvent('BecameLeader', `${this.identity} became leader`);
      this.invoke('onStartedLeading', () => this.callbacks.onStartedLeading?.(leadership.signal));
      const reason = await this.renew();
      this.leading = false;
      leadership.abort();
      this.logger[reason === 'lost' ? 'error' : 'info'](
        reason === 'lost' ? 'lost leadership' : 'stopped leading',
        this.fields(),
      );
      this.recordEvent('StoppedLeading', `${this.identity} stopped leading`);
      this.invoke('onStoppedLeading', () => this.callbacks.onStoppedLeading?.(reason));
    } catch (error) {
      // Only a bug gets here: the requests' errors are handled where they are made.
      this.leading = false;
      this.logger.error('leader election failed', { ...this.fields(), error: String(error) });
    }
  }

  /** Resolves with true once the Lease is ours, false when stopped first. */
  private async acquire(): Promise<boolean> {
    const signal = this.stopping.signal;
    this.logger.info('trying to acquire the leader election lease', this.fields());
    while (!this.isStopped()) {
      const started = this.clock.now();
      const acquired = await this.tryAcquireOrRenew(this.requestSignal(this.renewDeadlineMs));
      this.reportTransition();
      if (acquired && !this.isStopped()) {
        this.renewedAt = started;
        return true;
      }
      const jitter = 1 + this.jitterFactor * this.random();
      await sleep(this.clock, this.retryPeriodMs * jitter, signal);
    }
    return false;
  }

  /** Renews every retry period; resolves when leadership ends. */
  private async renew(): Promise<StoppedLeadingReason> {
    const signal = this.stopping.signal;
    for (;;) {
      await sleep(this.clock, this.retryPeriodMs, signal);
      for (;;) {
        if (this.isStopped()) return 'stopped';
        const started = this.clock.now();
        // Measured from the start of the last success: a standby can have seen that write no
        // earlier, so it waits at least a lease duration from then, longer than this deadline.
        const remaining = this.renewedAt + this.renewDeadlineMs - started;
        if (remaining <= 0) return 'lost';
        const renewed = await this.tryAcquireOrRenew(this.requestSignal(remaining));
        this.reportTransition();
        if (this.isStopped()) return 'stopped';
        if (renewed) {
          this.renewedAt = started;
          break;
        }
        // client-go retries until the deadline even then; another holder means the lease is gone.
        const holder = this.observedRecord?.holderIdentity;
        if (holder && holder !== this.identity) return 'lost';
        await sleep(
          this.clock,
          Math.min(this.retryPeriodMs, this.renewedAt + this.renewDeadlineMs - this.clock.now()),
          signal,
        );
      }
    }
  }

  /** client-go's tryAcquireOrRenew: true when the Lease names this candidate afterwards. */
  private async tryAcquireOrRenew(signal: AbortSignal): Promise<boolean> {
    const now = this.clock.now();
    const observed = this.observedRecord;
    const holding = observed?.holderIdentity === this.identity;
    const fresh: LeaderRecord = {
      holderIdentity: this.identity,
      leaseDurationSeconds: this.leaseDurationMs / 1_000,
      acquireTime: new V1MicroTime(now),
      renewTime: new V1MicroTime(now),
      leaseTransitions: 0,
    };

    // 1. The leader's fast path: update with the resourceVersion of its own last write.
    if (observed && holding && this.isLeaseValid(now)) {
      try {
        await this.update(
          {
            ...fresh,
            acquireTime: observed.acquireTime,
            leaseTransitions: observed.leaseTransitions,
          },
          signal,
        );
        return true;
      } catch (error) {
        this.logger.warn('failed to renew the lease optimistically, reading it', {
          ...this.fields(),
          error: describeError(error),
        });
      }
    }

    // 2. Read the Lease, or create it.
    let current: V1Lease;
    try {
      current = await this.api.readNamespacedLease(
        { name: this.name, namespace: this.namespace },
        withSignal(signal),
      );
    } catch (error) {
      if (!(error instanceof ApiException && error.code === 404)) {
        this.logger.warn('failed to read the leader election lease', {
          ...this.fields(),
          error: describeError(error),
        });
        return false;
      }
      try {
        const created = await this.api.createNamespacedLease(
          {
            namespace: this.namespace,
            body: {
              apiVersion: 'coordination.k8s.io/v1',
              kind: 'Lease',
              metadata: { name: this.name, namespace: this.namespace },
              spec: toSpec(fresh),
            },
          },
          withSignal(signal),
        );
        this.observe(created);
        return true;
      } catch (createError) {
        // 409: another candidate created it first.
        this.logger.debug('failed to create the leader election lease', {
          ...this.fields(),
          error: describeError(createError),
        });
        return false;
      }
    }

    // 3. Restart the expiry clock whenever the record changed since the last read.
    this.lease = current;
    const record = toRecord(current);
    const raw = JSON.stringify(record);
    if (raw !== this.observedRaw) {
      this.observedRecord = record;
      this.observedRaw = raw;
      this.observedTime = this.clock.now();
    }
    if (record.holderIdentity && record.holderIdentity !== this.identity && this.isLeaseValid(now))
      return false;

    // 4. Take it over (or renew it on the slow path).
    const ours = record.holderIdentity === this.identity;
    try {
      await this.update(
        ours
          ? { ...fresh, acquireTime: record.acquireTime, leaseTransitions: record.leaseTransitions }
          : { ...fresh, leaseTransitions: record.leaseTransitions + 1 },
        signal,
      );
    } catch (error) {
      // 409: someone else wrote the Lease since it was read, and won this round.
      this.logger.debug('failed to update the leader election lease', {
        ...this.fields(),
        error: describeError(error),
      });
      return false;
    }
    return true;
  }

  /** Replaces the Lease, conditional on the resourceVersion last seen. */
  private async update(record: LeaderRecord, signal: AbortSignal): Promise<void> {
    const lease = this.lease;
    if (!lease) throw new Error('the Lease has not been read yet');
    const updated = await this.api.replaceNamespacedLease(
      {
        name: this.name,
        namespace: this.namespace,
        body: {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: lease.metadata,
          spec: toSpec(record, lease.spec),
        },
      },
      withSignal(signal),
    );
    this.observe(updated);
  }

  /** Records a Lease this candidate wrote: what it wrote is the newest change. */
  private observe(lease: V1Lease): void {
    this.lease = lease;
    this.observedRecord = toRecord(lease);
    this.observedRaw = JSON.stringify(this.observedRecord);
    this.observedTime = this.clock.now();
  }

  /** A method, not a field read, so that TypeScript does not assume it unchanged across awaits. */
  private isStopped(): boolean {
    return this.stopping.signal.aborted;
  }

  private isLeaseValid(now: number): boolean {
    const seconds = this.observedRecord?.leaseDurationSeconds ?? 0;
    return this.observedTime + seconds * 1_000 > now;
  }

  private reportTransition(): void {
    const holder = this.observedRecord?.holderIdentity ?? '';
    if (!holder || holder === this.reportedLeader) return;
    this.reportedLeader = holder;
    this.logger.info('new leader observed', { ...this.fields(), leader: holder });
    this.invoke('onNewLeader', () => this.callbacks.onNewLeader?.(holder));
  }

  /** Aborts when stopped or after `timeoutMs`, whichever is first. */
  private requestSignal(timeoutMs: number): AbortSignal {
    return AbortSignal.any([this.stopping.signal, AbortSignal.timeout(Math.max(timeoutMs, 1))]);
  }

  /** client-go's Lock.RecordEvent. */
  private recordEvent(action: string, note: string): void {
    const uid = this.lease?.metadata?.uid;
    this.events?.normal(
      {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        name: this.name,
        namespace: this.namespace,
        ...(uid && { uid }),
      },
      'LeaderElection',
      action,
      note,
    );
  }

  private invoke(callback: keyof LeaderCallbacks, call: () => unknown): void {
    const report = (error: unknown): void => {
      this.logger.error(`${callback} failed`, { ...this.fields(), error: String(error) });
    };
    try {
      const result = call();
      if (result instanceof Promise) result.catch(report);
    } catch (error) {
      report(error);
    }
  }

  private fields(): Record<string, unknown> {
    return { lease: `${this.namespace}/${this.name}`, identity: this.identity };
  }
}

function toRecord(lease: V1Lease): LeaderRecord {
  const spec = lease.spec;
  return {
    holderIdentity: spec?.holderIdentity ?? '',
    leaseDurationSeconds: spec?.leaseDurationSeconds ?? 0,
    acquireTime: spec?.acquireTime,
    renewTime: spec?.renewTime,
    leaseTransitions: spec?.leaseTransitions ?? 0,
  };
}

/** The spec to write: `record`, and the coordinated-election fields of `current` unchanged. */
function toSpec(record: LeaderRecord, current?: V1LeaseSpec): V1LeaseSpec {
  // client-node passes MicroTime fields through as they are: V1MicroTime objects serialize with
  // microseconds, and the strings it read from the server go back unchanged.
  return {
    holderIdentity: record.holderIdentity,
    leaseDurationSeconds: record.leaseDurationSeconds,
    acquireTime: record.acquireTime as V1MicroTime | undefined,
    renewTime: record.renewTime as V1MicroTime | undefined,
    leaseTransitions: record.leaseTransitions,
    strategy: current?.strategy,
    preferredHolder: current?.preferredHolder,
  };
}

/** Resolves after `ms` on `clock`, or at once when `signal` aborts. */
function sleep(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const done = (): void => {
      clock.clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = clock.setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
