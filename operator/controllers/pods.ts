/**
 * The pieces every pod of the operator shares: a locked-down security context, the `compofa`
 * container, the Job around it, and the ConfigMap plus narrow RBAC through which the pod reports
 * (see trainer/report.ts). One definition, so every role gets the same hardening.
 */
import type {
  KubernetesObject,
  V1ConfigMap,
  V1Container,
  V1EnvVar,
  V1Job,
  V1ObjectMeta,
  V1OwnerReference,
  V1PodSpec,
  V1ResourceRequirements,
  V1Role,
  V1RoleBinding,
  V1ServiceAccount,
  V1Toleration,
  V1Volume,
  V1VolumeMount,
} from '@kubernetes/client-node';

import { DEFAULT_ENGINE, ONNX_RUNTIME_VERSION, type EngineFacts } from '../../compofa/engines.js';
import type { OperatorConfig } from '../config.js';
import type { Toleration } from '../api/index.js';

/** Exit code of `compofa` for bad usage: retrying cannot help (trainer/cli.ts). */
export const USAGE_EXIT_CODE = 2;

/** Where the artifacts volume is mounted in every pod. */
export const ARTIFACTS_MOUNT = '/artifacts';

/** The metadata of a child: its name, namespace, labels and controlling owner. */
export interface ChildMeta {
  readonly name: string;
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly ownerReferences: readonly V1OwnerReference[];
}

/** The metadata of a child of `owner`. */
export function ownedMeta(
  name: string,
  namespace: string,
  labels: Readonly<Record<string, string>>,
  owner: V1OwnerReference,
): ChildMeta {
  return { name, namespace, labels: { ...labels }, ownerReferences: [owner] };
}

/** Child metadata as client-node's (mutable) type. */
function meta(metadata: ChildMeta): V1ObjectMeta {
  return {
    name: metadata.name,
    namespace: metadata.namespace,
    labels: { ...metadata.labels },
    ownerReferences: [...metadata.ownerReferences],
  };
}

/** The container every role runs: the `compofa` CLI, non-root, read-only root filesystem. */
export function compofaContainer(
  config: OperatorConfig,
  options: {
    readonly name: string;
    readonly image: string;
    readonly command: readonly string[];
    readonly args: readonly string[];
    readonly resources?: V1ResourceRequirements;
    readonly volumeMounts?: readonly V1VolumeMount[];
    readonly env?: readonly V1EnvVar[];
  },
): V1Container {
  return {
    name: options.name,
    image: options.image,
    imagePullPolicy: config.imagePullPolicy,
    command: [...options.command],
    args: [...options.args],
    env: [
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
      { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
      { name: 'TF_CPP_MIN_LOG_LEVEL', value: '2' },
      // Writable places for libraries that want a home or a temp folder.
      { name: 'HOME', value: '/tmp' },
      ...(options.env ?? []),
    ],
    ...(options.resources ? { resources: options.resources } : {}),
    volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }, ...(options.volumeMounts ?? [])],
    securityContext: {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
    },
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}

/** A pod spec with the operator's hardening around `containers`. */
export function securePodSpec(
  config: OperatorConfig,
  options: {
    readonly containers: readonly V1Container[];
    readonly serviceAccountName?: string;
    /** Mount the service account's token (default: only when a service account is named). */
    readonly mountToken?: boolean;
    readonly volumes?: readonly V1Volume[];
    readonly nodeSelector?: Readonly<Record<string, string>>;
    readonly tolerations?: readonly Toleration[];
    readonly restartPolicy: 'Never' | 'Always';
  },
): V1PodSpec {
  return {
    restartPolicy: options.restartPolicy,
    ...(options.serviceAccountName ? { serviceAccountName: options.serviceAccountName } : {}),
    automountServiceAccountToken: options.mountToken ?? options.serviceAccountName !== undefined,
    enableServiceLinks: false,
    securityContext: {
      runAsNonRoot: true,
      runAsUser: config.podUser,
      runAsGroup: config.podUser,
      fsGroup: config.podUser,
      seccompProfile: { type: 'RuntimeDefault' },
    },
    containers: [...options.containers],
    volumes: [{ name: 'tmp', emptyDir: {} }, ...(options.volumes ?? [])],
    ...(options.nodeSelector && Object.keys(options.nodeSelector).length > 0
      ? { nodeSelector: { ...options.nodeSelector } }
      : {}),
    ...(options.tolerations && options.tolerations.length > 0
      ? { tolerations: options.tolerations.map((t): V1Toleration => ({ ...t })) }
      : {}),
  };
}

/**
 * A Job running `pod` once. A pod that exits with the usage exit code fails the Job at once
 * (terminal: the spec is wrong); other failures are retried up to the backoff limit.
 */
