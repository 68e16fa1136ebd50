/**
 * One operator replica's life: serve health and metrics, fill the caches, then compete for the
 * Lease and run the controllers only while leading, so two replicas never both act. Losing the
 * lease ends the process (as controller-runtime does): a replica that may have missed renewals
 * cannot know what the other leader did meanwhile.
 */
import { hostname } from 'node:os';

import { CoordinationV1Api, type KubeConfig } from '@kubernetes/client-node';

import type { OperatorConfig } from './config.js';
import { Manager } from './manager.js';
import type { OperatorLogger } from './runtime/controller.js';
import { LeaderElector, type StoppedLeadingReason } from './runtime/leader-election.js';

/** Options of {@link runOperator}. */
export interface RunOptions {
  readonly kubeConfig: KubeConfig;
  readonly config: OperatorConfig;
  readonly logger: OperatorLogger;
  /** Port of `/metrics`, `/healthz`, `/readyz`; 0 picks a free one. */
  readonly metricsPort: number;
  readonly metricsHost?: string;
  /** Compete for this Lease; undefined runs the controllers at once (a single replica). */
  readonly leaderElection?: {
    readonly namespace: string;
    readonly name: string;
    readonly leaseDurationMs?: number;
    readonly renewDeadlineMs?: number;
    readonly retryPeriodMs?: number;
  };
  readonly identity?: string;
  readonly resyncMs?: number;
  /** Called when leadership is lost; the process should exit non-zero. */
  readonly onLostLeadership?: (reason: StoppedLeadingReason) => void;
}

/** A running replica. */
export interface RunningOperator {
  readonly identity: string;
  readonly manager: Manager;
  readonly metricsPort: number;
  /** True while this replica runs the controllers. */
  readonly leading: boolean;
  /** Stops the controllers, then gives the Lease up so a standby takes over at once. */
  stop(): Promise<void>;
}

/** Starts a replica; resolves once its caches are filled (it may still be waiting to lead). */
export async function runOperator(options: RunOptions): Promise<RunningOperator> {
  const identity = options.identity ?? `${hostname()}-${process.pid}`;
  const manager = new Manager({
    kubeConfig: options.kubeConfig,
    config: options.config,
    logger: options.logger,
    identity,
    ...(options.resyncMs === undefined ? {} : { resyncMs: options.resyncMs }),
  });
  const metricsPort = await manager.serve(options.metricsPort, options.metricsHost);
  await manager.startCaches();
  options.logger.info('caches synced', { identity, metricsPort });

  let leading = false;
  let elector: LeaderElector | undefined;
  const election = options.leaderElection;
  if (election) {
    elector = new LeaderElector({
      api: options.kubeConfig.makeApiClient(CoordinationV1Api),
      namespace: election.namespace,
      name: election.name,
      identity,
      ...(election.leaseDurationMs === undefined
        ? {}
        : { leaseDurationMs: election.leaseDurationMs }),
      ...(election.renewDeadlineMs === undefined
        ? {}
        : { renewDeadlineMs: election.renewDeadlineMs }),
      ...(election.retryPeriodMs === undefined ? {} : { retryPeriodMs: election.retryPeriodMs }),
      logger: options.logger,
      onStartedLeading: () => {
        leading = true;
        options.logger.info('leading: starting controllers', { identity });
        manager.startControllers();
      },
      onStoppedLeading: (reason) => {
        const wasLeading = leading;
        leading = false;
        if (reason === 'lost' && wasLeading) {
          options.logger.error('lost the lease: stopping', { identity });
          options.onLostLeadership?.(reason);
        }
      },
      onNewLeader: (leader) => {
        options.logger.info('new leader', { leader, identity });
      },
    });
    void elector.run();
  } else {
    leading = true;
    manager.startControllers();
  }

  let stopping: Promise<void> | undefined;
  return {
    identity,
    manager,
    metricsPort,
    get leading() {
      return leading;
    },
    stop() {
      stopping ??= (async () => {
        await manager.stop();
        leading = false;
        if (elector) await elector.release();
      })();
      return stopping;
    },
  };
}
