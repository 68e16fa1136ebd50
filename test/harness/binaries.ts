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
  /** In the cached build and in setup-envtest folders; a Kubernetes server release may lack it. */
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
 * Finds the binaries through scripts/build-control-plane.sh: `KUBEBUILDER_ASSETS` when set (the
 * envtest convention, completed with a controller-manager and scheduler when it lacks them), else
 * the cached build, made on first use (about 9 minutes).
 */
export async function resolveControlPlaneBinaries(
  env: NodeJS.ProcessEnv = process.env,
): Promise<ControlPlaneBinaries> {
  let dir: string;
  try {
    const { stdout } = await promisify(execFile)('bash', [buildScript], {
      maxBuffer: 1 << 20,
      env,
    });
    dir = stdout.trim().split('\n').at(-1) ?? '';
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? String(error);
    throw new Error(
      `scripts/build-control-plane.sh failed:\n${stderr.trim().split('\n').slice(-15).join('\n')}`,
    );
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
