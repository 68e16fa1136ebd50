/**
 * Container images written as OCI image-layout archives, which `ctr images import` loads into a
 * node's containerd with no registry: one gzip layer per folder, an image config with the
 * entry point, user and environment, and the `io.containerd.image.name` annotation that names
 * the image.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { createGzip } from 'node:zlib';
import { createReadStream, createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';

const run = promisify(execFile);

/** What an image runs; the fields of an OCI image config. */
export interface ImageConfig {
  readonly entrypoint?: readonly string[];
  readonly cmd?: readonly string[];
  /** `uid:gid`; default root. */
  readonly user?: string;
  readonly workingDir?: string;
  readonly env?: readonly string[];
  readonly labels?: Readonly<Record<string, string>>;
}

/** Options of {@link writeOciArchive}. */
export interface OciArchiveOptions {
  /** Full reference, e.g. `localhost/compofa/pause:v1.36.3`. */
  readonly name: string;
  /** Folders whose contents are the layers, bottom first. */
  readonly layers: readonly string[];
  readonly config: ImageConfig;
  /** The archive to write (atomically). */
  readonly output: string;
  /** Write an image-layout folder at `output` rather than a tar archive of one. */
  readonly layoutFolder?: boolean;
}

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

/**
 * Writes an OCI image-layout archive (or folder) of `layers` and resolves with the manifest's
 * digest. Files
 * are owned by root in the image and have a fixed time, so the same folders give the same
 * digest.
 */
export async function writeOciArchive(options: OciArchiveOptions): Promise<string> {
  const work = await mkdtemp(join(dirname(options.output), '.oci-'));
  try {
    const blobs = join(work, 'blobs', 'sha256');
    await mkdir(blobs, { recursive: true });
    const addBlob = async (data: Buffer | string): Promise<{ digest: string; size: number }> => {
      const digest = sha256(data);
      await writeFile(join(blobs, digest), data);
      return { digest: `sha256:${digest}`, size: Buffer.byteLength(data) };
    };
    const layers = [];
    const diffIds = [];
    for (const folder of options.layers) {
      const tar = join(work, 'layer.tar');
      await run('tar', [
        '--numeric-owner',
        '--owner=0',
        '--group=0',
        '--sort=name',
        '--mtime=2020-01-01 00:00Z',
        '-C',
        folder,
        '-cf',
        tar,
        '.',
      ]);
      diffIds.push(`sha256:${await fileSha256(tar)}`);
      const gzipped = join(work, 'layer.tar.gz');
      await pipeline(createReadStream(tar), createGzip({ level: 6 }), createWriteStream(gzipped));
      const digest = await fileSha256(gzipped);
      await rename(gzipped, join(blobs, digest));
      await rm(tar);
      layers.push({
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest: `sha256:${digest}`,
        size: (await stat(join(blobs, digest))).size,
      });
    }
    const { config } = options;
    const imageConfig = {
      architecture: 'amd64',
      os: 'linux',
      config: {
        Env: config.env ?? [DEFAULT_PATH],
        ...(config.entrypoint && { Entrypoint: config.entrypoint }),
        ...(config.cmd && { Cmd: config.cmd }),
        ...(config.user && { User: config.user }),
        WorkingDir: config.workingDir ?? '/',
        ...(config.labels && { Labels: config.labels }),
      },
      rootfs: { type: 'layers', diff_ids: diffIds },
      history: options.layers.map(() => ({ created_by: 'compofa-operator writeOciArchive' })),
    };
    const configBlob = await addBlob(JSON.stringify(imageConfig));
    const manifest = await addBlob(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...configBlob },
        layers,
      }),
    );
    const tag = options.name.slice(options.name.lastIndexOf(':') + 1);
    await writeFile(
      join(work, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            ...manifest,
            platform: { architecture: 'amd64', os: 'linux' },
            annotations: {
              'io.containerd.image.name': options.name,
              'org.opencontainers.image.ref.name': tag,
            },
          },
        ],
      }),
    );
    await writeFile(join(work, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    if (options.layoutFolder) {
      await rm(options.output, { recursive: true, force: true });
      await rename(work, options.output);
    } else {
      const temporary = `${options.output}.tmp`;
      await run('tar', ['-C', work, '-cf', temporary, 'oci-layout', 'index.json', 'blobs']);
      await rename(temporary, options.output);
    }
    return manifest.digest;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
