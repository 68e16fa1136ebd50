/**
 * ResilientInformer against a real API server: events reach handlers and cache, the informer
 * survives its resource disappearing (CRD deleted: 404) and comes back when it reappears, periodic
 * re-lists deliver every object again, and stop() stops it. Also the pure helpers and the backoff
 * schedule on a fake clock.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';

import {
  ApiextensionsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  loadYaml,
  type KubernetesObject,
  type V1ConfigMap,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';

import {
  ExponentialBackoff,
  objectKey,
  ownerKey,
  resourcePath,
  ResilientInformer,
  type InformerClock,
  type InformerEvent,
  type InformerLogger,
} from '../../operator/runtime/informer.js';
import { apiErrorCode } from '../harness/api-errors.js';
import { ControlPlane } from '../harness/control-plane.js';
import { waitFor } from '../harness/wait.js';

interface LogEntry {
  level: keyof InformerLogger;
  message: string;
  fields: Record<string, unknown>;
}

/** A logger that keeps what it is told. */
function recordingLogger(): InformerLogger & { entries: LogEntry[] } {
  const entries: LogEntry[] = [];
  const at =
    (level: keyof InformerLogger) =>
    (message: string, fields: Record<string, unknown> = {}): void => {
      entries.push({ level, message, fields });
    };
  return {
    entries,
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
  };
}

interface Seen {
  event: InformerEvent;
  name: string;
  version?: string;
  oldVersion?: string;
}

/** Records every event of `informer`. */
function recordEvents<T extends KubernetesObject>(informer: ResilientInformer<T>): Seen[] {
  const seen: Seen[] = [];
  informer.onChange((event, obj, old) => {
    seen.push({
      event,
      name: obj.metadata?.name ?? '',
      version: obj.metadata?.resourceVersion,
      oldVersion: old?.metadata?.resourceVersion,
    });
  });
  return seen;
}

const WIDGETS = { group: 'test.compofa.io', version: 'v1', plural: 'widgets' } as const;

