/** Where the control-plane binaries come from: KUBEBUILDER_ASSETS, or the cached build. */
import { execFile } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/** The executables a test control plane runs. */
export interface ControlPlaneBinaries {
  readonly etcd: string;
  readonly kubeApiserver: string;
  readonly kubeControllerManager: string;
  readonly kubeScheduler: string;
  /** Optional in KUBEBUILDER_ASSETS (setup-envtest ships none); always in the cached build. */
  readonly kubectl: string | undefined;
}

const buildScript = fileURLToPath(new URL('../../scripts/build-control-plane.sh', import.meta.url));

async function executable(path: string): Promise<boolean> {
  return access(path, constants.X_OK).then(
    () => true,
    () => false,
  );
}

/**
 * Finds the binaries: `KUBEBUILDER_ASSETS` when set (the envtest convention), else the folder
 * printed by scripts/build-control-plane.sh, which builds them on first use (many minutes).
 */
export async function resolveControlPlaneBinaries(): Promise<ControlPlaneBinaries> {
  let dir = process.env.KUBEBUILDER_ASSETS;
  if (!dir) {
    try {
      const { stdout } = await promisify(execFile)('bash', [buildScript], { maxBuffer: 1 << 20 });
      dir = stdout.trim().split('\n').at(-1) ?? '';
    } catch (error) {
      const stderr = (error as { stderr?: string }).stderr ?? String(error);
      throw new Error(
        `scripts/build-control-plane.sh failed:\n${stderr.trim().split('\n').slice(-15).join('\n')}`,
      );
    }
  }
  const binaries = {
    etcd: join(dir, 'etcd'),
    kubeApiserver: join(dir, 'kube-apiserver'),
    kubeControllerManager: join(dir, 'kube-controller-manager'),
    kubeScheduler: join(dir, 'kube-scheduler'),
  };
  for (const [name, path] of Object.entries(binaries)) {
    if (!(await executable(path)))
      throw new Error(`control-plane binary ${name} is missing or not executable: ${path}`);
  }
  const kubectl = join(dir, 'kubectl');
  return { ...binaries, kubectl: (await executable(kubectl)) ? kubectl : undefined };
}
