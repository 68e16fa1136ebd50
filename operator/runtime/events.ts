/**
 * Kubernetes Events (`events.k8s.io/v1`) about the objects the operator manages, as client-go's
 * `tools/events` writes them: one Event per occurrence, except that repeats of the same event on
 * the same object within 6 minutes become one Event whose `series` counts them.
 *
 * Recording never blocks and never throws: writes happen in the background and their failures are
 * logged. The note is stored in the cluster as given and is readable by anyone who may list
 * Events in the namespace: callers must pass text that holds no secrets (no credentials, tokens or
 * signed URLs, and no unfiltered error bodies that might echo them).
 */
import { hostname } from 'node:os';

import {
  ApiException,
  Observable,
  V1MicroTime,
  type ConfigurationOptions,
  type EventsV1Api,
  type ObservableMiddleware,
  type EventsV1Event,
  type KubernetesObject,
  type V1ObjectReference,
} from '@kubernetes/client-node';

import { REAL_CLOCK, type Clock } from './clock.js';

/** Structured logging as the operator's logger offers it. */
export interface Logger {
  debug(msg: string, fields?: Readonly<Record<string, unknown>>): void;
  info(msg: string, fields?: Readonly<Record<string, unknown>>): void;
  warn(msg: string, fields?: Readonly<Record<string, unknown>>): void;
  error(msg: string, fields?: Readonly<Record<string, unknown>>): void;
}

/** A {@link Logger} that drops everything. */
export const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

/** The `reportingController` of the operator's Events. */
export const REPORTING_CONTROLLER = 'compofa.io/operator';

/** The API server's limits (bytes) on an Event's fields. */
export const NOTE_LIMIT_BYTES = 1024;
const FIELD_LIMIT_BYTES = 128;

/** Repeats within this window of the previous occurrence join its series. */
export const SERIES_WINDOW_MS = 6 * 60_000;

export type EventType = 'Normal' | 'Warning';

/** An object an Event can be about: a full object (with apiVersion and kind set) or a reference. */
export type EventSubject = KubernetesObject | V1ObjectReference;

/** One occurrence to record. */
export interface EventSpec {
  readonly type: EventType;
  /** Why, in UpperCamelCase: `SubnetSelected`, `TrainingFailed`. At most 128 bytes. */
  readonly reason: string;
  /** What the operator did or failed to do: `Reconcile`, `CreateDeployment`. At most 128 bytes. */
  readonly action: string;
  /** Human-readable detail, free of secrets; truncated to 1 KiB. */
  readonly note: string;
  /** A second object involved, e.g. the Deployment created for the regarding object. */
  readonly related?: EventSubject;
}

/** The calls the recorder makes; an `EventsV1Api` has them. */
export type EventsApi = Pick<EventsV1Api, 'createNamespacedEvent' | 'patchNamespacedEvent'>;

/** Options of {@link EventRecorder}. */
export interface EventRecorderOptions {
  readonly api: EventsApi;
  /** Which replica reports: the pod name or leader-election identity; default the hostname. */
  readonly reportingInstance?: string;
  /** Default {@link REPORTING_CONTROLLER}. */
  readonly reportingController?: string;
  readonly logger?: Logger;
  /** Distinct series remembered for de-duplication, least recently seen dropped first. Default 4096. */
  readonly cacheSize?: number;
  /** A write still unanswered after this long is abandoned. Default 10 s. */
  readonly requestTimeoutMs?: number;
  /** Time; a `FakeClock` in tests. */
  readonly clock?: Clock;
}

/** The fields of an Event that stay the same over its series. */
interface EventFields {
  readonly type: EventType;
  readonly reason: string;
  readonly action: string;
  readonly note: string;
  readonly regarding: V1ObjectReference;
  readonly related: V1ObjectReference | undefined;
}

/** One Event and its occurrences so far. */
interface Series {
  readonly namespace: string;
  readonly fields: EventFields;
  /** The Event's name; a new one if it had to be created again. */
  name: string;
  /** When it was first observed. */
  readonly eventTime: number;
  count: number;
  lastObserved: number;
  /** Set once the Event exists on the server. */
  created: boolean;
  writing: boolean;
}

/**
 * Writes Events for the operator. {@link record} returns at once; {@link flush} awaits the writes
 * in flight, for tests and shutdown.
 */
export class EventRecorder {
  private readonly api: EventsApi;
  private readonly reportingController: string;
  private readonly reportingInstance: string;
  private readonly logger: Logger;
  private readonly cacheSize: number;
  private readonly requestTimeoutMs: number;
  private readonly clock: Clock;
  /** In insertion order, least recently seen first. */
  private readonly series = new Map<string, Series>();
  private readonly pending = new Set<Promise<void>>();
  private sequence = 0;

