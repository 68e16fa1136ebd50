/**
 * Installs the compofa.io CRDs the way a user (or Helm) does, server-side from crds/, and waits
 * until they are really usable: Established comes a moment before the endpoints apply the
 * schemas' defaults, so a server-side dry run of each kind must come back defaulted first.
 */
import { CustomObjectsApi } from '@kubernetes/client-node';

import { CRDS, crdInfo, type ResourceKind } from '../../operator/api/index.js';
import type { ControlPlane } from './control-plane.js';
import { waitFor } from './wait.js';

/** The smallest valid spec of each kind. */
export const MINIMAL_SPECS: Readonly<Record<ResourceKind, Record<string, unknown>>> = {
  SupernetTraining: { artifacts: { claimName: 'artifacts' } },
  DeploymentTarget: {
    supernetRef: { name: 'fashion' },
    device: { nodeSelector: { 'kubernetes.io/arch': 'arm64' } },
    latencyBudgetMs: 5,
  },
  LatencyProfile: { device: { nodeSelector: { 'kubernetes.io/arch': 'arm64' } } },
};

/** Applies every CRD and waits until each kind's defaults apply in `namespace`. */
export async function installCrds(plane: ControlPlane, namespace: string): Promise<string> {
  const { stdout } = await plane.kubectl([
    'apply',
    '--server-side',
    ...CRDS.flatMap((crd) => ['-f', crd.path]),
  ]);
  const objects = plane.kubeConfig().makeApiClient(CustomObjectsApi);
  for (const crd of CRDS) {
    const minimal = MINIMAL_SPECS[crd.kind];
    await waitFor(
      async () => {
        const dryRun = (await objects.createNamespacedCustomObject({
          group: crd.group,
          version: crd.version,
          plural: crd.plural,
          namespace,
          body: {
            apiVersion: crdInfo(crd.kind).apiVersion,
            kind: crd.kind,
            metadata: { name: 'probe' },
            spec: minimal,
          },
          dryRun: 'All',
        })) as { spec: Record<string, unknown> };
        return Object.keys(dryRun.spec).length > Object.keys(minimal).length;
      },
      { description: `the ${crd.plural} endpoint to apply its schema`, hint: plane.logHint },
    );
  }
  return stdout;
}
