/**
 * What every reconciler is given: API clients, the informers' caches, the operator's settings, a
 * logger, an event recorder and a clock. Reconcilers read from the caches and write through the
 * clients; they hold no state of their own between calls.
 */
import type {
  CustomObjectsApi,
  KubernetesObjectApi,
  V1ConfigMap,
  V1Deployment,
  V1Job,
  V1Pod,
  V1Service,
} from '@kubernetes/client-node';

import type { DeploymentTarget, LatencyProfile, SupernetTraining } from '../api/index.js';
import type {
  LatencyBudget,
  ServedLatencyAssessment,
  ServedLatencyTarget,
} from '../monitoring/served-latency.js';
import type { OperatorConfig } from '../config.js';
import type { OperatorLogger } from '../runtime/controller.js';
import type { EventRecorder } from '../runtime/events.js';
import type { ResilientInformer } from '../runtime/informer.js';

/** The informers whose caches reconcilers read. Children are those labelled as the operator's. */
export interface Caches {
  readonly trainings: ResilientInformer<SupernetTraining>;
  readonly targets: ResilientInformer<DeploymentTarget>;
  readonly profiles: ResilientInformer<LatencyProfile>;
  readonly jobs: ResilientInformer<V1Job>;
  readonly pods: ResilientInformer<V1Pod>;
  readonly configMaps: ResilientInformer<V1ConfigMap>;
  readonly deployments: ResilientInformer<V1Deployment>;
  readonly services: ResilientInformer<V1Service>;
}

/** Dependencies of the reconcilers. */
export interface ControllerContext {
  readonly objects: KubernetesObjectApi;
  readonly customObjects: CustomObjectsApi;
  readonly caches: Caches;
  readonly config: OperatorConfig;
  readonly logger: OperatorLogger;
  readonly events: Pick<EventRecorder, 'record'>;
  readonly now: () => Date;
  /** Reads a target's served latency (from Prometheus); undefined when none is configured. */
  readonly servedLatency?: (
    target: ServedLatencyTarget & LatencyBudget,
  ) => Promise<ServedLatencyAssessment>;
}