  constructor(options: EventRecorderOptions) {
    this.api = options.api;
    this.reportingController = options.reportingController ?? REPORTING_CONTROLLER;
    this.reportingInstance = truncateUtf8(
      options.reportingInstance ?? hostname(),
      FIELD_LIMIT_BYTES,
    );
    this.logger = options.logger ?? silentLogger;
    this.cacheSize = options.cacheSize ?? 4096;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.clock = options.clock ?? REAL_CLOCK;
  }

  /**
   * Records one occurrence of `event` about `regarding`, in the background. Never throws: an
   * Event that cannot be written is logged and dropped.
   */
  record(regarding: EventSubject, event: EventSpec): void {
    try {
      this.enqueue(regarding, event);
    } catch (error) {
      this.logger.error('failed to record an event', {
        reason: event.reason,
        error: String(error),
      });
    }
  }

  /** Shorthand for a `Normal` {@link record}. */
  normal(regarding: EventSubject, reason: string, action: string, note: string): void {
    this.record(regarding, { type: 'Normal', reason, action, note });
  }

  /** Shorthand for a `Warning` {@link record}. */
  warning(regarding: EventSubject, reason: string, action: string, note: string): void {
    this.record(regarding, { type: 'Warning', reason, action, note });
  }

  /** Resolves when every write begun so far, and any it queued, has finished. Never rejects. */
  async flush(): Promise<void> {
    while (this.pending.size > 0) await Promise.all(this.pending);
  }

  private enqueue(regarding: EventSubject, spec: EventSpec): void {
    const ref = toReference(regarding);
    if (!ref.kind || !ref.name) {
      this.logger.warn('not recording an event about an object without kind or name', {
        reason: spec.reason,
        regarding: ref,
      });
      return;
    }
    if (!/^[A-Z][A-Za-z0-9]*$/.test(spec.reason))
      this.logger.warn('event reason is not UpperCamelCase', { reason: spec.reason });
    const fields: EventFields = {
      type: spec.type,
      reason: truncateUtf8(spec.reason, FIELD_LIMIT_BYTES),
      action: truncateUtf8(spec.action, FIELD_LIMIT_BYTES),
      note: truncateUtf8(spec.note, NOTE_LIMIT_BYTES),
      regarding: ref,
      related: spec.related && toReference(spec.related),
    };
    const now = this.clock.now();
    const key = JSON.stringify([
      ref.uid ?? `${ref.apiVersion ?? ''}/${ref.kind}/${ref.namespace ?? ''}/${ref.name}`,
      fields.type,
      fields.reason,
      fields.action,
      fields.note,
      fields.related?.uid ?? fields.related?.name ?? '',
    ]);

    const existing = this.series.get(key);
    this.series.delete(key);
    if (existing && now - existing.lastObserved < SERIES_WINDOW_MS) {
      existing.count++;
      existing.lastObserved = now;
      this.series.set(key, existing);
      this.schedule(existing);
      return;
    }

    const namespace = ref.namespace || 'default';
    const series: Series = {
      namespace,
      fields,
      name: this.eventName(ref.name, now),
      eventTime: now,
      count: 1,
      lastObserved: now,
      created: false,
      writing: false,
    };
    this.series.set(key, series);
    for (const oldest of this.series.keys()) {
      if (this.series.size <= this.cacheSize) break;
      this.series.delete(oldest);
    }
    this.schedule(series);
  }

  /** One write at a time per series: occurrences during a write are folded into the next. */
  private schedule(series: Series): void {
    if (series.writing) return;
    series.writing = true;
    const write = this.write(series).finally(() => this.pending.delete(write));
    this.pending.add(write);
  }

  private async write(series: Series): Promise<void> {
    for (;;) {
      const count = series.count;
      const lastObserved = series.lastObserved;
      try {
        if (series.created) {
          await this.patchSeries(series, count, lastObserved);
        } else {
          await this.create(series, count, lastObserved);
        }
      } catch (error) {
        this.logger.warn('failed to write an event', {
          namespace: series.namespace,
          name: series.name,
          reason: series.fields.reason,
          error: describeError(error),
        });
      }
      if (series.count === count) {
        // Cleared here rather than in a continuation, so that no record() can slip in between.
        series.writing = false;
        return;
      }
    }
  }

