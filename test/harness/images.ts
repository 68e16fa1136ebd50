/**
 * The Dockerfile's images, built on this machine by BuildKit (buildkitd with its runc worker, from
 * scripts/build-buildkit.sh) from the Dockerfile itself, with the base image made here
 * (base-image.ts) given as a named build context, so that no registry is reached. Each image is
 * written as an OCI archive that `ctr images import` loads into a node's containerd, and cached
 * under a tag derived from the build context's contents: an unchanged tree is not rebuilt.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { nodeBaseImage, NODE_IMAGE_REFERENCE } from './base-image.js';
import { ManagedProcess } from './processes.js';
import { waitFor } from './wait.js';

const run = promisify(execFile);
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

/** The Dockerfile's targets that the local cluster runs, and the repositories of their images. */
export const IMAGE_REPOSITORIES = {
  operator: 'localhost/compofa/compofa-operator',
  runtime: 'localhost/compofa/compofa-runtime',
} as const;
export type ImageTarget = keyof typeof IMAGE_REPOSITORIES;

/** A built image. */
export interface BuiltImage {
  readonly target: ImageTarget;
  /** `localhost/compofa/compofa-runtime:local-<hash of the build context>` */
  readonly reference: string;
  readonly archive: string;
  readonly archiveBytes: number;
  /** Whether it came from the cache rather than a build just now. */
  readonly cached: boolean;
}

function cacheRoot(): string {
  return (
    process.env.COMPOFA_CACHE_DIR ??
    join(
      process.env.XDG_CACHE_HOME ?? join(process.env.HOME ?? '/root', '.cache'),
      'compofa-operator',
    )
  );
}

/** The build context's files, as .dockerignore's allowlist gives them (tests excluded). */
async function contextFiles(): Promise<string[]> {
  const ignore = await readFile(join(repoRoot, '.dockerignore'), 'utf8');
  const allowed = ignore
    .split('\n')
    .filter((line) => line.startsWith('!'))
    .map((line) => line.slice(1).replace(/\/$/, ''));
  const files: string[] = [];
  const walk = async (path: string): Promise<void> => {
    const info = await stat(path);
    if (info.isDirectory()) {
      for (const entry of (await readdir(path)).sort()) await walk(join(path, entry));
    } else if (!path.endsWith('.test.ts')) {
      files.push(relative(repoRoot, path));
    }
  };
  for (const entry of allowed) await walk(join(repoRoot, entry));
  return files;
}

/** A hash of the base image, the Dockerfile, .dockerignore and every file of the build context. */
export async function buildContextHash(baseDigest: string): Promise<string> {
  const hash = createHash('sha256').update(`${baseDigest}\0`);
  for (const file of ['Dockerfile', '.dockerignore', ...(await contextFiles())]) {
    hash.update(`${file}\0`);
    hash.update(await readFile(join(repoRoot, file)));
  }
  return hash.digest('hex').slice(0, 16);
}

/** Finds (building on first use) buildkitd and buildctl. */
async function buildkitTools(): Promise<{ buildkitd: string; buildctl: string }> {
  try {
    const { stdout } = await run('bash', [join(repoRoot, 'scripts', 'build-buildkit.sh')], {
      maxBuffer: 1 << 20,
    });
    const dir = stdout.trim().split('\n').at(-1) ?? '';
    return { buildkitd: join(dir, 'buildkitd'), buildctl: join(dir, 'buildctl') };
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? String(error);
    throw new Error(
      `scripts/build-buildkit.sh failed:\n${stderr.trim().split('\n').slice(-10).join('\n')}`,
    );
  }
}

const BUILDKIT_SOCKET_DIR = '/run/compofa-buildkit';

/**
 * Builds `targets` of the Dockerfile (or takes them from the cache) and resolves with their
 * archives. A failed build names the target and its log.
 */
