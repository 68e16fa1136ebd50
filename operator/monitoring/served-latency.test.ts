/**
 * The served-latency query and the WithinBudget policy, pure; then the whole path with real
 * processes: compofa-serve on the tiny fixture model, answering requests, scraped every second by
 * a real Prometheus (built by scripts/build-chart-tools.sh) with the `namespace` label the chart's
 * PodMonitor adds, and read back through PrometheusClient.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';

import { writeServedModel } from '../../test/fixtures/served-model.js';
import { freeLoopbackPort } from '../../test/harness/network.js';
import { resolvePrometheusBinary, TestPrometheus } from '../../test/harness/prometheus.js';
import { waitFor } from '../../test/harness/wait.js';
import { parseConfig } from '../../serving/config.js';
import { Logger } from '../../serving/logger.js';
import { LATENCY_BUCKETS_SECONDS } from '../../serving/metrics.js';
import { startServing, type RunningServer } from '../../serving/serve.js';
import { loadTensorFlow } from '../../trainer/backend.js';
import { PrometheusClient } from './prometheus.js';
import {
  assessServedLatency,
  escapeLabelValue,
  formatMs,
  metricsUnavailable,
  readServedLatency,
  servedLatencyQuery,
  withinBudget,
  type ServedLatencyTarget,
} from './served-latency.js';

const EDGE: ServedLatencyTarget = {
  namespace: 'shop',
  name: 'edge',
  statistic: 'p95',
  window: '10m',
};

describe('servedLatencyQuery', () => {
  it("is the chart alert's quantile, summed over the target's pods", () => {
    assert.equal(
      servedLatencyQuery(EDGE),
      'histogram_quantile(0.95, sum by (le) (rate(compofa_inference_duration_seconds_bucket{namespace="shop",target="edge"}[10m])))',
    );
    assert.match(
      servedLatencyQuery({ ...EDGE, statistic: 'median', window: '1h30m' }),
      /^histogram_quantile\(0\.5, .*\[1h30m\]\)\)\)$/,
    );
    assert.match(
      servedLatencyQuery({ ...EDGE, subnet: 'r28-d2e3-d2e3-d2e3-d2e3-d2e3' }),
      /\{namespace="shop",target="edge",subnet="r28-d2e3-d2e3-d2e3-d2e3-d2e3"\}\[10m\]/,
    );
  });

  it('escapes label values as PromQL strings', () => {
    assert.equal(escapeLabelValue('a"b\\c\nd\te\rf'), 'a\\"b\\\\c\\nd\\te\\rf');
    assert.equal(escapeLabelValue('plain-ü'), 'plain-ü');
    assert.match(
      servedLatencyQuery({ ...EDGE, name: 'x"}[1m]) or vector(1) #' }),
      /target="x\\"}\[1m\]\) or vector\(1\) #"}\[10m\]/,
    );
  });

  it('refuses a window that is not a duration, and an empty namespace or name', () => {
    for (const window of ['10', '5m]) or up[5m', '', '1.5m'])
      assert.throws(
        () => servedLatencyQuery({ ...EDGE, window }),
        /expected the window to be a Prometheus duration such as 30s, 10m or 1h30m, got/,
      );
    assert.throws(() => servedLatencyQuery({ ...EDGE, namespace: '' }), /non-empty namespace/);
    assert.throws(() => servedLatencyQuery({ ...EDGE, name: '' }), /target name/);
  });
});

describe('withinBudget', () => {
  const over = { statistic: 'p95', window: '10m' } as const;

  it('is True up to budget x (1 + tolerance), equal included', () => {
    assert.deepEqual(withinBudget(4.2, 10, 0.1, over), {
      type: 'WithinBudget',
      status: 'True',
      reason: 'WithinBudget',
      message: 'p95 4.2 ms over 10m is within the budget 10 ms x 1.1 (11 ms)',
    });
    assert.equal(withinBudget(11, 10, 0.1, over).status, 'True');
    assert.equal(withinBudget(10, 10, 0, over).status, 'True');
    assert.equal(withinBudget(0, 10, 0, over).status, 'True');
  });

  it('is False (LatencyAboveBudget) above it, with the numbers', () => {
    assert.deepEqual(withinBudget(12.34, 10, 0.1, over), {
      type: 'WithinBudget',
      status: 'False',
      reason: 'LatencyAboveBudget',
      message: 'p95 12.3 ms over 10m is above the budget 10 ms x 1.1 (11 ms)',
    });
    assert.equal(withinBudget(11.001, 10, 0.1, over).reason, 'LatencyAboveBudget');
    assert.equal(withinBudget(10.0001, 10, 0, over).reason, 'LatencyAboveBudget');
    assert.equal(withinBudget(Infinity, 10, 10, over).status, 'False');
    assert.equal(
      withinBudget(250.4, 100, 0.25).message,
      'served latency 250 ms is above the budget 100 ms x 1.25 (125 ms)',
    );
  });

  it('is Unknown (NoTraffic) without a measurement', () => {
    for (const measured of [undefined, NaN])
      assert.deepEqual(withinBudget(measured, 10, 0.1, { statistic: 'median', window: '5m' }), {
        type: 'WithinBudget',
        status: 'Unknown',
        reason: 'NoTraffic',
        message: 'no requests were served over 5m, so the median latency is unknown',
      });
  });

  it('refuses budgets, tolerances and measurements that cannot be', () => {
    assert.throws(() => withinBudget(1, 0, 0.1), /expected a positive, finite latency budget/);
    assert.throws(() => withinBudget(1, NaN, 0.1), /latency budget in ms, got NaN/);
    assert.throws(() => withinBudget(1, 10, -0.1), /expected a tolerance >= 0/);
    assert.throws(() => withinBudget(-1, 10, 0.1), /expected a measured latency >= 0 ms/);
  });

  it('formats milliseconds to three significant digits below 100', () => {
    assert.deepEqual([0.4234, 1, 12.345, 99.94, 100.4, 1234.5].map(formatMs), [
      '0.423',
      '1',
      '12.3',
      '99.9',
      '100',
      '1235',
    ]);
  });

  it('says Unknown (MetricsUnavailable) with the error when Prometheus cannot be read', () => {
    assert.deepEqual(metricsUnavailable(new Error('Prometheus at http://p: timeout: slow')), {
      type: 'WithinBudget',
      status: 'Unknown',
      reason: 'MetricsUnavailable',
      message: 'cannot read the served latency: Prometheus at http://p: timeout: slow',
    });
  });
});

/** Where `seconds` falls among the histogram's buckets: the index of its upper bound. */
function bucketOf(seconds: number): number {
  const index = LATENCY_BUCKETS_SECONDS.findIndex((bound) => seconds <= bound);
  return index === -1 ? LATENCY_BUCKETS_SECONDS.length : index;
}

