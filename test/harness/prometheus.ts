/**
 * A real Prometheus for tests: the server built by scripts/build-chart-tools.sh, on a free loopback
 * port, with its own storage in a temporary folder and a generated prometheus.yml that scrapes the
 * given host:port targets every second. Extra target labels stand in for what Kubernetes service
 * discovery adds in a cluster (the chart's PodMonitor gives every serving pod's series `namespace`,
 * `pod`, `container`, ...).
 */
import { rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import yaml from 'js-yaml';

import { freeLoopbackPort } from './network.js';
import { ManagedProcess, onAbnormalExit } from './processes.js';
import { runCommand } from './run-command.js';
import { GiveUpWaiting, waitFor } from './wait.js';

const buildScript = fileURLToPath(new URL('../../scripts/build-chart-tools.sh', import.meta.url));

/** One scrape job's target. */
export interface ScrapeTarget {
  /** `host:port`, e.g. `127.0.0.1:8080`. */
  readonly address: string;
  /** Added to every series of the target, e.g. `{ namespace: 'shop', pod: 'edge-0' }`. */
  readonly labels?: Readonly<Record<string, string>>;
  /** Default `/metrics`. */
  readonly metricsPath?: string;
}

/** Options of {@link TestPrometheus.start}. */
export interface TestPrometheusOptions {
  /** Scraped by one static job; or give whole `scrapeConfigs`. */
  readonly targets?: readonly ScrapeTarget[];
  /** prometheus.yml's `scrape_configs` as they are, instead of `targets`. */
  readonly scrapeConfigs?: readonly object[];
  /** Rule groups (a rules file's `groups`, a PrometheusRule's `spec.groups`) to evaluate. */
  readonly ruleGroups?: readonly unknown[];
  /** The address to listen on; default 127.0.0.1. */
  readonly host?: string;
  /** Default: a free port. */
  readonly port?: number;
  /** The scrape job's name (the `job` label); default `compofa-serving`. */
  readonly job?: string;
  /** Default 1 s, so that a test sees new samples quickly. */
  readonly scrapeIntervalSeconds?: number;
  /** The prometheus executable; default: the one of scripts/build-chart-tools.sh. */
  readonly binary?: string;
  /** Default 30 s: Prometheus is ready in about a second on an idle machine. */
  readonly startTimeoutMs?: number;
}

/**
 * The prometheus binary of scripts/build-chart-tools.sh, which builds it on first use (minutes;
 * cached afterwards). Throws with the script's last messages when it fails.
 */
export async function resolvePrometheusBinary(): Promise<string> {
  const built = await runCommand('bash', [buildScript]);
  if (built.code !== 0)
    throw new Error(
      `scripts/build-chart-tools.sh failed:\n${built.stderr.trim().split('\n').slice(-15).join('\n')}`,
    );
  const dir = built.stdout.trim().split('\n').at(-1) ?? '';
  return join(dir, 'prometheus');
}

/**
 * The prometheus.yml of one static scrape job over every target (or of `scrapeConfigs`), with
 * `ruleFile` when there are rule groups.
 */
export function scrapeConfig(options: TestPrometheusOptions, ruleFile?: string): string {
  const interval = `${options.scrapeIntervalSeconds ?? 1}s`;
  const config = {
    global: { scrape_interval: interval, evaluation_interval: interval },
    ...(ruleFile === undefined ? {} : { rule_files: [ruleFile] }),
    scrape_configs: options.scrapeConfigs ?? [
      {
        job_name: options.job ?? 'compofa-serving',
        scrape_timeout: interval,
        static_configs: (options.targets ?? []).map((target) => ({
          targets: [target.address],
          labels: {
            ...target.labels,
            // The relabeling-time label that sets a target's path, as service discovery would.
            ...(target.metricsPath ? { __metrics_path__: target.metricsPath } : {}),
          },
        })),
      },
    ],
  };
  return yaml.dump(config);
}

/** One alert of `/api/v1/alerts`. */
export interface PrometheusAlert {
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  readonly state: 'pending' | 'firing';
  readonly activeAt: string;
  readonly value: string;
}

/** A running Prometheus; {@link stop} it in an `after` hook. */
export class TestPrometheus {
  private stopped = false;

  private constructor(
    /** `http://127.0.0.1:PORT`, the root of the HTTP API. */
    readonly url: string,
    /** Holds prometheus.yml, prometheus.log and the storage; deleted by {@link stop}. */
    readonly dir: string,
    private readonly process: ManagedProcess,
    private readonly forgetDir: () => void,
  ) {}

  /** Starts Prometheus and resolves once `/-/ready` answers 200. */
  static async start(options: TestPrometheusOptions): Promise<TestPrometheus> {
    const binary = options.binary ?? (await resolvePrometheusBinary());
    const dir = await mkdtemp(join(tmpdir(), 'compofa-prometheus-'));
    const forgetDir = onAbnormalExit(() => {
      rmSync(dir, { recursive: true, force: true });
    });
    const configFile = join(dir, 'prometheus.yml');
    let ruleFile: string | undefined;
    if (options.ruleGroups !== undefined) {
      ruleFile = join(dir, 'rules.yml');
      await writeFile(ruleFile, yaml.dump({ groups: options.ruleGroups }));
    }
    await writeFile(configFile, scrapeConfig(options, ruleFile));
    const host = options.host ?? '127.0.0.1';
    const port = options.port ?? (await freeLoopbackPort(host));
    const process = await ManagedProcess.start({
      name: 'prometheus',
      command: binary,
      args: [
        `--config.file=${configFile}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=${host}:${port}`,
      ],
      logFile: join(dir, 'prometheus.log'),
      cwd: dir,
    });
    const prometheus = new TestPrometheus(`http://${host}:${port}`, dir, process, forgetDir);
    try {
      await prometheus.awaitReady(options.startTimeoutMs ?? 30_000);
    } catch (error) {
      await prometheus.stop();
      throw error;
    }
    return prometheus;
  }

  /** The alerts Prometheus holds now (pending and firing), from `/api/v1/alerts`. */
  async alerts(): Promise<PrometheusAlert[]> {
    const response = await fetch(`${this.url}/api/v1/alerts`, {
      signal: AbortSignal.timeout(5_000),
    });
    if (!response.ok) throw new Error(`${this.url}/api/v1/alerts answered ${response.status}`);
    const body = (await response.json()) as { data?: { alerts?: PrometheusAlert[] } };
    return body.data?.alerts ?? [];
  }

  /** The last lines of Prometheus' log, for assertion messages. */
  logTail(lines = 20): Promise<string> {
    return this.process.logTail(lines);
  }

  /** SIGTERM (SIGKILL after 10 s), then deletes the folder. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.process.stop(10_000);
    await rm(this.dir, { recursive: true, force: true });
    this.forgetDir();
  }

  private async awaitReady(timeoutMs: number): Promise<void> {
    try {
      await waitFor(
        async () => {
          if (!this.process.isRunning)
            throw new GiveUpWaiting(`prometheus ended with ${this.process.describeExit()}`);
          const response = await fetch(`${this.url}/-/ready`, {
            signal: AbortSignal.timeout(1_000),
          });
          await response.body?.cancel();
          return response.status === 200;
        },
        { description: `prometheus at ${this.url} to be ready`, timeoutMs, intervalMs: 100 },
      );
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error);
      throw new Error(`${why}\nlast lines of its log:\n${await this.process.logTail(25)}`);
    }
  }
}