  private async create(series: Series, count: number, lastObserved: number): Promise<void> {
    const { type, reason, action, note, regarding, related } = series.fields;
    const body: EventsV1Event = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: series.name, namespace: series.namespace },
      eventTime: new V1MicroTime(series.eventTime),
      type,
      reason,
      action,
      note,
      regarding,
      related,
      reportingController: this.reportingController,
      reportingInstance: this.reportingInstance,
      // The API server rejects a series with a count below 2.
      series: count > 1 ? { count, lastObservedTime: new V1MicroTime(lastObserved) } : undefined,
    };
    await this.api.createNamespacedEvent(
      { namespace: series.namespace, body },
      withSignal(AbortSignal.timeout(this.requestTimeoutMs)),
    );
    series.created = true;
  }

  private async patchSeries(series: Series, count: number, lastObserved: number): Promise<void> {
    const name = series.name;
    try {
      // client-node sends a JSON Patch by default; `add` replaces the series if present.
      await this.api.patchNamespacedEvent(
        {
          name,
          namespace: series.namespace,
          body: [
            {
              op: 'add',
              path: '/series',
              value: { count, lastObservedTime: new V1MicroTime(lastObserved) },
            },
          ],
        },
        withSignal(AbortSignal.timeout(this.requestTimeoutMs)),
      );
    } catch (error) {
      // Deleted meanwhile (the API server's event TTL is 1 h by default): write it anew.
      if (!(error instanceof ApiException && error.code === 404)) throw error;
      series.name = this.eventName(series.fields.regarding.name ?? '', this.clock.now());
      await this.create(series, count, lastObserved);
    }
  }

  /** client-go's `<regarding name>.<hex timestamp>`, kept unique within this process. */
  private eventName(regardingName: string, now: number): string {
    const stamp = (BigInt(now) * 1_000_000n + BigInt(this.sequence++ % 1_000_000)).toString(16);
    // Some kinds allow names (`system:auth-delegator`) that are not valid Event names.
    const prefix = regardingName.toLowerCase().replace(/[^a-z0-9.-]/g, '-');
    return `${prefix.slice(0, 253 - stamp.length - 1)}.${stamp}`;
  }
}

/** The `regarding`/`related` reference of an object or reference. */
export function toReference(subject: EventSubject): V1ObjectReference {
  if (!('metadata' in subject) || subject.metadata === undefined) {
    const { apiVersion, kind, name, namespace, uid, resourceVersion, fieldPath } =
      subject as V1ObjectReference;
    return strip({ apiVersion, kind, name, namespace, uid, resourceVersion, fieldPath });
  }
  const meta = subject.metadata;
  return strip({
    apiVersion: subject.apiVersion,
    kind: subject.kind,
    name: meta.name,
    namespace: meta.namespace,
    uid: meta.uid,
    resourceVersion: meta.resourceVersion,
  });
}

/** Cuts `text` to at most `maxBytes` of UTF-8, ending in `...` when cut, never mid-character. */
export function truncateUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  const budget = maxBytes - 3;
  let bytes = 0;
  let end = 0;
  for (const char of text) {
    const size = Buffer.byteLength(char);
    if (bytes + size > budget) break;
    bytes += size;
    end += char.length;
  }
  return `${text.slice(0, end)}...`;
}

/** Leaves out empty fields, which the API server would store as given. */
function strip(ref: V1ObjectReference): V1ObjectReference {
  return Object.fromEntries(
    Object.entries(ref).filter(([, value]) => value !== undefined && value !== ''),
  );
}

/** Per-call options that make client-node abort the request when `signal` aborts. */
export function withSignal(signal: AbortSignal): ConfigurationOptions {
  const middleware: ObservableMiddleware = {
    pre: (context) => {
      context.setSignal(signal);
      return new Observable(Promise.resolve(context));
    },
    post: (response) => new Observable(Promise.resolve(response)),
  };
  return { middleware: [middleware], middlewareMergeStrategy: 'append' };
}

/** An error of a client-node call in one line: the HTTP status and the API server's message. */
export function describeError(error: unknown): string {
  if (!(error instanceof ApiException))
    return error instanceof Error ? error.message : String(error);
  const body: unknown = error.body;
  let message: unknown = body;
  if (typeof body === 'string') {
    try {
      message = (JSON.parse(body) as { message?: unknown }).message ?? body;
    } catch {
      message = body;
    }
  } else if (body && typeof body === 'object' && 'message' in body) {
    message = body.message;
  }
  return `HTTP ${error.code}: ${typeof message === 'string' ? message : JSON.stringify(message)}`;
}