/** The bounds of bucket `index` in seconds (the last finite bound for the +Inf bucket). */
function bucketBounds(index: number): { lower: number; upper: number } {
  const last = LATENCY_BUCKETS_SECONDS.at(-1) ?? NaN;
  return {
    lower: index === 0 ? 0 : (LATENCY_BUCKETS_SECONDS[index - 1] ?? last),
    upper: LATENCY_BUCKETS_SECONDS[index] ?? last,
  };
}

/** Prometheus' histogram_quantile over exact observations: the rank's bucket, interpolated. */
function histogramQuantile(quantile: number, observations: readonly number[]): number {
  const rank = quantile * observations.length;
  let below = 0;
  for (const [i, upper] of LATENCY_BUCKETS_SECONDS.entries()) {
    const inBucket = observations.filter((s) => bucketOf(s) === i).length;
    if (below + inBucket >= rank) {
      const { lower } = bucketBounds(i);
      return lower + (upper - lower) * ((rank - below) / inBucket);
    }
    below += inBucket;
  }
  return LATENCY_BUCKETS_SECONDS.at(-1) ?? NaN;
}

/** The exact quantile of the observations, sorted. */
function exactQuantile(quantile: number, observations: readonly number[]): number {
  const sorted = [...observations].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(quantile * sorted.length) - 1)] ?? NaN;
}

