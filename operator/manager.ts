/**
 * The operator process's core: informers on the custom resources and on the children the
 * operator labelled as its own, the controllers they feed, and the health and metrics endpoints.
 * Like controller-runtime's manager: caches first, then (when leading) the controllers.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import {
  CustomObjectsApi,
  EventsV1Api,
  KubernetesObjectApi,
  type KubeConfig,
  type KubernetesObject,
  type V1ConfigMap,
  type V1Deployment,
  type V1Job,
  type V1Pod,
  type V1Service,
} from '@kubernetes/client-node';
import express from 'express';
import type { Registry } from 'prom-client';

import {
  DEPLOYMENT_TARGET,
  LATENCY_PROFILE,
  SUPERNET_TRAINING,
  type DeploymentTarget,
  type LatencyProfile,
  type SupernetTraining,
} from './api/index.js';
import type { OperatorConfig } from './config.js';
import type { Caches, ControllerContext } from './controllers/context.js';
import { PrometheusClient } from './monitoring/prometheus.js';
import { reuseConnections } from './runtime/connections.js';
import { assessServedLatency } from './monitoring/served-latency.js';
import {
  COMPONENT_LABEL,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  TARGET_LABEL,
} from './controllers/names.js';
import { extractionJobName } from './controllers/supernet-training/children.js';
import { registerDomainMetrics } from './domain-metrics.js';
import { DeploymentTargetReconciler } from './controllers/deployment-target/reconciler.js';
import { LatencyProfileReconciler } from './controllers/latency-profile/reconciler.js';
import { SupernetTrainingReconciler } from './controllers/supernet-training/reconciler.js';
import { Controller, type OperatorLogger, type ReconcileResult } from './runtime/controller.js';
import { EventRecorder } from './runtime/events.js';
import { objectKey, ownerKey, ResilientInformer, resourcePath } from './runtime/informer.js';
import { createOperatorRegistry } from './runtime/metrics.js';

/** Options of {@link Manager}. */
export interface ManagerOptions {
  readonly kubeConfig: KubeConfig;
  readonly config: OperatorConfig;
  readonly logger: OperatorLogger;
  /** Identity in Events and leases; default the hostname. */
  readonly identity?: string;
  readonly registry?: Registry;
  /** Re-list period of every informer; default 5 min. */
  readonly resyncMs?: number;
  readonly now?: () => Date;
}

/** Informers, controllers and the health/metrics server of one operator process. */
export class Manager {
  readonly registry: Registry;
  private readonly caches: Caches;
  private readonly events: EventRecorder;
  /** Each controller, with the keys of every object it reconciles (for the pass at start). */
  private readonly controllers: { controller: Controller; keys: () => string[] }[] = [];
  private server: Server | undefined;
  private controllersStarted = false;