export async function buildImages(
  targets: readonly ImageTarget[],
  progress: (line: string) => void = () => undefined,
): Promise<Record<ImageTarget, BuiltImage>> {
  const imagesDir = join(cacheRoot(), 'images');
  await mkdir(imagesDir, { recursive: true });
  const base = await nodeBaseImage(join(imagesDir, 'base'), progress);
  const tag = `local-${await buildContextHash(base.digest)}`;
  const built: Partial<Record<ImageTarget, BuiltImage>> = {};
  const missing: ImageTarget[] = [];
  for (const target of targets) {
    const archive = join(imagesDir, `${target}-${tag}.oci.tar`);
    if (existsSync(archive))
      built[target] = {
        target,
        reference: `${IMAGE_REPOSITORIES[target]}:${tag}`,
        archive,
        archiveBytes: (await stat(archive)).size,
        cached: true,
      };
    else missing.push(target);
  }
  if (missing.length > 0) {
    const tools = await buildkitTools();
    const daemon = await startBuildkitd(tools.buildkitd, imagesDir);
    try {
      for (const target of missing) {
        const reference = `${IMAGE_REPOSITORIES[target]}:${tag}`;
        const archive = join(imagesDir, `${target}-${tag}.oci.tar`);
        const log = join(imagesDir, `${target}.log`);
        progress(`building the Dockerfile's ${target} target as ${reference} (log: ${log})`);
        const started = Date.now();
        await buildTarget({ buildctl: tools.buildctl, target, reference, base, archive, log });
        const archiveBytes = (await stat(archive)).size;
        progress(
          `built ${reference} in ${((Date.now() - started) / 1000).toFixed(0)} s (${(archiveBytes / 2 ** 20).toFixed(0)} MiB compressed)`,
        );
        built[target] = { target, reference, archive, archiveBytes, cached: false };
        await pruneArchives(imagesDir, target);
      }
    } finally {
      await daemon.stop();
      await rm(BUILDKIT_SOCKET_DIR, { recursive: true, force: true });
    }
  }
  return built as Record<ImageTarget, BuiltImage>;
}

/** Archives of this many builds of each target are kept (hundreds of MiB each). */
const KEPT_ARCHIVES = 2;

async function pruneArchives(imagesDir: string, target: ImageTarget): Promise<void> {
  const archives = [];
  for (const name of await readdir(imagesDir))
    if (name.startsWith(`${target}-local-`) && name.endsWith('.oci.tar'))
      archives.push({
        path: join(imagesDir, name),
        time: (await stat(join(imagesDir, name))).mtimeMs,
      });
  archives.sort((a, b) => b.time - a.time);
  for (const { path } of archives.slice(KEPT_ARCHIVES)) await rm(path, { force: true });
}

/**
 * Starts buildkitd with its runc worker and host networking for RUN steps, in a private mount
 * namespace of its own so that the snapshots it mounts vanish with it.
 */
async function startBuildkitd(buildkitd: string, imagesDir: string): Promise<ManagedProcess> {
  await mkdir(BUILDKIT_SOCKET_DIR, { recursive: true });
  const socket = join(BUILDKIT_SOCKET_DIR, 'buildkitd.sock');
  const daemon = await ManagedProcess.start({
    name: 'buildkitd',
    command: 'unshare',
    args: [
      '--mount',
      '--propagation',
      'private',
      '--',
      buildkitd,
      `--root=${join(cacheRoot(), 'buildkit', 'state')}`,
      `--addr=unix://${socket}`,
      '--oci-worker=true',
      '--containerd-worker=false',
      '--oci-worker-net=host',
    ],
    logFile: join(imagesDir, 'buildkitd.log'),
  });
  await waitFor(
    async () => {
      if (!daemon.isRunning)
        throw new Error(
          `buildkitd ended with ${daemon.describeExit()}: ${await daemon.logTail(10)}`,
        );
      return existsSync(socket);
    },
    { description: `buildkitd's socket ${socket}`, timeoutMs: 30_000, intervalMs: 200 },
  );
  return daemon;
}

async function buildTarget(options: {
  buildctl: string;
  target: ImageTarget;
  reference: string;
  base: { layout: string; digest: string };
  archive: string;
  log: string;
}): Promise<void> {
  const temporary = `${options.archive}.tmp`;
  const args = [
    `--addr=unix://${join(BUILDKIT_SOCKET_DIR, 'buildkitd.sock')}`,
    'build',
    '--progress=plain',
    '--frontend=dockerfile.v0',
    `--local=context=${repoRoot}`,
    `--local=dockerfile=${repoRoot}`,
    `--opt=target=${options.target}`,
    // The Dockerfile's `# syntax=` line would make BuildKit pull that frontend image from a
    // registry; with `cmdline` set it uses its built-in Dockerfile frontend.
    '--opt=cmdline=dockerfile.v0',
    `--oci-layout=base=${options.base.layout}`,
    `--opt=context:${NODE_IMAGE_REFERENCE}=oci-layout://base@${options.base.digest}`,
    `--output=type=oci,dest=${temporary},name=${options.reference}`,
  ];
  try {
    const { stdout, stderr } = await run(options.buildctl, args, { maxBuffer: 256 << 20 });
    await writeFile(options.log, stdout + stderr);
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    await writeFile(options.log, stdout + stderr);
    await rm(temporary, { force: true });
    const tail = (stdout + stderr).trim().split('\n').slice(-15).join('\n');
    throw new Error(
      `building the Dockerfile's ${options.target} target failed (full log: ${options.log}):\n${tail}`,
    );
  }
  await rename(temporary, options.archive);
}
