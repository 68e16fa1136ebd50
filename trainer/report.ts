/**
 * How the trainer's pods tell the operator what they are doing: progress and finished tables go
 * into one ConfigMap that the operator created for the run (and watches), through JSON merge
 * patches of its `data`. The pod's service account needs only `get` and `patch` on that one
 * ConfigMap, and nothing is read from the volume by the operator.
 *
 * Keys: `progress.json` (the latest {@link ProgressReport}) and one key per published result
 * (`accuracy.json`, `latency.json`, `extract.json`).
 */
import { readFileSync } from 'node:fs';

import { CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';

/** What a pod reports while it works; the operator copies it into the resource's status. */
export interface ProgressReport {
  /** `teacher`, a phase name (`compound-1`, ...), `evaluation`, `profiling` or `extraction`. */
  readonly stage: string;
  readonly step: number;
  readonly totalSteps: number;
  readonly epoch?: number;
  readonly totalEpochs?: number;
  readonly stepsPerSecond?: number;
  /** Estimated completion time (ISO 8601), from the rate so far. */
  readonly eta?: string;
  readonly updatedAt: string;
}

/** The ConfigMap key of the progress report. */
export const PROGRESS_KEY = 'progress.json';

/** Where reports go: `namespace/name` of the ConfigMap. */
export interface ReportTarget {
  readonly namespace: string;
  readonly name: string;
}

/** Thrown when the report ConfigMap cannot be written; names it and the likely cause. */
export class ReportError extends Error {
  override readonly name = 'ReportError';
}

/** Writes reports into a ConfigMap; progress is throttled, results are written at once. */
export class ConfigMapReporter {
  private lastProgressAt = -Infinity;
  private pendingProgress: ProgressReport | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly core: CoreV1Api,
    private readonly target: ReportTarget,
    private readonly options: {
      /** Least time between two progress writes. Default: 10 s. */
      readonly minProgressIntervalMs?: number;
      readonly now?: () => number;
      /** Where failed progress writes are reported; they never stop the work. */
      readonly warn?: (message: string) => void;
    } = {},
  ) {}

  /**
   * A reporter for `target`, with in-cluster credentials when running in a pod and the usual
   * kubeconfig (KUBECONFIG, ~/.kube/config) elsewhere.
   */
  static fromEnvironment(target: ReportTarget): ConfigMapReporter {
    const config = new KubeConfig();
    if (process.env.KUBERNETES_SERVICE_HOST) config.loadFromCluster();
    else config.loadFromDefault();
    return new ConfigMapReporter(config.makeApiClient(CoreV1Api), target, {
      warn: (message) => process.stderr.write(`${message}\n`),
    });
  }

  /** Records `report`; written now if the last write is old enough, else with the next one. */
  progress(report: ProgressReport): void {
    this.pendingProgress = report;
    const now = (this.options.now ?? Date.now)();
    if (now - this.lastProgressAt < (this.options.minProgressIntervalMs ?? 10_000)) return;
    this.lastProgressAt = now;
    void this.enqueue(async () => {
      const latest = this.pendingProgress;
      this.pendingProgress = undefined;
      if (latest) await this.write({ [PROGRESS_KEY]: JSON.stringify(latest) });
    }, false);
  }

  /**
   * Writes the last progress report (if unwritten) and `key` = `content` in one patch; rejects
   * with a {@link ReportError} when the ConfigMap cannot be written, since a result the operator
   * never sees is a failed run.
   */
  async publish(key: string, content: string): Promise<void> {
    const data: Record<string, string> = { [key]: content };
    const latest = this.pendingProgress;
    this.pendingProgress = undefined;
    if (latest) data[PROGRESS_KEY] = JSON.stringify(latest);
    await this.enqueue(() => this.write(data), true);
  }

  /** Waits for writes in progress and writes a throttled progress report now. */
  async flush(): Promise<void> {
    const latest = this.pendingProgress;
    this.pendingProgress = undefined;
    if (latest)
      void this.enqueue(() => this.write({ [PROGRESS_KEY]: JSON.stringify(latest) }), false);
    await this.writing;
  }

  /** Runs writes one at a time, in order; a failed progress write is only warned about. */
  private enqueue(write: () => Promise<void>, mustSucceed: boolean): Promise<void> {
    const result = this.writing.then(write);
    this.writing = result.catch((error: unknown) => {
      if (!mustSucceed) this.options.warn?.(`progress report not written: ${String(error)}`);
    });
    return mustSucceed ? result : this.writing;
  }

  private async write(data: Record<string, string>): Promise<void> {
    const { namespace, name } = this.target;
    try {
      await this.core.patchNamespacedConfigMap(
        { namespace, name, body: { data } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      const why =
        code === 404
          ? 'it does not exist (the operator creates it with the Job)'
          : code === 403
            ? "this pod's service account may not patch it"
            : String(error);
      throw new ReportError(`cannot write report ConfigMap ${namespace}/${name}: ${why}`);
    }
  }
}

/**
 * Parses `--report-configmap`: `name` (namespace from POD_NAMESPACE or the service account's
 * namespace file) or `namespace/name`.
 */
export function parseReportTarget(value: string): ReportTarget {
  const parts = value.split('/');
  const dns = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
  const [first, second] = parts;
  if (parts.length > 2 || !first || (parts.length === 2 && !second)) {
    throw new Error(`--report-configmap must be NAME or NAMESPACE/NAME, got '${value}'`);
  }
  const name = second ?? first;
  const namespace = second === undefined ? currentNamespace() : first;
  for (const [what, text] of [
    ['name', name],
    ['namespace', namespace],
  ] as const) {
    if (!dns.test(text)) {
      throw new Error(`--report-configmap: ${what} '${text}' is not a valid Kubernetes name`);
    }
  }
  return { namespace, name };
}

function currentNamespace(): string {
  if (process.env.POD_NAMESPACE) return process.env.POD_NAMESPACE;
  try {
    return readFileSync('/var/run/secrets/kubernetes.io/serviceaccount/namespace', 'utf8').trim();
  } catch {
    throw new Error(
      '--report-configmap NAME needs POD_NAMESPACE or an in-cluster service account; pass NAMESPACE/NAME',
    );
  }
}
