/**
 * `make demo`: the whole job on a local Kubernetes cluster with real nodes, narrated. It builds the
 * images (cached), starts a control plane, a training node and three device classes (CPU quotas of
 * 2, 1 and 0.5 CPUs), installs the chart with the local images and a Prometheus that scrapes the
 * serving pods with the chart's alert rules, and applies examples/local. It follows the training,
 * the profiling on each device class, the selections, the extractions and the rollouts; sends
 * inference requests through each target's Service; then slows the medium device down under load
 * until the drift alert fires and the operator re-selects and rolls out a faster subnet. It keeps
 * running until Ctrl-C (or SIGINT/SIGTERM/SIGHUP to it or to `make`), then stops everything and
 * leaves the host as it was.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { FASHION_MNIST_CLASSES, loadDataset } from '../trainer/datasets.js';
import { watchLaunchers } from '../test/harness/launcher-watch.js';
import { GiveUpWaiting, waitFor } from '../test/harness/wait.js';
import { LocalFleet } from '../test/harness/local-fleet.js';
import {
  DEMO_DEVICE_CLASSES,
  DEMO_FLEET_VALUES,
  DEMO_NAMESPACE,
  DEMO_SHARED_VOLUME,
  demonstrateDrift,
  FleetNarrator,
  inferRequest,
} from '../test/harness/demo-fleet.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const startedAt = Date.now();

/** `[mm:ss] line` on stdout. */
function say(line: string): void {
  const seconds = Math.floor((Date.now() - startedAt) / 1000);
  const stamp = `${String(Math.floor(seconds / 60)).padStart(2, '0')}:${String(seconds % 60).padStart(2, '0')}`;
  process.stdout.write(`[${stamp}] ${line}\n`);
}

class Stopped extends Error {}

const stopRequested = new AbortController();
let fleet: LocalFleet | undefined;
/** Set when the demo failed and waits, cluster up, for a signal: the exit code is then 1. */
let failed = false;

/** Stops what runs and exits: on a signal, when `make` goes, or at the end of a failure. */
function requestStop(reason: string): void {
  if (stopRequested.signal.aborted) return;
  stopRequested.abort(new Stopped(reason));
  if (fleet === undefined) {
    say(`${reason}: stopping as soon as the current step ends`);
    return;
  }
  void teardown(reason, failed ? 1 : 0);
}

let tearingDown = false;
/** Resolves once a signal (or the launchers' end) asked the demo to stop. */
function untilStopRequested(): Promise<void> {
  return new Promise((resolve) => {
    stopRequested.signal.addEventListener('abort', () => {
      resolve();
    });
  });
}