describe('served latency from a real Prometheus', () => {
  /** Requests before the measured ones: Prometheus' first samples, which rate() starts from. */
  const WARM_UP = 3;
  /** The measured requests: as many as fit in TRAFFIC_MS, within these bounds. */
  const MIN_REQUESTS = 20;
  const MAX_REQUESTS = 60;
  const TRAFFIC_MS = 5_000;
  const SELECTOR = '{namespace="shop",target="edge"}';
  const logs: string[] = [];
  let dir: string;
  let server: RunningServer | undefined;
  let prometheus: TestPrometheus | undefined;
  let client: PrometheusClient;
  /** The inference durations of the server's Server-Timing headers, in seconds. */
  const timings: number[] = [];

  async function infer(base: string): Promise<void> {
    const body = {
      inputs: [
        { name: 'image', datatype: 'FP32', shape: [1, 16, 16, 1], data: Array(256).fill(0.5) },
      ],
    };
    const response = await fetch(`${base}/v2/models/compofa/infer`, {
      method: 'POST',
      body: JSON.stringify(body),
    });
    assert.equal(response.status, 200, await response.text());
    const timing = /^inference;dur=([\d.]+)$/.exec(response.headers.get('server-timing') ?? '');
    assert.ok(timing?.[1], 'expected a Server-Timing header with the inference duration');
    timings.push(Number(timing[1]) / 1000);
  }

  /** Waits until Prometheus has scraped `count` requests in all. */
  async function scraped(count: number): Promise<void> {
    await waitFor(
      async () => {
        const [sample] = await client.queryVector(
          `sum(compofa_inference_duration_seconds_count${SELECTOR})`,
        );
        return sample?.value === count;
      },
      { description: `Prometheus to have scraped ${count} requests`, timeoutMs: 15_000 },
    );
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'compofa-served-latency-'));
    const [{ tf }, binary] = await Promise.all([
      loadTensorFlow({ purpose: 'inference' }),
      resolvePrometheusBinary(),
    ]);
    await writeServedModel(tf, join(dir, 'model'));
    const config = parseConfig(
      ['--model-dir', join(dir, 'model'), '--host', '127.0.0.1', '--port', '0', '--target', 'edge'],
      {},
    );
    server = await startServing(config, tf, new Logger('info', (line) => logs.push(line)));
    await server.loaded;
    prometheus = await TestPrometheus.start({
      binary,
      targets: [
        { address: `127.0.0.1:${server.port}`, labels: { namespace: 'shop', pod: 'edge-0' } },
      ],
    });
    client = new PrometheusClient(prometheus.url);
    const base = `http://127.0.0.1:${server.port}`;
    for (let i = 0; i < WARM_UP; i++) await infer(base);
    await scraped(WARM_UP);
    // Spread over a few scrapes, as steady traffic would be; a busy machine sends fewer.
    const until = Date.now() + TRAFFIC_MS;
    while (
      timings.length < WARM_UP + MIN_REQUESTS ||
      (timings.length < WARM_UP + MAX_REQUESTS && Date.now() < until)
    ) {
      await infer(base);
      await sleep(40);
    }
    await scraped(timings.length);
  });
  after(async () => {
    await prometheus?.stop();
    await server?.shutdown();
    await rm(dir, { recursive: true, force: true });
  });

  it('has the labels the query selects on: the namespace from the scrape, the target from the pod', async () => {
    const samples = await client.queryVector('compofa_inference_duration_seconds_count');
    assert.equal(samples.length, 1);
    const labels = samples[0]?.metric ?? {};
    assert.equal(labels.namespace, 'shop');
    assert.equal(labels.target, 'edge');
    assert.equal(labels.model, 'compofa');
    assert.equal(labels.job, 'compofa-serving');
    assert.match(labels.subnet ?? '', /^r\d+-/);
  });

  it("stores the buckets of the server's own inference timings", async () => {
    const [sample] = await client.queryVector(
      `histogram_quantile(0.95, sum by (le) (compofa_inference_duration_seconds_bucket${SELECTOR}))`,
    );
    const stored = sample?.value ?? NaN;
    // Server-Timing is rounded to the microsecond: a timing that close to a bucket bound may have
    // been counted in either bucket, and the quantile grows with every timing.
    const low = histogramQuantile(
      0.95,
      timings.map((s) => s - 1e-6),
    );
    const high = histogramQuantile(
      0.95,
      timings.map((s) => s + 1e-6),
    );
    assert.ok(
      stored >= low - 1e-9 && stored <= high + 1e-9,
      `p95 of all requests: ${stored} s in Prometheus, [${low}, ${high}] s from Server-Timing`,
    );
  });

  it('measures a p95 over the window within the bucket resolution of the timings', async (t) => {
    const reading = await readServedLatency(client, { ...EDGE, window: '1m' });
    const measured = reading.measuredMs;
    assert.ok(
      measured !== undefined && Number.isFinite(measured) && measured > 0,
      `p95 ${measured}`,
    );
    // rate() counts from the first scrape (after the warm-up) and extrapolates each bucket's
    // series a little differently, which moves the rank by a few requests: p85 to the largest.
    const window = timings.slice(WARM_UP);
    const lower = bucketBounds(bucketOf(exactQuantile(0.85, window))).lower * 1000;
    const upper = bucketBounds(bucketOf(Math.max(...window))).upper * 1000;
    t.diagnostic(
      `p95 ${measured} ms from Prometheus; Server-Timing: p95 ${exactQuantile(0.95, window) * 1000} ms, allowed [${lower}, ${upper}] ms`,
    );
    assert.ok(
      measured >= lower && measured <= upper,
      `p95 ${measured} ms from Prometheus, outside [${lower}, ${upper}] ms`,
    );
    const median = await readServedLatency(client, { ...EDGE, statistic: 'median', window: '1m' });
    assert.ok(
      (median.measuredMs ?? NaN) <= measured,
      `median ${median.measuredMs} <= p95 ${measured}`,
    );
    assert.ok(
      Math.abs(reading.at.getTime() - Date.now()) < 60_000,
      `evaluated at ${reading.at.toISOString()}`,
    );
    // Narrowed to the subnet the pod serves, the same; to another subnet, nothing.
    const [series] = await client.queryVector('compofa_inference_duration_seconds_count');
    const subnet = series?.metric.subnet ?? '';
    const own = await readServedLatency(client, { ...EDGE, window: '1m', subnet }, reading.at);
    const all = await readServedLatency(client, { ...EDGE, window: '1m' }, reading.at);
    assert.ok(own.measuredMs !== undefined && own.measuredMs > 0);
    assert.equal(own.measuredMs, all.measuredMs);
    const other = await readServedLatency(client, {
      ...EDGE,
      window: '1m',
      subnet: `${subnet}-not`,
    });
    assert.equal(other.measuredMs, undefined);
  });

  it('is WithinBudget for a huge budget and LatencyAboveBudget for a tiny one', async () => {
    const roomy = await assessServedLatency(client, {
      ...EDGE,
      window: '1m',
      budgetMs: 600_000,
      tolerance: 0.1,
    });
    assert.equal(roomy.condition.status, 'True', roomy.condition.message);
    assert.equal(roomy.condition.reason, 'WithinBudget');
    assert.ok((roomy.measuredLatencyMs ?? 0) > 0);
    assert.ok(roomy.measuredAt !== undefined && !Number.isNaN(Date.parse(roomy.measuredAt)));
    const tight = await assessServedLatency(client, {
      ...EDGE,
      window: '1m',
      budgetMs: 0.001,
      tolerance: 0.1,
    });
    assert.equal(tight.condition.status, 'False');
    assert.equal(tight.condition.reason, 'LatencyAboveBudget');
    assert.match(
      tight.condition.message,
      /^p95 [\d.]+ ms over 1m is above the budget 0\.001 ms x 1\.1 \(0\.0011 ms\)$/,
    );
  });

  it('gives NoTraffic for a target without series, even one whose name needs escaping', async () => {
    for (const name of ['other', 'we"ird\\name\n'])
      assert.deepEqual(
        (
          await assessServedLatency(client, {
            ...EDGE,
            name,
            window: '1m',
            budgetMs: 10,
            tolerance: 0.1,
          })
        ).condition,
        {
          type: 'WithinBudget',
          status: 'Unknown',
          reason: 'NoTraffic',
          message: 'no requests were served over 1m, so the p95 latency is unknown',
        },
      );
  });

  it('gives MetricsUnavailable naming the URL, without credentials, when Prometheus is unreachable', async () => {
    const port = await freeLoopbackPort();
    const unreachable = new PrometheusClient(`http://operator:s3cret@127.0.0.1:${port}`, {
      timeoutMs: 2_000,
    });
    const assessment = await assessServedLatency(unreachable, {
      ...EDGE,
      budgetMs: 10,
      tolerance: 0.1,
    });
    assert.equal(assessment.measuredLatencyMs, undefined);
    assert.equal(assessment.condition.status, 'Unknown');
    assert.equal(assessment.condition.reason, 'MetricsUnavailable');
    assert.match(
      assessment.condition.message,
      new RegExp(
        `^cannot read the served latency: Prometheus at http://127\\.0\\.0\\.1:${port}: network: `,
      ),
    );
    assert.doesNotMatch(assessment.condition.message, /s3cret|operator/);
  });

  it('gives NoTraffic once the requests have stopped for longer than the window (NaN)', async () => {
    const short = { ...EDGE, window: '2s' };
    await waitFor(
      async () => {
        const [sample] = await client.queryVector(servedLatencyQuery(short));
        return sample !== undefined && Number.isNaN(sample.value);
      },
      { description: 'the 2s quantile to be NaN after the traffic stopped', timeoutMs: 10_000 },
    );
    const assessment = await assessServedLatency(client, {
      ...short,
      budgetMs: 10,
      tolerance: 0.1,
    });
    assert.equal(assessment.condition.reason, 'NoTraffic');
    assert.equal(assessment.measuredLatencyMs, undefined);
  });
});
