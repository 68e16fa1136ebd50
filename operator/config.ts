/**
 * The operator's own settings: which images its pods run and how its children are marked. One
 * object, passed to every controller, so that tests and the Helm chart set them in one place.
 */

/** Settings of one operator process. */
export interface OperatorConfig {
  /** Field manager of every server-side apply and status patch. */
  readonly fieldManager: string;
  /** Image of training and evaluation pods (CUDA base with tfjs-node-gpu). */
  readonly trainerImage: string;
  /** Image of profiling, extraction and serving pods (CPU runtime). */
  readonly runtimeImage: string;
  readonly imagePullPolicy: 'Always' | 'IfNotPresent' | 'Never';
  /** Retries of a Job's pod before the Job fails (exit code 2, bad usage, is never retried). */
  readonly jobBackoffLimit: number;
  /** UID and GID the pods run as (non-root; the images create this user). */
  readonly podUser: number;
  /**
   * Service account of serving pods, which must exist in each target's namespace (the chart's
   * `servingServiceAccount` creates it with no permissions). Empty: the namespace's `default`.
   * Either way no token is mounted: the server never calls the API.
   */
  readonly servingServiceAccount: string;
  /**
   * Prometheus' base URL (it scrapes the serving pods, e.g. through the chart's PodMonitor), from
   * which the served latency of each target is read into its status. Empty: not read; the
   * chart's PrometheusRule still alerts.
   */
  readonly prometheusUrl: string;
  /** How often a serving target's latency is read again. */
  readonly driftCheckIntervalMs: number;
  /**
   * Reconciles each controller runs at once (never two of one object). Reconciles mostly wait on
   * the API server, so a fleet of targets needs several.
   */
  readonly maxConcurrentReconciles: number;
}

/** Defaults: what the Helm chart sets unless told otherwise. */
export const DEFAULT_OPERATOR_CONFIG: OperatorConfig = {
  fieldManager: 'compofa-operator',
  trainerImage: 'ghcr.io/compofa/compofa-trainer:0.1.0',
  runtimeImage: 'ghcr.io/compofa/compofa-runtime:0.1.0',
  imagePullPolicy: 'IfNotPresent',
  jobBackoffLimit: 3,
  podUser: 10001,
  servingServiceAccount: '',
  prometheusUrl: '',
  driftCheckIntervalMs: 60_000,
  maxConcurrentReconciles: 8,
};
