/**
 * The serving pod's Prometheus metrics. Names and labels are part of the product: the chart's
 * PrometheusRule compares the quantile `compofa_latency_budget_quantile` of
 * `compofa_inference_duration_seconds` against `compofa_latency_budget_seconds`, so the budget
 * and its statistic live here once rather than in every rule.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

import { STATISTIC_QUANTILES, type LatencyStatistic } from '../compofa/tables.js';

/** The DeploymentTarget's latency budget as the serving pod exports it. */
export interface LatencyBudget {
  readonly budgetMs: number;
  /** Allowed excess before a drift alert: budget x (1 + tolerance). */
  readonly tolerance: number;
  /** Which statistic of the served latency the budget bounds. */
  readonly statistic: LatencyStatistic;
}

/**
 * Latency buckets in seconds: 0.5 ms steps near the bottom so that budgets of a few milliseconds
 * are resolved, widening to 10 s for the slowest hardware.
 */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05,
  0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2.5, 5, 10,
];

/** Model call sizes: powers of two up to the largest batch the server accepts. */
const BATCH_BUCKETS: readonly number[] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

/** What the pod serves, known from its configuration before the model is loaded. */
export interface ServedIdentity {
  readonly model: string;
  readonly version: string;
  readonly target: string;
}

/** What the loaded model says about itself. */
export interface LoadedModelFacts {
  readonly subnet: string;
  readonly resolution: number;
  readonly designSpace: string;
}

/** Every metric of one server, in its own registry. */
export class ServingMetrics {
  readonly registry = new Registry();
  private readonly inference: Histogram<'model' | 'target' | 'subnet'>;
  private readonly requests: Counter<'route' | 'method' | 'code'>;
  private readonly inFlightGauge: Gauge;
  private readonly batchSizes: Histogram<'model'>;
  private readonly modelInfo: Gauge<
    'model' | 'version' | 'target' | 'subnet' | 'resolution' | 'design_space'
  >;
  private readonly latencyBudget: Gauge<'model' | 'target' | 'subnet'>;
  private readonly latencyTolerance: Gauge<'model' | 'target' | 'subnet'>;
  private readonly latencyQuantile: Gauge<'model' | 'target' | 'subnet'>;
  /** Labels of the inference metrics; the subnet is filled in once the model is loaded. */
  private labels: { model: string; target: string; subnet: string };

  constructor(
    private readonly identity: ServedIdentity,
    /** Undefined when the pod serves no DeploymentTarget with a budget. */
    private readonly budget: LatencyBudget | undefined,
  ) {
    collectDefaultMetrics({ register: this.registry });
    const registers = [this.registry];
    this.labels = { model: identity.model, target: identity.target, subnet: '' };
    this.inference = new Histogram({
      name: 'compofa_inference_duration_seconds',
      help: 'Time from a parsed request to its result: queueing for a batch plus the model call.',
      labelNames: ['model', 'target', 'subnet'],
      buckets: [...LATENCY_BUCKETS_SECONDS],
      registers,
    });
    this.requests = new Counter({
      name: 'compofa_http_requests_total',
      help: 'HTTP requests answered, by route template, method and status code.',
      labelNames: ['route', 'method', 'code'],
      registers,
    });
    this.inFlightGauge = new Gauge({
      name: 'compofa_http_requests_in_flight',
      help: 'HTTP requests being served now.',
      registers,
    });
    this.batchSizes = new Histogram({
      name: 'compofa_inference_batch_size',
      help: 'Images per model call (above 1 when requests carry batches or are merged).',
      labelNames: ['model'],
      buckets: [...BATCH_BUCKETS],
      registers,
    });
    this.modelInfo = new Gauge({
      name: 'compofa_model_info',
      help: 'Always 1 once the model is loaded; labels describe the served model.',
      labelNames: ['model', 'version', 'target', 'subnet', 'resolution', 'design_space'],
      registers,
    });
    // The budget's gauges carry the inference histogram's labels, so rules join on them.
    const budgetGauge = (name: string, help: string) =>
      new Gauge({ name, help, labelNames: ['model', 'target', 'subnet'] as const, registers });
    this.latencyBudget = budgetGauge(
      'compofa_latency_budget_seconds',
      "The DeploymentTarget's latency budget, for alert rules to compare against.",
    );
    this.latencyTolerance = budgetGauge(
      'compofa_latency_tolerance_ratio',
      'How far above the budget the served latency may go before a drift alert fires.',
    );
    this.latencyQuantile = budgetGauge(
      'compofa_latency_budget_quantile',
      'The quantile of the served latency the budget bounds: 0.5 (median) or 0.95 (p95).',
    );
  }

  /** Sets the labels and gauges that depend on the loaded model. */
  modelLoaded(facts: LoadedModelFacts): void {
    this.labels = { ...this.labels, subnet: facts.subnet };
    this.modelInfo.set(
      {
        model: this.identity.model,
        version: this.identity.version,
        target: this.identity.target,
        subnet: facts.subnet,
        resolution: String(facts.resolution),
        design_space: facts.designSpace,
      },
      1,
    );
    if (this.budget) {
      this.latencyBudget.set(this.labels, this.budget.budgetMs / 1000);
      this.latencyTolerance.set(this.labels, this.budget.tolerance);
      this.latencyQuantile.set(this.labels, STATISTIC_QUANTILES[this.budget.statistic]);
    }
  }

  observeInference(seconds: number): void {
    this.inference.observe(this.labels, seconds);
  }

  observeBatch(size: number): void {
    this.batchSizes.observe({ model: this.labels.model }, size);
  }

  countRequest(route: string, method: string, code: number): void {
    this.requests.inc({ route, method, code: String(code) });
  }

  requestStarted(): void {
    this.inFlightGauge.inc();
  }

  requestFinished(): void {
    this.inFlightGauge.dec();
  }

  /** The text exposition format and its content type. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
