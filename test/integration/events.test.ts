import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import type { KubeConfig } from '@kubernetes/client-node';
import {
  CoreV1Api,
  EventsV1Api,
  RbacAuthorizationV1Api,
  type EventsV1Event,
  type V1ConfigMap,
} from '@kubernetes/client-node';

import { FakeClock } from '../../operator/runtime/clock.js';
import {
  EventRecorder,
  NOTE_LIMIT_BYTES,
  REPORTING_CONTROLLER,
  SERIES_WINDOW_MS,
  type Logger,
} from '../../operator/runtime/events.js';
import { ControlPlane } from '../harness/control-plane.js';

const NAMESPACE = 'events';
const MICRO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;

/** Keeps what it is given, to assert on. */
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

describe('Events recorded against the API server', () => {
  let plane: ControlPlane;
  let admin: KubeConfig;
  let core: CoreV1Api;
  let events: EventsV1Api;
  let logger: MemoryLogger;
  let recorder: EventRecorder;

  before(async () => {
    plane = await ControlPlane.start();
    admin = plane.kubeConfig();
    core = admin.makeApiClient(CoreV1Api);
    events = admin.makeApiClient(EventsV1Api);
    await plane.createNamespace(NAMESPACE);
    logger = new MemoryLogger();
    recorder = new EventRecorder({ api: events, reportingInstance: 'operator-0', logger });
  });
  after(async () => {
    await plane.stop();
  });

  const configMap = (name: string): Promise<V1ConfigMap> =>
    core.createNamespacedConfigMap({
      namespace: NAMESPACE,
      body: { metadata: { name }, data: { key: 'value' } },
    });

  /** The Events about `uid`, oldest first, read through events.k8s.io/v1. */
  async function eventsAbout(uid: string | undefined, namespace = NAMESPACE) {
    assert.ok(uid);
    const list = await events.listNamespacedEvent({ namespace });
    return list.items
      .filter((event) => event.regarding?.uid === uid)
      .sort((a, b) => String(a.eventTime).localeCompare(String(b.eventTime)));
  }

  /** The one Event about `uid`. */
  async function onlyEventAbout(uid: string | undefined): Promise<EventsV1Event> {
    const found = await eventsAbout(uid);
    assert.equal(found.length, 1, JSON.stringify(found, null, 1));
    const [event] = found;
    assert.ok(event);
    return event;
  }

  it('writes an Event with the regarding object, type, reason, note, action and reporter', async () => {
    const subject = await configMap('plain');
    assert.equal(subject.kind, 'ConfigMap', 'a created object comes back with its kind');
    const before = Date.now();
    recorder.record(subject, {
      type: 'Normal',
      reason: 'Configured',
      action: 'Reconcile',
      note: 'configured 1 key',
    });
    await recorder.flush();

    const event = await onlyEventAbout(subject.metadata?.uid);
    assert.equal(event.type, 'Normal');
    assert.equal(event.reason, 'Configured');
    assert.equal(event.action, 'Reconcile');
    assert.equal(event.note, 'configured 1 key');
    assert.equal(event.reportingController, REPORTING_CONTROLLER);
    assert.equal(event.reportingInstance, 'operator-0');
    assert.deepEqual(JSON.parse(JSON.stringify(event.regarding)), {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      name: 'plain',
      namespace: NAMESPACE,
      uid: subject.metadata?.uid,
      resourceVersion: subject.metadata?.resourceVersion,
    });
    assert.equal(event.series, undefined);
    assert.match(event.metadata?.name ?? '', /^plain\.[0-9a-f]+$/);
    // client-node hands MicroTime fields back as the server's strings.
    const eventTime = String(event.eventTime);
    assert.match(eventTime, MICRO_TIME);
    const at = Date.parse(eventTime);
    assert.ok(at >= before - 1 && at <= Date.now(), eventTime);
  });

  it('counts repeats of the same event in one Event series, and starts another for a new reason', async (t) => {
    const subject = await configMap('repeated');
    const failing = {
      type: 'Warning',
      reason: 'InvalidSpec',
      action: 'Reconcile',
      note: 'spec.latencyBudgetMs must be positive',
    } as const;
    // One by one: a create, then two series updates.
    for (let i = 0; i < 3; i++) {
      recorder.record(subject, failing);
      await recorder.flush();
    }
    const series = await onlyEventAbout(subject.metadata?.uid);
    assert.ok(series.series);
    assert.equal(series.series.count, 3);
    const lastObserved = String(series.series.lastObservedTime);
    assert.match(lastObserved, MICRO_TIME);
    assert.ok(lastObserved > String(series.eventTime), 'lastObservedTime is the third occurrence');
    const legacy = await core.readNamespacedEvent({
      name: series.metadata?.name ?? '',
      namespace: NAMESPACE,
    });
    t.diagnostic(
      `the series through core/v1: ${JSON.stringify({ count: legacy.count, series: legacy.series, firstTimestamp: legacy.firstTimestamp, lastTimestamp: legacy.lastTimestamp, source: legacy.source, involvedObject: legacy.involvedObject })}`,
    );

    // Many at once: folded into as few writes as the API server's latency allows.
    for (let i = 0; i < 5; i++) recorder.record(subject, failing);
    await recorder.flush();
    assert.equal((await onlyEventAbout(subject.metadata?.uid)).series?.count, 8);

    recorder.record(subject, { ...failing, reason: 'Recovered', type: 'Normal' });
    recorder.record(subject, { ...failing, note: 'spec.replicas must be at most 10' });
    await recorder.flush();
    const all = await eventsAbout(subject.metadata?.uid);
    assert.deepEqual(all.map((e) => [e.reason, e.note, e.series?.count]).sort(), [
      ['InvalidSpec', 'spec.latencyBudgetMs must be positive', 8],
      ['InvalidSpec', 'spec.replicas must be at most 10', undefined],
      ['Recovered', 'spec.latencyBudgetMs must be positive', undefined],
    ]);
  });

  it('starts a new Event after 6 minutes without a repeat, or when the series was forgotten', async () => {
    const clock = new FakeClock(Date.now());
    const timed = new EventRecorder({ api: events, clock, cacheSize: 2 });
    const subject = await configMap('windowed');
    const uid = subject.metadata?.uid;
    const repeat = (reason: string): Promise<void> => {
      timed.warning(subject, reason, 'Reconcile', 'still failing');
      return timed.flush();
    };
    await repeat('Stuck');
    clock.advance(SERIES_WINDOW_MS - 1);
    await repeat('Stuck');
    clock.advance(SERIES_WINDOW_MS - 1);
    await repeat('Stuck');
    assert.deepEqual(
      (await eventsAbout(uid)).map((e) => e.series?.count),
      [3],
      'each repeat came within 6 minutes of the one before',
    );
    clock.advance(SERIES_WINDOW_MS);
    await repeat('Stuck');
    assert.deepEqual(
      (await eventsAbout(uid)).map((e) => e.series?.count),
      [3, undefined],
    );

    // The cache holds two series: a third pushes out the least recently seen.
    await repeat('Blocked');
    await repeat('Stuck');
    await repeat('Waiting');
    await repeat('Stuck');
    await repeat('Blocked');
    const counts = (await eventsAbout(uid)).map((e) => `${e.reason ?? ''}:${e.series?.count ?? 1}`);
    assert.deepEqual(counts.sort(), ['Blocked:1', 'Blocked:1', 'Stuck:3', 'Stuck:3', 'Waiting:1']);
  });

  it('shows the Events in kubectl describe of the object', async (t) => {
    const subject = await configMap('described');
    recorder.record(subject, {
      type: 'Normal',
      reason: 'SubnetSelected',
      action: 'Reconcile',
      note: 'selected subnet d2-e4-k5 for target edge',
    });
    for (let i = 0; i < 3; i++) {
      recorder.warning(
        subject,
        'BudgetTooTight',
        'Reconcile',
        'no subnet meets 1 ms on target edge',
      );
      await recorder.flush();
    }
    const { stdout } = await plane.kubectl(['describe', 'configmap', 'described', '-n', NAMESPACE]);
    t.diagnostic(stdout);
    const section = stdout.slice(stdout.indexOf('Events:'));
    assert.match(section, /Type\s+Reason\s+Age\s+From\s+Message/);
    assert.match(
      section,
      /Normal\s+SubnetSelected\s+\S+\s+compofa\.io\/operator\s+selected subnet d2-e4-k5 for target edge/,
    );
    assert.match(
      section,
      /Warning\s+BudgetTooTight\s+\S+ \(x3 over \S+\)\s+compofa\.io\/operator\s+no subnet meets 1 ms on target edge/,
    );
  });

  it('truncates a long note to 1 KiB of UTF-8, which the API server accepts', async () => {
    const subject = await configMap('long-note');
    recorder.normal(subject, 'Trained', 'Train', 'é'.repeat(2_000));
    await recorder.flush();
    const note = (await onlyEventAbout(subject.metadata?.uid)).note ?? '';
    assert.ok(Buffer.byteLength(note) <= NOTE_LIMIT_BYTES, `${Buffer.byteLength(note)} bytes`);
    assert.ok(Buffer.byteLength(note) > NOTE_LIMIT_BYTES - 4);
    assert.match(note, /^é+\.\.\.$/);
  });

  it('records a new Event, keeping the count, when the series Event was deleted', async () => {
    const subject = await configMap('deleted');
    recorder.warning(subject, 'Retrying', 'Reconcile', 'waiting for the Deployment');
    await recorder.flush();
    const first = await onlyEventAbout(subject.metadata?.uid);
    await events.deleteNamespacedEvent({ name: first.metadata?.name ?? '', namespace: NAMESPACE });
    recorder.warning(subject, 'Retrying', 'Reconcile', 'waiting for the Deployment');
    await recorder.flush();
    const second = await onlyEventAbout(subject.metadata?.uid);
    assert.notEqual(second.metadata?.name, first.metadata?.name);
    assert.equal(second.series?.count, 2);
    assert.equal(String(second.eventTime), String(first.eventTime), 'the series began earlier');
  });

  it('records Events about cluster-scoped objects in the default namespace', async () => {
    const namespace = await core.readNamespace({ name: NAMESPACE });
    recorder.normal(namespace, 'Watched', 'Watch', 'the operator watches this namespace');
    await recorder.flush();
    const found = await eventsAbout(namespace.metadata?.uid, 'default');
    assert.equal(found.length, 1);
    assert.equal(found[0]?.regarding?.kind, 'Namespace');
  });

  it('never throws into the caller, and logs the Events it could not write', async () => {
    const local = new MemoryLogger();
    const unlucky = new EventRecorder({ api: events, logger: local });
    // No such namespace: the API server answers 404.
    const ghost = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'ghost', namespace: 'no-such-namespace', uid: 'u-1' },
    };
    assert.doesNotThrow(() => {
      unlucky.normal(ghost, 'Configured', 'Reconcile', 'lost');
    });
    // An object without a kind cannot be described by kubectl: refused, with a warning.
    unlucky.normal({ metadata: { name: 'x', namespace: NAMESPACE } }, 'Configured', 'Do', 'x');
    // An API object that throws on every call.
    const broken = new EventRecorder({
      api: {
        createNamespacedEvent: () => {
          throw new Error('synchronous failure');
        },
        patchNamespacedEvent: () => Promise.reject(new Error('unused')),
      },
      logger: local,
    });
    assert.doesNotThrow(() => {
      broken.warning(ghost, 'Failed', 'Reconcile', 'x');
    });
    await Promise.all([unlucky.flush(), broken.flush()]);
    const warnings = local.lines.filter((line) => line.level === 'warn');
    assert.deepEqual(
      warnings.map((line) => line.msg),
      [
        'not recording an event about an object without kind or name',
        'failed to write an event',
        'failed to write an event',
      ],
    );
    const errors = warnings
      .filter((line) => line.fields?.error !== undefined)
      .map((line) => String(line.fields?.error))
      .sort();
    assert.match(errors[0] ?? '', /^HTTP 404: namespaces "no-such-namespace" not found$/);
    assert.equal(errors[1], 'synchronous failure');
  });

  it('works with a Role that grants create and patch on events.k8s.io Events, and no more', async () => {
    const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
    const subject = await configMap('restricted');
    const role = (name: string, verbs: string[]) =>
      rbac.createNamespacedRole({
        namespace: NAMESPACE,
        body: {
          metadata: { name },
          rules: [{ apiGroups: ['events.k8s.io'], resources: ['events'], verbs }],
        },
      });
    const bind = (name: string, account: string) =>
      rbac.createNamespacedRoleBinding({
        namespace: NAMESPACE,
        body: {
          metadata: { name },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
          subjects: [{ kind: 'ServiceAccount', name: account, namespace: NAMESPACE }],
        },
      });
    await role('events-writer', ['create', 'patch']);
    await role('events-creator', ['create']);
    await bind('events-writer', 'writer');
    await bind('events-creator', 'creator');

    const writerLog = new MemoryLogger();
    const writer = new EventRecorder({
      api: (await serviceAccountConfig(plane, NAMESPACE, 'writer')).makeApiClient(EventsV1Api),
      logger: writerLog,
    });
    for (let i = 0; i < 3; i++) {
      writer.normal(subject, 'Configured', 'Reconcile', 'as the writer');
      await writer.flush();
    }
    assert.deepEqual(writerLog.lines, []);

    const creatorLog = new MemoryLogger();
    const creator = new EventRecorder({
      api: (await serviceAccountConfig(plane, NAMESPACE, 'creator')).makeApiClient(EventsV1Api),
      logger: creatorLog,
    });
    for (let i = 0; i < 2; i++) {
      creator.normal(subject, 'Configured', 'Reconcile', 'as the creator');
      await creator.flush();
    }
    assert.match(String(creatorLog.lines[0]?.fields?.error), /^HTTP 403: .* cannot patch/);

    const found = await eventsAbout(subject.metadata?.uid);
    assert.deepEqual(found.map((e) => [e.note, e.series?.count]).sort(), [
      ['as the creator', undefined],
      ['as the writer', 3],
    ]);
  });
});

/** Creates ServiceAccount `name` and a KubeConfig that authenticates as it. */
async function serviceAccountConfig(
  plane: ControlPlane,
  namespace: string,
  name: string,
): Promise<KubeConfig> {
  await plane
    .kubeConfig()
    .makeApiClient(CoreV1Api)
    .createNamespacedServiceAccount({ namespace, body: { metadata: { name } } });
  return plane.kubeConfigAs(namespace, name);
}