describe('ResilientInformer on a real API server', () => {
  let plane: ControlPlane;
  let kubeConfig: KubeConfig;
  let core: CoreV1Api;
  let extensions: ApiextensionsV1Api;
  let objects: CustomObjectsApi;
  const informers: ResilientInformer<KubernetesObject>[] = [];

  before(async () => {
    plane = await ControlPlane.start();
    kubeConfig = plane.kubeConfig();
    core = kubeConfig.makeApiClient(CoreV1Api);
    extensions = kubeConfig.makeApiClient(ApiextensionsV1Api);
    objects = kubeConfig.makeApiClient(CustomObjectsApi);
  });
  after(async () => {
    for (const informer of informers) informer.stop();
    await plane.stop();
  });

  const eventually = <T>(
    probe: () => Promise<T | undefined | false> | T | undefined | false,
    description: string,
    timeoutMs = 30_000,
  ): Promise<T> => waitFor(probe, { description, timeoutMs, hint: plane.logHint });

  /** An informer with test timings, stopped after the suite whatever happens. */
  const makeInformer = <T extends KubernetesObject>(
    path: string,
    extra: { labelSelector?: string; resyncMs?: number; logger?: InformerLogger } = {},
  ): ResilientInformer<T> => {
    const informer = new ResilientInformer<T>({
      kubeConfig,
      path,
      backoff: { initialMs: 100, maxMs: 800 },
      resyncMs: 60_000,
      ...extra,
    });
    informers.push(informer as unknown as ResilientInformer<KubernetesObject>);
    return informer;
  };

  const configMap = (name: string, data: Record<string, string> = {}): V1ConfigMap => ({
    metadata: { name, labels: { test: 'informer' } },
    data,
  });

  it('delivers ConfigMap adds, updates and deletes to the handlers and the cache', async () => {
    const namespace = 'informer-events';
    await plane.createNamespace(namespace);
    await core.createNamespacedConfigMap({ namespace, body: configMap('before') });

    // The label selector keeps out the kube-root-ca.crt ConfigMap of every namespace.
    const informer = makeInformer<V1ConfigMap>(
      resourcePath({ version: 'v1', plural: 'configmaps', namespace }),
      { labelSelector: 'test=informer' },
    );
    const seen = recordEvents(informer);
    const added: string[] = [];
    const updated: [string, string][] = [];
    const deleted: string[] = [];
    informer.onAdd((obj) => {
      added.push(obj.metadata?.name ?? '');
    });
    informer.onUpdate((obj, old) => {
      updated.push([old.data?.['v'] ?? '', obj.data?.['v'] ?? '']);
    });
    informer.onDelete((obj) => {
      deleted.push(obj.metadata?.name ?? '');
    });
    assert.equal(informer.hasSynced, false);
    informer.start();
    await informer.waitForSync(AbortSignal.timeout(15_000));
    assert.equal(informer.hasSynced, true);
    assert.deepEqual(added, ['before'], 'the initial list is delivered as adds');
    assert.equal(informer.get(namespace, 'before')?.metadata?.name, 'before');
    // Items of the default list come back with the kind and apiVersion that the API server leaves out.
    assert.equal(informer.get(namespace, 'before')?.kind, 'ConfigMap');
    assert.equal(informer.get(namespace, 'before')?.apiVersion, 'v1');

    await core.createNamespacedConfigMap({ namespace, body: configMap('cm', { v: '1' }) });
    await eventually(() => added.includes('cm'), 'the add of cm');
    assert.equal(informer.get(namespace, 'cm')?.data?.['v'], '1');

    await core.patchNamespacedConfigMap({
      namespace,
      name: 'cm',
      body: [{ op: 'replace', path: '/data/v', value: '2' }],
    });
    await eventually(() => updated.some(([, v]) => v === '2'), 'the update of cm');
    assert.deepEqual(updated, [['1', '2']]);
    assert.equal(informer.getByKey(`${namespace}/cm`)?.data?.['v'], '2');

    // Not selected: never seen.
    await core.createNamespacedConfigMap({
      namespace,
      body: { metadata: { name: 'unlabelled' } },
    });
    await core.deleteNamespacedConfigMap({ namespace, name: 'cm' });
    await eventually(() => deleted.includes('cm'), 'the delete of cm');
    assert.equal(informer.get(namespace, 'cm'), undefined);
    assert.deepEqual(
      informer.list(namespace).map((obj) => obj.metadata?.name),
      ['before'],
    );
    assert.deepEqual(informer.list('elsewhere'), []);
    assert.deepEqual(
      seen.map(({ event, name }) => `${event} ${name}`),
      ['add before', 'add cm', 'update cm', 'delete cm'],
    );
    informer.stop();
  });

  it('re-lists periodically: handlers see every object again, as an update', async () => {
    const namespace = 'informer-resync';
    await plane.createNamespace(namespace);
    await core.createNamespacedConfigMap({ namespace, body: configMap('steady') });
    const logger = recordingLogger();
    const informer = makeInformer<V1ConfigMap>(
      resourcePath({ version: 'v1', plural: 'configmaps', namespace }),
      { labelSelector: 'test=informer', resyncMs: 1_000, logger },
    );
    const seen = recordEvents(informer);
    informer.start();
    await informer.waitForSync(AbortSignal.timeout(15_000));
    const resyncs = await eventually(
      () => {
        const again = seen.filter((s) => s.event === 'update' && s.name === 'steady');
        return again.length >= 2 ? again : undefined;
      },
      'two re-lists to deliver steady again',
      10_000,
    );
    for (const update of resyncs)
      assert.equal(update.version, update.oldVersion, 'the object did not change in between');
    assert.ok(logger.entries.some((e) => e.message === 'informer re-listing'));
    assert.ok(
      !logger.entries.some((e) => e.level === 'warn' || e.level === 'error'),
      JSON.stringify(logger.entries),
    );

    // A re-list also delivers what changed meanwhile, and the watch still works.
    await core.createNamespacedConfigMap({ namespace, body: configMap('later') });
    await eventually(
      () => seen.some((s) => s.event === 'add' && s.name === 'later'),
      'the add of later',
    );
    informer.stop();
  });

  it('restarts with backoff while its CRD is gone, and recovers when it is back', async () => {
    const namespace = 'informer-crd';
    await plane.createNamespace(namespace);
    const crd = loadYaml<V1CustomResourceDefinition>(
      await readFile(new URL('../fixtures/widget-crd.yaml', import.meta.url), 'utf8'),
    );
    const crdName = crd.metadata?.name ?? '';
    const installCrd = async (): Promise<void> => {
      await extensions.createCustomResourceDefinition({ body: crd });
      await eventually(async () => {
        const current = await extensions.readCustomResourceDefinition({ name: crdName });
        return current.status?.conditions?.some(
          (c) => c.type === 'Established' && c.status === 'True',
        );
      }, 'the Widget CRD to be established');
    };
    // Right after Established the endpoint may still answer 404 for a moment: retry.
    const createWidget = (name: string): Promise<unknown> =>
      eventually(
        () =>
          objects.createNamespacedCustomObject({
            ...WIDGETS,
            namespace,
            body: {
              apiVersion: 'test.compofa.io/v1',
              kind: 'Widget',
              metadata: { name },
              spec: { size: 'small', latencyBudgetMs: 5 },
            },
          }) as Promise<unknown>,
        `widget ${name} to be created`,
      );

    await installCrd();
    await createWidget('first');
    const logger = recordingLogger();
    const informer = makeInformer(resourcePath({ ...WIDGETS, namespace }), { logger });
    const seen = recordEvents(informer);
    informer.start();
    await informer.waitForSync(AbortSignal.timeout(15_000));
    assert.ok(informer.get(namespace, 'first'));

    await extensions.deleteCustomResourceDefinition({ name: crdName });
    const failures = () =>
      logger.entries.filter(
        (e) => e.level === 'warn' && e.message === 'informer failed; restarting',
      );
    await eventually(
      () => failures().length >= 4,
      'four failed runs while the CRD is gone',
      15_000,
    );
    // Every restart lists again and fails again (404), each after a longer delay, up to the cap.
    const delays = failures().map((e) => e.fields['delayMs']);
    assert.deepEqual(delays.slice(0, 4), [100, 200, 400, 800], JSON.stringify(failures()));
    assert.ok(
      failures().some((e) => e.fields['code'] === 404),
      `a 404 was reported: ${JSON.stringify(failures())}`,
    );
    assert.ok(logger.entries.some((e) => e.message === 'informer restarting'));

    await eventually(
      () =>
        extensions.readCustomResourceDefinition({ name: crdName }).then(
          () => false,
          (error: unknown) => apiErrorCode(error) === 404,
        ),
      'the Widget CRD to be gone',
    );
    await installCrd();
    await createWidget('second');
    await eventually(
      () => seen.some((s) => s.event === 'add' && s.name === 'second'),
      'the new widget to reach the handler',
      15_000,
    );
    assert.equal(informer.get(namespace, 'second')?.kind, 'Widget');
    assert.ok(logger.entries.some((e) => e.level === 'info' && e.message === 'informer recovered'));
    // The CRD's deletion deleted the first widget: the watch or the first successful re-list says so.
    await eventually(() => informer.get(namespace, 'first') === undefined, 'first to be gone');
    assert.ok(seen.some((s) => s.event === 'delete' && s.name === 'first'));
    informer.stop();
  });

  it('calls no handler after stop()', async () => {
    const namespace = 'informer-stop';
    await plane.createNamespace(namespace);
    const informer = makeInformer<V1ConfigMap>(
      resourcePath({ version: 'v1', plural: 'configmaps', namespace }),
      { labelSelector: 'test=informer', resyncMs: 300 },
    );
    const seen = recordEvents(informer);
    informer.start();
    await informer.waitForSync(AbortSignal.timeout(15_000));
    await core.createNamespacedConfigMap({ namespace, body: configMap('one') });
    await eventually(() => seen.length === 1, 'the add of one');

    informer.stop();
    assert.equal(informer.isRunning, false);
    await core.createNamespacedConfigMap({ namespace, body: configMap('two') });
    await core.deleteNamespacedConfigMap({ namespace, name: 'one' });
    // Longer than a few re-list periods and watch round trips.
    await sleep(1_500);
    assert.deepEqual(
      seen.map(({ event, name }) => `${event} ${name}`),
      ['add one'],
    );
    // The cache keeps the last known state.
    assert.ok(informer.get(namespace, 'one'));

    // Started again, it re-lists and catches up.
    informer.start();
    await eventually(
      () => seen.some((s) => s.event === 'delete' && s.name === 'one'),
      'the delete of one after the restart',
    );
    assert.ok(seen.some((s) => s.event === 'add' && s.name === 'two'));
    informer.stop();
  });
});