export function compofaJob(config: OperatorConfig, metadata: ChildMeta, pod: V1PodSpec): V1Job {
  const container = pod.containers[0]?.name ?? 'compofa';
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: meta(metadata),
    spec: {
      backoffLimit: config.jobBackoffLimit,
      podFailurePolicy: {
        rules: [
          {
            action: 'FailJob',
            onExitCodes: { containerName: container, operator: 'In', values: [USAGE_EXIT_CODE] },
          },
          // A pod evicted or preempted is not the program's fault: retry without counting it.
          { action: 'Ignore', onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }] },
        ],
      },
      template: { metadata: { labels: { ...metadata.labels } }, spec: pod },
    },
  };
}

/** The ConfigMap a pod reports into, and the service account allowed to patch only it. */
export interface ReporterObjects {
  readonly configMap: V1ConfigMap;
  readonly serviceAccount: V1ServiceAccount;
  readonly role: V1Role;
  readonly roleBinding: V1RoleBinding;
}

/**
 * The report ConfigMap `configMapName` and a service account `metadata.name` (with its Role and
 * RoleBinding) allowed `get` and `patch` on that ConfigMap alone: all a reporting pod needs of
 * the API. The ConfigMap is applied without `data`, so the operator never owns (or clears) what
 * the pod wrote.
 */
export function reporterObjects(metadata: ChildMeta, configMapName: string): ReporterObjects {
  const { name, namespace } = metadata;
  return {
    configMap: {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: meta({ ...metadata, name: configMapName }),
    },
    serviceAccount: {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: meta(metadata),
      automountServiceAccountToken: false,
    },
    role: {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: meta(metadata),
      rules: [
        {
          apiGroups: [''],
          resources: ['configmaps'],
          resourceNames: [configMapName],
          verbs: ['get', 'patch'],
        },
      ],
    },
    roleBinding: {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: meta(metadata),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
      subjects: [{ kind: 'ServiceAccount', name, namespace }],
    },
  };
}

/** The reporter objects in the order they are applied: the account and its rights first. */
export function reporterChildren(reporter: ReporterObjects): KubernetesObject[] {
  return [reporter.serviceAccount, reporter.role, reporter.roleBinding, reporter.configMap];
}

/** The artifacts PVC as a pod volume and its mount. */
export function artifactsVolume(
  claimName: string,
  readOnly: boolean,
): { volume: V1Volume; mount: V1VolumeMount } {
  return {
    volume: { name: 'artifacts', persistentVolumeClaim: { claimName, readOnly } },
    mount: { name: 'artifacts', mountPath: ARTIFACTS_MOUNT, readOnly },
  };
}

/** What a pod asks for: GPUs, CPU and memory, as the CRDs spell them. */
export interface RequestedResources {
  readonly gpus?: number;
  readonly gpuResourceName?: string;
  readonly cpu?: number | string;
  readonly memory?: number | string;
}

/**
 * GPUs as request and limit of their extended resource (`defaultGpus` when unset), CPU as a
 * request, memory as request and limit.
 */
export function resourceRequirements(
  resources: RequestedResources,
  defaultGpus: number,
): V1ResourceRequirements {
  const gpus = resources.gpus ?? defaultGpus;
  const requests: Record<string, string> = {};
  const limits: Record<string, string> = {};
  if (gpus > 0) {
    const gpu = resources.gpuResourceName ?? 'nvidia.com/gpu';
    requests[gpu] = String(gpus);
    limits[gpu] = String(gpus);
  }
  if (resources.cpu !== undefined) requests.cpu = String(resources.cpu);
  if (resources.memory !== undefined) {
    requests.memory = String(resources.memory);
    limits.memory = String(resources.memory);
  }
  return {
    ...(Object.keys(requests).length > 0 ? { requests } : {}),
    ...(Object.keys(limits).length > 0 ? { limits } : {}),
  };
}

/**
 * The engine every profiling and serving pod runs subnets with, so that a latency table measures
 * what serves (the runtime image's `compofa profile` and `compofa-serve` both read it).
 */
export const SERVING_ENGINE: EngineFacts = { name: DEFAULT_ENGINE, version: ONNX_RUNTIME_VERSION };

/**
 * The serving engine, and its thread pools sized to the CPU request (whole cores, at least one),
 * so that a profiling pod and a serving pod on the same device run the same engine on the same
 * threads, and a container does not start one thread per core of the node (no threads setting
 * when no CPU is requested). TensorFlow's variables too, for a pod that runs tfjs.
 */
export function engineEnv(cpu: number | string | undefined): V1EnvVar[] {
  const engine = { name: 'COMPOFA_ENGINE', value: SERVING_ENGINE.name };
  if (cpu === undefined) return [engine];
  const text = String(cpu);
  const cores = text.endsWith('m') ? Number(text.slice(0, -1)) / 1000 : Number(text);
  if (!Number.isFinite(cores) || cores <= 0) return [engine];
  const threads = String(Math.max(1, Math.floor(cores)));
  return [
    engine,
    { name: 'COMPOFA_THREADS', value: threads },
    { name: 'TF_NUM_INTRAOP_THREADS', value: threads },
    { name: 'TF_NUM_INTEROP_THREADS', value: threads },
  ];
}
