#!/usr/bin/env node
/**
 * `compofa-operator`: the controller process. Flags override environment variables (what the Helm
 * chart sets); `--help` lists them. Exits 2 on a bad setting, 1 when the lease is lost or start-up
 * fails, 0 after SIGTERM once running reconciles have finished and the lease is released.
 */
import { parseArgs } from 'node:util';

import { KubeConfig } from '@kubernetes/client-node';

import { Logger } from '../serving/logger.js';
import type { LogLevel } from '../serving/config.js';
import { DEFAULT_OPERATOR_CONFIG, type OperatorConfig } from './config.js';
import { redactUrl } from './monitoring/prometheus.js';
import { runOperator } from './run.js';

const OPTIONS = {
  'metrics-port': { type: 'string', env: 'COMPOFA_METRICS_PORT', default: '8080' },
  'leader-elect': { type: 'string', env: 'COMPOFA_LEADER_ELECT', default: 'true' },
  'lease-namespace': { type: 'string', env: 'POD_NAMESPACE', default: 'compofa-system' },
  'lease-name': { type: 'string', env: 'COMPOFA_LEASE_NAME', default: 'compofa-operator' },
  'trainer-image': {
    type: 'string',
    env: 'COMPOFA_TRAINER_IMAGE',
    default: DEFAULT_OPERATOR_CONFIG.trainerImage,
  },
  'runtime-image': {
    type: 'string',
    env: 'COMPOFA_RUNTIME_IMAGE',
    default: DEFAULT_OPERATOR_CONFIG.runtimeImage,
  },
  'image-pull-policy': {
    type: 'string',
    env: 'COMPOFA_IMAGE_PULL_POLICY',
    default: DEFAULT_OPERATOR_CONFIG.imagePullPolicy,
  },
  'log-level': { type: 'string', env: 'COMPOFA_LOG_LEVEL', default: 'info' },
  'prometheus-url': {
    type: 'string',
    env: 'COMPOFA_PROMETHEUS_URL',
    default: DEFAULT_OPERATOR_CONFIG.prometheusUrl,
  },
  'drift-check-interval': {
    type: 'string',
    env: 'COMPOFA_DRIFT_CHECK_INTERVAL',
    default: String(DEFAULT_OPERATOR_CONFIG.driftCheckIntervalMs / 1000),
  },
  'max-concurrent-reconciles': {
    type: 'string',
    env: 'COMPOFA_MAX_CONCURRENT_RECONCILES',
    default: String(DEFAULT_OPERATOR_CONFIG.maxConcurrentReconciles),
  },
  'serving-service-account': {
    type: 'string',
    env: 'COMPOFA_SERVING_SERVICE_ACCOUNT',
    default: DEFAULT_OPERATOR_CONFIG.servingServiceAccount,
  },
  help: { type: 'boolean', env: '', default: 'false' },
} as const;

type Name = keyof typeof OPTIONS;

class UsageError extends Error {}

/** A lower-case RFC 1123 subdomain, as service account names are. */
const SERVICE_ACCOUNT_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function usage(): string {
  return [
    'compofa-operator [flags]   (each flag may instead come from its variable)',
    ...Object.entries(OPTIONS)
      .filter(([name]) => name !== 'help')
      .map(
        ([name, option]) =>
          `  --${name.padEnd(18)} ${option.env.padEnd(26)} default ${option.default}`,
      ),
  ].join('\n');
}

function settings(args: readonly string[]): Record<Name, string> {
  const { values } = parseArgs({
    args: [...args],
    options: Object.fromEntries(
      Object.entries(OPTIONS).map(([name, o]) => [name, { type: o.type }]),
    ),
    strict: true,
  });
  return Object.fromEntries(
    Object.entries(OPTIONS).map(([name, option]) => {
      const flag = values[name];
      return [
        name,
        flag === undefined
          ? ((option.env ? process.env[option.env] : undefined) ?? option.default)
          : String(flag),
      ];
    }),
  ) as Record<Name, string>;
}

async function main(args: readonly string[]): Promise<number | undefined> {
  let values: Record<Name, string>;
  try {
    values = settings(args);
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${usage()}\n`);
    return 2;
  }
  if (values.help === 'true') {
    process.stdout.write(`${usage()}\n`);
    return 0;
  }
  const port = Number(values['metrics-port']);
  const pullPolicy = values['image-pull-policy'];
  const level = values['log-level'] as LogLevel;
  const servingAccount = values['serving-service-account'];
  const prometheusUrl = values['prometheus-url'];
  const driftCheckSeconds = Number(values['drift-check-interval']);
  const workers = Number(values['max-concurrent-reconciles']);
  try {
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new UsageError(
        `--metrics-port (COMPOFA_METRICS_PORT) must be a port number, got '${values['metrics-port']}'`,
      );
    }
    if (pullPolicy !== 'Always' && pullPolicy !== 'IfNotPresent' && pullPolicy !== 'Never') {
      throw new UsageError(
        `--image-pull-policy must be Always, IfNotPresent or Never, got '${pullPolicy}'`,
      );
    }
    if (!['debug', 'info', 'warn', 'error'].includes(level)) {
      throw new UsageError(`--log-level must be debug, info, warn or error, got '${level}'`);
    }
    if (prometheusUrl !== '' && !/^https?:\/\/[^/]/.test(prometheusUrl)) {
      throw new UsageError(
        `--prometheus-url (COMPOFA_PROMETHEUS_URL) must be an http:// or https:// URL, got '${redactUrl(prometheusUrl)}'`,
      );
    }
    if (!Number.isFinite(driftCheckSeconds) || driftCheckSeconds < 1) {
      throw new UsageError(
        `--drift-check-interval (COMPOFA_DRIFT_CHECK_INTERVAL) must be a number of seconds >= 1, got '${values['drift-check-interval']}'`,
      );
    }
    if (!Number.isInteger(workers) || workers < 1 || workers > 256) {
      throw new UsageError(
        `--max-concurrent-reconciles (COMPOFA_MAX_CONCURRENT_RECONCILES) must be an integer from 1 to 256, got '${values['max-concurrent-reconciles']}'`,
      );
    }
    if (servingAccount !== '' && !SERVICE_ACCOUNT_NAME.test(servingAccount)) {
      throw new UsageError(
        `--serving-service-account (COMPOFA_SERVING_SERVICE_ACCOUNT) must be a service account name (lower-case DNS subdomain), got '${servingAccount}'`,
      );
    }
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    return 2;
  }
  const config: OperatorConfig = {
    ...DEFAULT_OPERATOR_CONFIG,
    trainerImage: values['trainer-image'],
    runtimeImage: values['runtime-image'],
    imagePullPolicy: pullPolicy,
    servingServiceAccount: servingAccount,
    prometheusUrl,
    driftCheckIntervalMs: driftCheckSeconds * 1000,
    maxConcurrentReconciles: workers,
  };
  const logger = new Logger(level);
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromDefault();
  const running = await runOperator({
    kubeConfig,
    config,
    logger,
    metricsPort: port,
    ...(values['leader-elect'] === 'true'
      ? { leaderElection: { namespace: values['lease-namespace'], name: values['lease-name'] } }
      : {}),
    onLostLeadership: () => {
      process.exit(1);
    },
  });
  const stop = (signal: NodeJS.Signals): void => {
    logger.info('shutdown requested', { signal });
    void running.stop().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  return undefined;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (error: unknown) => {
    new Logger('error').error('operator failed', {
      error: error instanceof Error ? (error.stack ?? error.message) : String(error),
    });
    process.exitCode = 1;
  },
);