/** A clock whose timers fire only when told to. */
class ManualClock implements InformerClock {
  time = 0;
  readonly timers: { at: number; ms: number; callback: () => void; cancelled: boolean }[] = [];

  now(): number {
    return this.time;
  }

  setTimeout(callback: () => void, ms: number): () => void {
    const timer = { at: this.time + ms, ms, callback, cancelled: false };
    this.timers.push(timer);
    return () => {
      timer.cancelled = true;
    };
  }

  /** The pending timers' delays. */
  pending(): number[] {
    return this.timers.filter((t) => !t.cancelled).map((t) => t.ms);
  }

  /** Advances to the next pending timer and runs it. */
  fireNext(): void {
    const next = this.timers.filter((t) => !t.cancelled).sort((a, b) => a.at - b.at)[0];
    assert.ok(next, 'a pending timer');
    next.cancelled = true;
    this.time = Math.max(this.time, next.at);
    next.callback();
  }
}

describe('ResilientInformer without an API server', () => {
  const offline = new KubeConfig();
  // Nothing listens on port 9; the injected list functions below never reach it.
  offline.loadFromClusterAndUser(
    { name: 'offline', server: 'https://127.0.0.1:9', skipTLSVerify: true },
    { name: 'nobody' },
  );
  const tick = () => sleep(5);

  it('backs off exponentially while the list fails, and stops cleanly', async () => {
    const clock = new ManualClock();
    const logger = recordingLogger();
    let calls = 0;
    const informer = new ResilientInformer<V1ConfigMap>({
      kubeConfig: offline,
      path: '/api/v1/configmaps',
      list: () => {
        calls++;
        return Promise.reject(Object.assign(new Error('boom'), { code: 503 }));
      },
      backoff: { initialMs: 100, maxMs: 300 },
      clock,
      logger,
    });
    informer.start();
    await tick();
    for (let i = 0; i < 4; i++) {
      clock.fireNext();
      await tick();
    }
    assert.equal(calls, 5);
    const warnings = logger.entries.filter((e) => e.level === 'warn');
    assert.deepEqual(
      warnings.map((e) => e.fields['delayMs']),
      [100, 200, 300, 300, 300],
    );
    assert.deepEqual(warnings[0]?.fields, {
      informer: '/api/v1/configmaps',
      error: 'boom',
      code: 503,
      attempt: 1,
      delayMs: 100,
    });
    const sync = informer.waitForSync();
    informer.stop();
    await assert.rejects(sync, /stopped before it synced/);
    assert.deepEqual(clock.pending(), [], 'stop() cancels the restart timer');
  });

  it('a list that never answers fails the run after listTimeoutMs', () => {
    const clock = new ManualClock();
    const logger = recordingLogger();
    const informer = new ResilientInformer<V1ConfigMap>({
      kubeConfig: offline,
      path: '/api/v1/configmaps',
      list: () => new Promise(() => undefined),
      listTimeoutMs: 5_000,
      clock,
      logger,
    });
    informer.start();
    assert.deepEqual(clock.pending(), [5_000]);
    clock.fireNext();
    assert.match(String(logger.entries.at(-1)?.fields['error']), /did not answer within 5000 ms/);
    assert.deepEqual(clock.pending(), [200]);
    informer.stop();
  });

  it('keeps going when a handler throws', async () => {
    const logger = recordingLogger();
    const informer = new ResilientInformer<V1ConfigMap>({
      kubeConfig: offline,
      path: '/api/v1/configmaps',
      list: () =>
        Promise.resolve({
          metadata: { resourceVersion: '1' },
          items: [{ metadata: { name: 'a', namespace: 'ns', resourceVersion: '1' } }],
        }),
      clock: new ManualClock(),
      logger,
    });
    const names: string[] = [];
    informer.onAdd(() => {
      throw new Error('handler bug');
    });
    informer.onAdd(async (obj) => {
      names.push(obj.metadata?.name ?? '');
      await Promise.reject(new Error('async handler bug'));
    });
    informer.start();
    await informer.waitForSync();
    await tick();
    informer.stop();
    assert.deepEqual(names, ['a']);
    const errors = logger.entries.filter((e) => e.level === 'error');
    assert.deepEqual(
      errors.map((e) => [e.fields['error'], e.fields['object']]),
      [
        ['handler bug', 'ns/a'],
        ['async handler bug', 'ns/a'],
      ],
    );
  });
});

