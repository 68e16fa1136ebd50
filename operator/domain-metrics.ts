/**
 * The operator's domain metrics, computed from the informers' caches at scrape time (as
 * kube-state-metrics does), so they can never disagree with the resources' status. The chart's
 * alert rules (training failed or stalled) read them.
 */
import { Gauge, type Registry } from 'prom-client';

import type { Caches } from './controllers/context.js';

/** Registers the domain gauges on `registry`, reading `caches` whenever they are scraped. */
export function registerDomainMetrics(
  registry: Registry,
  caches: Pick<Caches, 'trainings' | 'targets'>,
): void {
  const registers = [registry];
  const identity = (metadata: { namespace?: string; name?: string } | undefined) => ({
    namespace: metadata?.namespace ?? '',
    name: metadata?.name ?? '',
  });

  new Gauge({
    name: 'compofa_supernettraining_phase',
    help: "1 for each SupernetTraining's current phase (Pending, Training, Evaluating, Succeeded, Failed, Suspended).",
    labelNames: ['namespace', 'name', 'phase'],
    registers,
    collect() {
      this.reset();
      for (const training of caches.trainings.list()) {
        const phase = training.status?.phase;
        if (phase) this.set({ ...identity(training.metadata), phase }, 1);
      }
    },
  });
  new Gauge({
    name: 'compofa_supernettraining_progress_percent',
    help: 'Percent of the training steps done, from the training pod reports.',
    labelNames: ['namespace', 'name'],
    registers,
    collect() {
      this.reset();
      for (const training of caches.trainings.list()) {
        const percent = training.status?.progress?.percent;
        if (percent !== undefined) this.set(identity(training.metadata), percent);
      }
    },
  });
  new Gauge({
    name: 'compofa_supernettraining_progress_updated_timestamp_seconds',
    help: 'When the training pod last reported progress (Unix time); a stalled training stops moving it.',
    labelNames: ['namespace', 'name'],
    registers,
    collect() {
      this.reset();
      for (const training of caches.trainings.list()) {
        const updated = Date.parse(training.status?.progress?.updatedAt ?? '');
        if (Number.isFinite(updated)) this.set(identity(training.metadata), updated / 1000);
      }
    },
  });
  new Gauge({
    name: 'compofa_deploymenttarget_phase',
    help: "1 for each DeploymentTarget's current phase.",
    labelNames: ['namespace', 'name', 'phase'],
    registers,
    collect() {
      this.reset();
      for (const target of caches.targets.list()) {
        const phase = target.status?.phase;
        if (phase) this.set({ ...identity(target.metadata), phase }, 1);
      }
    },
  });
}