  constructor(private readonly options: ManagerOptions) {
    const { logger } = options;
    const kubeConfig = reuseConnections(options.kubeConfig);
    this.registry = options.registry ?? createOperatorRegistry();
    const informer = <T extends KubernetesObject>(
      name: string,
      resource: { group?: string; version: string; plural: string },
      owned: boolean,
    ) =>
      new ResilientInformer<T>({
        kubeConfig,
        name,
        path: resourcePath(resource),
        ...(owned ? { labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY}` } : {}),
        logger,
        ...(options.resyncMs === undefined ? {} : { resyncMs: options.resyncMs }),
      });
    this.caches = {
      trainings: informer<SupernetTraining>('supernettrainings', SUPERNET_TRAINING, false),
      targets: informer<DeploymentTarget>('deploymenttargets', DEPLOYMENT_TARGET, false),
      profiles: informer<LatencyProfile>('latencyprofiles', LATENCY_PROFILE, false),
      jobs: informer<V1Job>('jobs', { group: 'batch', version: 'v1', plural: 'jobs' }, true),
      pods: informer<V1Pod>('pods', { version: 'v1', plural: 'pods' }, true),
      configMaps: informer<V1ConfigMap>(
        'configmaps',
        { version: 'v1', plural: 'configmaps' },
        true,
      ),
      deployments: informer<V1Deployment>(
        'deployments',
        { group: 'apps', version: 'v1', plural: 'deployments' },
        true,
      ),
      services: informer<V1Service>('services', { version: 'v1', plural: 'services' }, true),
    };
    this.events = new EventRecorder({
      api: kubeConfig.makeApiClient(EventsV1Api),
      logger,
      ...(options.identity === undefined ? {} : { reportingInstance: options.identity }),
    });
    const prometheus = options.config.prometheusUrl
      ? new PrometheusClient(options.config.prometheusUrl)
      : undefined;
    const context: ControllerContext = {
      objects: KubernetesObjectApi.makeApiClient(kubeConfig),
      customObjects: kubeConfig.makeApiClient(CustomObjectsApi),
      caches: this.caches,
      config: options.config,
      logger,
      events: this.events,
      now: options.now ?? (() => new Date()),
      ...(prometheus ? { servedLatency: (target) => assessServedLatency(prometheus, target) } : {}),
    };
    const trainings = new SupernetTrainingReconciler(context);
    // The training owns the extraction Jobs (shared by targets) but leaves them to the targets.
    this.addController(
      'supernettraining',
      SUPERNET_TRAINING,
      this.caches.trainings,
      (key) => trainings.reconcile(key),
      ['extraction'],
    );
    const targets = new DeploymentTargetReconciler(context);
    this.watchForTargets(
      this.addController('deploymenttarget', DEPLOYMENT_TARGET, this.caches.targets, (key) =>
        targets.reconcile(key),
      ),
    );
    const profiles = new LatencyProfileReconciler(context);
    this.addController('latencyprofile', LATENCY_PROFILE, this.caches.profiles, (key) =>
      profiles.reconcile(key),
    );
    registerDomainMetrics(this.registry, this.caches);
  }

  /**
   * A controller for `kind`, fed by its own informer and by the Jobs, ConfigMaps and pods of its
   * Jobs that it controls, except those of the `ignoredComponents` it owns but does not manage.
   */
  private addController<T extends KubernetesObject>(
    name: string,
    owner: { readonly kind: string; readonly apiVersion: string },
    resources: ResilientInformer<T>,
    reconcile: (key: string) => Promise<ReconcileResult>,
    ignoredComponents: readonly string[] = [],
  ): Controller {
    const controller = new Controller({
      name,
      reconcile,
      maxConcurrentReconciles: this.options.config.maxConcurrentReconciles,
      logger: this.options.logger,
      registry: this.registry,
    });
    this.controllers.push({ controller, keys: () => resources.list().map(objectKey) });
    const enqueue = (key: string | undefined): void => {
      if (key !== undefined) controller.queue.add(key);
    };
    const ignored = (child: KubernetesObject): boolean =>
      ignoredComponents.includes(child.metadata?.labels?.[COMPONENT_LABEL] ?? '');
    const { caches } = this;
    resources.onChange((_event, object) => {
      enqueue(objectKey(object));
    });
    for (const children of [
      caches.jobs,
      caches.configMaps,
    ] as ResilientInformer<KubernetesObject>[]) {
      children.onChange((_event, child) => {
        if (!ignored(child)) enqueue(ownerKey(child, owner.kind, owner.apiVersion));
      });
    }
    // A pod belongs to a Job, which belongs to the owner.
    caches.pods.onChange((_event, pod) => {
      const job = pod.metadata?.labels?.['batch.kubernetes.io/job-name'];
      const parent = job && caches.jobs.get(pod.metadata?.namespace, job);
      if (parent && !ignored(parent)) enqueue(ownerKey(parent, owner.kind, owner.apiVersion));
    });
    return controller;
  }

  /**
   * Targets also follow what they share with others: their supernet's training, its profiles and
   * extraction Jobs (owned by the training), and their own Deployments and serving pods.
   */
  private watchForTargets(controller: Controller): void {
    const { caches } = this;
    // Only the targets an object concerns: with a fleet on one supernet, waking every target for
    // each extraction Job's events would multiply the reconciles by the fleet's size.
    const targetsWhere = (
      namespace: string | undefined,
      concerns: (target: DeploymentTarget) => boolean,
    ): void => {
      if (!namespace) return;
      for (const target of caches.targets.list(namespace)) {
        if (concerns(target)) controller.queue.add(objectKey(target));
      }
    };
    caches.trainings.onChange((_event, training) => {
      const name = training.metadata?.name;
      targetsWhere(training.metadata?.namespace, (t) => t.spec.supernetRef.name === name);
    });
    caches.profiles.onChange((_event, profile) => {
      const name = profile.metadata?.name;
      targetsWhere(profile.metadata?.namespace, (t) => t.status?.profileRef?.name === name);
    });
    caches.jobs.onChange((_event, job) => {
      if (job.metadata?.labels?.[COMPONENT_LABEL] !== 'extraction') return;
      const training = ownerKey(job, SUPERNET_TRAINING.kind, SUPERNET_TRAINING.apiVersion);
      if (!training) return;
      const trainingName = training.split('/')[1] ?? '';
      targetsWhere(job.metadata.namespace, (t) => {
        const { selectedSubnet, supernetGeneration } = t.status ?? {};
        return (
          t.spec.supernetRef.name === trainingName &&
          selectedSubnet !== undefined &&
          supernetGeneration !== undefined &&
          extractionJobName(
            { metadata: { name: trainingName } },
            supernetGeneration,
            selectedSubnet.id,
          ) === job.metadata?.name
        );
      });
    });
    caches.deployments.onChange((_event, deployment) => {
      const key = ownerKey(deployment, DEPLOYMENT_TARGET.kind, DEPLOYMENT_TARGET.apiVersion);
      if (key) controller.queue.add(key);
    });
    caches.pods.onChange((_event, pod) => {
      const target = pod.metadata?.labels?.[TARGET_LABEL];
      if (target && pod.metadata?.namespace)
        controller.queue.add(`${pod.metadata.namespace}/${target}`);
    });
  }

  /** True once every informer has listed once: the caches can be trusted. */
  get ready(): boolean {
    return Object.values(this.caches).every(
      (informer: ResilientInformer<KubernetesObject>) => informer.hasSynced,
    );
  }

  /** Starts the informers and waits until their caches are filled. */
  async startCaches(signal?: AbortSignal): Promise<void> {
    const informers = Object.values(this.caches) as ResilientInformer<KubernetesObject>[];
    for (const informer of informers) informer.start();
    await Promise.all(informers.map((informer) => informer.waitForSync(signal)));
  }

  /** Starts the controllers (when this replica leads). */
  startControllers(): void {
    if (this.controllersStarted) return;
    this.controllersStarted = true;
    // Every object is reconciled once at start, whatever happened while no one was leading.
    for (const { controller, keys } of this.controllers) {
      controller.start();
      for (const key of keys()) controller.queue.add(key);
    }
  }

  /** Serves `/metrics`, `/healthz` and `/readyz` on `port` (0: any free port); resolves with it. */
  async serve(port: number, host = '0.0.0.0'): Promise<number> {
    const app = express();
    app.disable('x-powered-by');
    app.get('/healthz', (_request, response) => {
      response.status(200).send('ok');
    });
    app.get('/readyz', (_request, response) => {
      response.status(this.ready ? 200 : 503).send(this.ready ? 'ok' : 'caches not synced');
    });
    app.get('/metrics', async (_request, response) => {
      response.type(this.registry.contentType).send(await this.registry.metrics());
    });
    const server = createServer(app);
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        resolve();
      });
    });
    return (server.address() as AddressInfo).port;
  }

  /** Stops controllers (waiting for running reconciles), informers and the server. */
  async stop(): Promise<void> {
    await Promise.all(this.controllers.map(({ controller }) => controller.stop()));
    for (const informer of Object.values(this.caches) as ResilientInformer<KubernetesObject>[])
      informer.stop();
    await this.events.flush();
    const server = this.server;
    if (server) {
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      });
    }
  }
}