describe('informer helpers', () => {
  it('resourcePath builds core, group, namespaced and all-namespace paths', () => {
    assert.equal(resourcePath({ version: 'v1', plural: 'configmaps' }), '/api/v1/configmaps');
    assert.equal(
      resourcePath({ group: 'batch', version: 'v1', plural: 'jobs', namespace: 'ns' }),
      '/apis/batch/v1/namespaces/ns/jobs',
    );
    assert.equal(
      resourcePath({ group: 'compofa.io', version: 'v1alpha1', plural: 'supernettrainings' }),
      '/apis/compofa.io/v1alpha1/supernettrainings',
    );
  });

  it('objectKey and ownerKey use namespace/name', () => {
    const job: KubernetesObject = {
      metadata: {
        name: 'train-1',
        namespace: 'ml',
        ownerReferences: [
          { apiVersion: 'v1', kind: 'ConfigMap', name: 'not-controller', uid: '1' },
          {
            apiVersion: 'compofa.io/v1alpha1',
            kind: 'SupernetTraining',
            name: 'fashion',
            uid: '2',
            controller: true,
          },
        ],
      },
    };
    assert.equal(objectKey(job), 'ml/train-1');
    assert.equal(objectKey({ metadata: { name: 'node-1' } }), 'node-1');
    assert.equal(ownerKey(job, 'SupernetTraining'), 'ml/fashion');
    // Versions may differ: the group decides.
    assert.equal(ownerKey(job, 'SupernetTraining', 'compofa.io/v1beta1'), 'ml/fashion');
    assert.equal(ownerKey(job, 'SupernetTraining', 'other.io/v1alpha1'), undefined);
    // Only the controller reference counts.
    assert.equal(ownerKey(job, 'ConfigMap'), undefined);
    assert.equal(ownerKey({ metadata: { name: 'x' } }, 'SupernetTraining'), undefined);
  });

  it('ExponentialBackoff doubles up to its cap and resets', () => {
    const backoff = new ExponentialBackoff({ initialMs: 200, maxMs: 1_000 });
    assert.deepEqual(
      [backoff.next(), backoff.next(), backoff.next(), backoff.next()],
      [200, 400, 800, 1_000],
    );
    assert.equal(backoff.attempts, 4);
    backoff.reset();
    assert.equal(backoff.next(), 200);
  });
});
