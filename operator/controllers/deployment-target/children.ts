/**
 * What a DeploymentTarget owns or shares, computed from its spec and its choice: the
 * LatencyProfile of its device class (owned by the supernet's training, shared by every target on
 * the same devices and batch size), and the serving Deployment and Service on the device's nodes.
 */
import type { V1Deployment, V1OwnerReference, V1Service } from '@kubernetes/client-node';

import {
  LATENCY_PROFILE,
  type DeploymentTarget as DeploymentTargetResource,
  type LatencyProfile,
} from '../../api/index.js';
import { canonicalJson } from '../../../compofa/architecture.js';
import type { OperatorConfig } from '../../config.js';
import { childLabels, childName, shortHash, TARGET_LABEL, TRAINING_LABEL } from '../names.js';
import type { Stored } from '../objects.js';
import {
  artifactsVolume,
  compofaContainer,
  resourceRequirements,
  securePodSpec,
  engineEnv,
} from '../pods.js';
import { modelPath, type SupernetTraining } from '../supernet-training/children.js';
import { GENERATION_ANNOTATION, SUBNET_ANNOTATION, type Revision } from './rollout.js';

/** A DeploymentTarget read from the API server. */
export type DeploymentTarget = Stored<DeploymentTargetResource>;

/** The serving container's port. */
const SERVING_PORT_NAME = 'http';

/**
 * The LatencyProfile that `target` needs: one per (supernet, device class, batch size), named by
 * a hash of them so every target on the same devices finds the same one. Owned by the training,
 * so deleting one target never removes a profile that others use.
 */
export function targetProfile(
  target: DeploymentTarget,
  training: SupernetTraining,
  owner: V1OwnerReference,
): LatencyProfile {
  const device = target.spec.device;
  const batchSize = target.spec.batchSize ?? 1;
  const hash = shortHash(canonicalJson({ device, batchSize }));
  const labels = childLabels({ [TRAINING_LABEL]: training.metadata.name }, 'profiling');
  return {
    apiVersion: LATENCY_PROFILE.apiVersion,
    kind: LATENCY_PROFILE.kind,
    metadata: {
      name: childName(training.metadata.name, `lp-${hash}`),
      namespace: target.metadata.namespace,
      labels,
      ownerReferences: [owner],
    },
    spec: {
      designSpace: training.spec.designSpace ?? 'compound',
      architecture: { preset: training.spec.architecture?.preset ?? 'small' },
      device: {
        nodeSelector: { ...device.nodeSelector },
        ...(device.tolerations ? { tolerations: device.tolerations.map((t) => ({ ...t })) } : {}),
        ...(device.resources ? { resources: { ...device.resources } } : {}),
      },
      batchSize,
    },
  };
}

/**
 * How a serving pod leaves: after SIGTERM it answers (unready) for the shutdown delay, long
 * enough for kube-proxy to drop it from the Service, then drains in-flight requests; the grace
 * period covers both, so a rollout or re-selection under load refuses no request.
 */
export const SERVING_SHUTDOWN = {
  delayMs: 5_000,
  drainTimeoutMs: 30_000,
  marginSeconds: 5,
} as const;

/** Names of the serving objects. */
export function servingNames(target: DeploymentTarget) {
  return { deployment: childName(target.metadata.name, 'serving'), service: target.metadata.name };
}

/**
 * The serving Deployment: `compofa-serve` on the device's nodes, reading the extracted model from
 * the training's artifacts volume (read-only), with readiness after the warm-up inference. The
 * subnet is in the pod template, so a new choice rolls out; a rolling update never drops below
 * the wanted replicas.
 */