async function teardown(reason: string, code: number): Promise<never> {
  if (tearingDown) return new Promise<never>(() => undefined);
  tearingDown = true;
  say(`${reason}: stopping Prometheus, the pods, the nodes and the control plane...`);
  try {
    await fleet?.stop();
    say('stopped; the host is as it was (addresses, mounts, cgroups, firewall rules, sysctls)');
    process.exit(code);
  } catch (error) {
    process.stderr.write(
      `stopping failed: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    process.exit(1);
  }
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
  process.on(signal, () => {
    requestStop(signal);
  });
watchLaunchers((why) => {
  requestStop(why);
});

async function main(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new Error(
      'make demo runs kubelets, containerd and iptables and needs root: run it as root (sudo make demo)',
    );
  say('compofa demo: one training run, served on three device classes of a local cluster');
  const started = await LocalFleet.start({
    deviceClasses: DEMO_DEVICE_CLASSES,
    progress: say,
    values: DEMO_FLEET_VALUES,
    sharedVolume: DEMO_SHARED_VOLUME,
  });
  fleet = started;
  // A signal that came during the start: the fleet is up now, so it can be stopped.
  stopRequested.signal.throwIfAborted();
  const { cluster, prometheus } = fleet;
  const kubectl = (args: readonly string[]) => cluster.plane.kubectl(args);
  say(`cluster up in ${((Date.now() - startedAt) / 1000).toFixed(0)} s`);
  say(`  export KUBECONFIG=${cluster.plane.kubeconfigPath}`);
  say(`  Prometheus: ${prometheus.url} (alerts: ${prometheus.url}/api/v1/alerts)`);
  for (const spec of DEMO_DEVICE_CLASSES)
    say(
      `  node ${spec.name}: ${spec.cpus} CPU, ${spec.memoryMiB} MiB, ${Object.entries(
        spec.labels ?? {},
      )
        .map(([key, value]) => `${key}=${value}`)
        .join(', ')}`,
    );

  say('kubectl apply -k examples/local');
  const applied = await kubectl(['apply', '-k', join(ROOT, 'examples', 'local')]);
  for (const line of applied.stdout.trim().split('\n')) say(`  ${line}`);

  const narrator = new FleetNarrator(cluster.plane, DEMO_NAMESPACE, say);
  const targets = await waitFor(
    async () => {
      const all = await narrator.poll();
      const failed = all.find((target) => target.status?.phase === 'Failed');
      if (failed)
        throw new GiveUpWaiting(
          `DeploymentTarget ${failed.metadata?.name} Failed: ${
            failed.status?.conditions?.find((c) => c.type === 'Ready')?.message ?? '?'
          }`,
        );
      return all.length > 0 && all.every((target) => target.status?.phase === 'Ready')
        ? all
        : undefined;
    },
    {
      description: 'every DeploymentTarget to be Ready',
      timeoutMs: 20 * 60_000,
      intervalMs: 3_000,
      signal: stopRequested.signal,
    },
  );
  say(
    `every target serves, ${((Date.now() - startedAt) / 1000).toFixed(0)} s after the start of make demo`,
  );

  // Real requests through each target's Service: a validation image of each of three classes.
  const dataset = await loadDataset(
    { kind: 'fashion-mnist', limitPerClass: 10 },
    { resolution: 28, channels: 1 },
  );
  for (const [k, target] of targets.entries()) {
    const name = target.metadata?.name ?? '';
    const url = `${await fleet.serviceUrl(DEMO_NAMESPACE, name)}/v2/models/${name}/infer`;
    const index = (k * 7) % dataset.validation.count;
    const started = performance.now();
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: inferRequest(dataset.validation.images.subarray(index * 784, (index + 1) * 784)),
    });
    const body = (await response.json()) as { outputs?: Array<{ data?: number[] }> };
    const probabilities = body.outputs?.[0]?.data ?? [];
    const predicted = probabilities.indexOf(Math.max(...probabilities));
    say(
      `POST ${url}: ${response.status} in ${(performance.now() - started).toFixed(1)} ms, predicted ${
        FASHION_MNIST_CLASSES[predicted] ?? '?'
      } for a ${FASHION_MNIST_CLASSES[dataset.validation.labels[index] ?? 0]} (subnet ${
        target.status?.selectedSubnet?.id ?? '?'
      })`,
    );
  }

  const drift = await demonstrateDrift(fleet, narrator, say, stopRequested.signal);
  say(
    `load during the drift and the rollout: ${drift.load.answered} requests answered, ${drift.load.failed} failed${
      drift.load.failures.length > 0 ? ` (${drift.load.failures.join('; ')})` : ''
    }`,
  );

  const { stdout } = await kubectl([
    'get',
    'supernettrainings,latencyprofiles,deploymenttargets',
    '-n',
    DEMO_NAMESPACE,
  ]);
  process.stdout.write(`\n${stdout}\n`);
  const memory = await cluster.memoryBytes();
  const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
  process.stdout.write(
    [
      `Memory of the local cluster now: ${mib(memory.processes + memory.pods)} (control plane, nodes, Prometheus ${mib(memory.processes)}; pods ${mib(memory.pods)})`,
      '',
      `  export KUBECONFIG=${cluster.plane.kubeconfigPath}`,
      `  ${cluster.plane.kubectlPath ?? 'kubectl'} get compofa,pods -n ${DEMO_NAMESPACE} -o wide`,
      `  Prometheus: ${prometheus.url}  (e.g. ${prometheus.url}/api/v1/query?query=namespace_target:compofa_served_latency_seconds:budgeted)`,
      `  logs: ${join(cluster.dir, 'logs')}`,
      '',
      'Ctrl-C stops everything and leaves the host as it was.',
      '',
    ].join('\n'),
  );
  // The pods keep serving until a signal.
  await untilStopRequested();
}

main().then(
  () =>
    teardown(
      stopRequested.signal.reason instanceof Stopped ? stopRequested.signal.reason.message : 'done',
      0,
    ),
  async (error: unknown) => {
    if (error instanceof Stopped || stopRequested.signal.aborted) {
      await teardown(error instanceof Error ? error.message : String(error), 0);
      return;
    }
    process.stderr.write(
      `\nmake demo failed: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    if (fleet) {
      process.stderr.write(`${await fleet.cluster.diagnose().catch(() => '')}\n`);
      process.stderr.write(
        `The cluster stays up for a look (KUBECONFIG=${fleet.cluster.plane.kubeconfigPath}); Ctrl-C stops it.\n`,
      );
      failed = true;
      await untilStopRequested();
      // The signal's handler is tearing down already: this waits for it to exit the process.
      await teardown('stopping after the failure', 1);
    }
    process.exit(1);
  },
);
