/**
 * The operator's Prometheus metrics, named as controller-runtime names them so that its
 * dashboards and alerts work unchanged. Several queues and controllers share one registry: each
 * family is created once per registry and its series are told apart by label.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** A registry with Node's default process metrics, for the operator's /metrics endpoint. */
export function createOperatorRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** Labels of every workqueue series: controller-runtime sets both to the queue's name. */
export type WorkQueueLabel = 'name' | 'controller';

/** How long a queue's items in progress have run, sampled when the registry is collected. */
export interface ProcessingSample {
  /** Seconds of work in progress summed over its items. */
  readonly unfinishedSeconds: number;
  /** Seconds the oldest item in progress has run (0 when none). */
  readonly longestSeconds: number;
}

/** The workqueue metric families of one registry. */
export interface WorkQueueMetrics {
  readonly depth: Gauge<WorkQueueLabel>;
  readonly adds: Counter<WorkQueueLabel>;
  readonly queueDuration: Histogram<WorkQueueLabel>;
  readonly workDuration: Histogram<WorkQueueLabel>;
  readonly retries: Counter<WorkQueueLabel>;
  /** Set only at collect time, from {@link WorkQueueMetrics.processing}. */
  readonly unfinishedWork: Gauge<WorkQueueLabel>;
  /** Set only at collect time, from {@link WorkQueueMetrics.processing}. */
  readonly longestRunningProcessor: Gauge<WorkQueueLabel>;
  /**
   * Samplers of the live queues by name, read at collect time into the
   * `workqueue_unfinished_work_seconds` and `workqueue_longest_running_processor_seconds` gauges.
   */
  readonly processing: Map<string, () => ProcessingSample>;
}

/** The controller metric families of one registry. */
export interface ControllerMetrics {
  readonly reconcileTotal: Counter<'controller' | 'result'>;
  readonly reconcileErrors: Counter<'controller'>;
  readonly terminalReconcileErrors: Counter<'controller'>;
  readonly reconcileTime: Histogram<'controller'>;
  readonly maxConcurrentReconciles: Gauge<'controller'>;
  readonly activeWorkers: Gauge<'controller'>;
}

/** client-go's ExponentialBuckets(10e-9, 10, 12): 10 ns to 1000 s, written out to stay exact. */
const WORKQUEUE_BUCKETS: readonly number[] = [
  1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1, 10, 100, 1000,
];

/** controller-runtime's reconcile_time_seconds buckets. */
const RECONCILE_BUCKETS: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1,
  1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
];

const workQueueMetricsByRegistry = new WeakMap<Registry, WorkQueueMetrics>();
const controllerMetricsByRegistry = new WeakMap<Registry, ControllerMetrics>();

/** The workqueue metric families of `registry`, registered on first use. */
export function workQueueMetrics(registry: Registry): WorkQueueMetrics {
  let metrics = workQueueMetricsByRegistry.get(registry);
  if (metrics === undefined) {
    metrics = createWorkQueueMetrics(registry);
    workQueueMetricsByRegistry.set(registry, metrics);
  }
  return metrics;
}

/** The controller metric families of `registry`, registered on first use. */
export function controllerMetrics(registry: Registry): ControllerMetrics {
  let metrics = controllerMetricsByRegistry.get(registry);
  if (metrics === undefined) {
    metrics = createControllerMetrics(registry);
    controllerMetricsByRegistry.set(registry, metrics);
  }
  return metrics;
}

function createWorkQueueMetrics(registry: Registry): WorkQueueMetrics {
  const registers = [registry];
  const labelNames: WorkQueueLabel[] = ['name', 'controller'];
  const processing = new Map<string, () => ProcessingSample>();
  // Filled when scraped rather than on a ticker (client-go updates them every 500 ms), so a
  // stuck item shows its full age. Each gauge samples on its own; the reads are microseconds apart.
  const sampled = (pick: (sample: ProcessingSample) => number) =>
    function (this: Gauge<WorkQueueLabel>): void {
      this.reset();
      for (const [name, sample] of processing) {
        this.set({ name, controller: name }, pick(sample()));
      }
    };
  return {
    depth: new Gauge({
      name: 'workqueue_depth',
      help: 'Current depth of workqueue',
      labelNames,
      registers,
    }),
    adds: new Counter({
      name: 'workqueue_adds_total',
      help: 'Total number of adds handled by workqueue',
      labelNames,
      registers,
    }),
    queueDuration: new Histogram({
      name: 'workqueue_queue_duration_seconds',
      help: 'How long in seconds an item stays in workqueue before being requested',
      labelNames,
      buckets: [...WORKQUEUE_BUCKETS],
      registers,
    }),
    workDuration: new Histogram({
      name: 'workqueue_work_duration_seconds',
      help: 'How long in seconds processing an item from workqueue takes.',
      labelNames,
      buckets: [...WORKQUEUE_BUCKETS],
      registers,
    }),
    retries: new Counter({
      name: 'workqueue_retries_total',
      help: 'Total number of retries handled by workqueue',
      labelNames,
      registers,
    }),
    unfinishedWork: new Gauge({
      name: 'workqueue_unfinished_work_seconds',
      help:
        "How many seconds of work has been done that is in progress and hasn't been observed by " +
        'work_duration. Large values indicate stuck threads. One can deduce the number of stuck ' +
        'threads by observing the rate at which this increases.',
      labelNames,
      registers,
      collect: sampled((s) => s.unfinishedSeconds),
    }),
    longestRunningProcessor: new Gauge({
      name: 'workqueue_longest_running_processor_seconds',
      help: 'How many seconds has the longest running processor for workqueue been running.',
      labelNames,
      registers,
      collect: sampled((s) => s.longestSeconds),
    }),
    processing,
  };
}

function createControllerMetrics(registry: Registry): ControllerMetrics {
  const registers = [registry];
  const labelNames = ['controller'] as const;
  return {
    reconcileTotal: new Counter({
      name: 'controller_runtime_reconcile_total',
      help: 'Total number of reconciliations per controller',
      labelNames: ['controller', 'result'],
      registers,
    }),
    reconcileErrors: new Counter({
      name: 'controller_runtime_reconcile_errors_total',
      help: 'Total number of reconciliation errors per controller',
      labelNames,
      registers,
    }),
    terminalReconcileErrors: new Counter({
      name: 'controller_runtime_terminal_reconcile_errors_total',
      help: 'Total number of terminal reconciliation errors per controller',
      labelNames,
      registers,
    }),
    reconcileTime: new Histogram({
      name: 'controller_runtime_reconcile_time_seconds',
      help: 'Length of time per reconciliation per controller',
      labelNames,
      buckets: [...RECONCILE_BUCKETS],
      registers,
    }),
    maxConcurrentReconciles: new Gauge({
      name: 'controller_runtime_max_concurrent_reconciles',
      help: 'Maximum number of concurrent reconciles per controller',
      labelNames,
      registers,
    }),
    activeWorkers: new Gauge({
      name: 'controller_runtime_active_workers',
      help: 'Number of currently used workers per controller',
      labelNames,
      registers,
    }),
  };
}