export function servingDeployment(
  target: DeploymentTarget,
  training: SupernetTraining,
  served: Revision,
  owner: V1OwnerReference,
  config: OperatorConfig,
): V1Deployment {
  const { spec, metadata } = target;
  const names = servingNames(target);
  const labels = childLabels({ [TARGET_LABEL]: metadata.name }, 'serving');
  const selector = {
    [TARGET_LABEL]: labels[TARGET_LABEL] ?? metadata.name,
    'app.kubernetes.io/component': 'serving',
  };
  const serving = spec.serving ?? {};
  const resources = serving.resources ?? spec.device.resources ?? {};
  const port = serving.port ?? 8080;
  const artifacts = artifactsVolume(training.spec.artifacts.claimName, true);
  const probe = (path: string) => ({
    httpGet: { path, port: SERVING_PORT_NAME },
    periodSeconds: 5,
    failureThreshold: 3,
  });
  const container = compofaContainer(config, {
    name: 'serve',
    image: serving.image ?? config.runtimeImage,
    command: ['compofa-serve'],
    args: [],
    resources: resourceRequirements(resources, 0),
    volumeMounts: [artifacts.mount],
    env: [
      {
        name: 'COMPOFA_MODEL_DIR',
        value: modelPath(training, served.supernetGeneration, served.id),
      },
      { name: 'COMPOFA_MODEL_NAME', value: metadata.name },
      { name: 'COMPOFA_TARGET', value: metadata.name },
      { name: 'COMPOFA_PORT', value: String(port) },
      { name: 'COMPOFA_MAX_REQUEST_BATCH', value: String(Math.max(64, spec.batchSize ?? 1)) },
      { name: 'COMPOFA_LATENCY_BUDGET_MS', value: String(spec.latencyBudgetMs) },
      { name: 'COMPOFA_LATENCY_TOLERANCE', value: String(spec.drift?.tolerance ?? 0.1) },
      { name: 'COMPOFA_LATENCY_STATISTIC', value: spec.latencyStatistic ?? 'p95' },
      { name: 'COMPOFA_SHUTDOWN_DELAY_MS', value: String(SERVING_SHUTDOWN.delayMs) },
      { name: 'COMPOFA_DRAIN_TIMEOUT_MS', value: String(SERVING_SHUTDOWN.drainTimeoutMs) },
      ...engineEnv(resources.cpu),
    ],
  });
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: names.deployment,
      namespace: metadata.namespace,
      labels: { ...labels },
      ownerReferences: [owner],
    },
    spec: {
      replicas: serving.replicas ?? 1,
      selector: { matchLabels: selector },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      // A new choice whose pods are not ready by then is rolled back by the operator.
      progressDeadlineSeconds: serving.progressDeadlineSeconds ?? 300,
      template: {
        metadata: {
          labels: { ...labels },
          annotations: {
            [SUBNET_ANNOTATION]: served.id,
            [GENERATION_ANNOTATION]: String(served.supernetGeneration),
          },
        },
        spec: Object.assign(
          securePodSpec(config, {
            restartPolicy: 'Always',
            ...(config.servingServiceAccount
              ? { serviceAccountName: config.servingServiceAccount }
              : {}),
            mountToken: false,
            containers: [
              Object.assign(container, {
                ports: [{ name: SERVING_PORT_NAME, containerPort: port, protocol: 'TCP' }],
                readinessProbe: probe('/v2/health/ready'),
                livenessProbe: { ...probe('/v2/health/live'), initialDelaySeconds: 10 },
              }),
            ],
            volumes: [artifacts.volume],
            nodeSelector: spec.device.nodeSelector,
            ...(spec.device.tolerations ? { tolerations: spec.device.tolerations } : {}),
          }),
          {
            terminationGracePeriodSeconds:
              Math.ceil((SERVING_SHUTDOWN.delayMs + SERVING_SHUTDOWN.drainTimeoutMs) / 1000) +
              SERVING_SHUTDOWN.marginSeconds,
          },
        ),
      },
    },
  };
}

/** The Service in front of the serving pods, named after the target. */
export function servingService(target: DeploymentTarget, owner: V1OwnerReference): V1Service {
  const labels = childLabels({ [TARGET_LABEL]: target.metadata.name }, 'serving');
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: servingNames(target).service,
      namespace: target.metadata.namespace,
      labels: { ...labels },
      ownerReferences: [owner],
    },
    spec: {
      type: 'ClusterIP',
      selector: {
        [TARGET_LABEL]: labels[TARGET_LABEL] ?? target.metadata.name,
        'app.kubernetes.io/component': 'serving',
      },
      ports: [
        { name: SERVING_PORT_NAME, port: 80, targetPort: SERVING_PORT_NAME, protocol: 'TCP' },
      ],
    },
  };
}

/** The in-cluster URL of the target's Service. */
export function servingEndpoint(target: DeploymentTarget): string {
  return `http://${servingNames(target).service}.${target.metadata.namespace}.svc:80/v2/models/${target.metadata.name}`;
}
