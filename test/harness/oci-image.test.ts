import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';

import { writeOciArchive } from './oci-image.js';

const run = promisify(execFile);

describe('writeOciArchive', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'compofa-oci-'));
    await mkdir(join(dir, 'rootfs', 'bin'), { recursive: true });
    await writeFile(join(dir, 'rootfs', 'bin', 'hello'), '#!/bin/sh\necho hello\n');
    await chmod(join(dir, 'rootfs', 'bin', 'hello'), 0o755);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const write = (output: string, layoutFolder = false): Promise<string> =>
    writeOciArchive({
      name: 'localhost/test/hello:v1',
      layers: [join(dir, 'rootfs')],
      config: { entrypoint: ['/bin/hello'], user: '10001:10001' },
      output,
      layoutFolder,
    });

  it('names the image for containerd and gives the same digest for the same files', async () => {
    const digest = await write(join(dir, 'a.tar'));
    assert.equal(await write(join(dir, 'b.tar')), digest);
    const { stdout } = await run('tar', ['-xOf', join(dir, 'a.tar'), 'index.json']);
    const index = JSON.parse(stdout) as {
      manifests: { digest: string; annotations: Record<string, string> }[];
    };
    const [entry] = index.manifests;
    assert.ok(entry);
    assert.equal(entry.digest, digest);
    assert.equal(entry.annotations['io.containerd.image.name'], 'localhost/test/hello:v1');
  });

  it('writes a layout folder whose config and layer are what was asked for', async () => {
    const layout = join(dir, 'layout');
    const digest = await write(layout, true);
    const blob = (d: string): string => join(layout, 'blobs', 'sha256', d.replace('sha256:', ''));
    const manifest = JSON.parse(await readFile(blob(digest), 'utf8')) as {
      config: { digest: string };
      layers: { digest: string }[];
    };
    const config = JSON.parse(await readFile(blob(manifest.config.digest), 'utf8')) as {
      config: { Entrypoint: string[]; User: string };
      rootfs: { diff_ids: string[] };
    };
    assert.deepEqual(config.config.Entrypoint, ['/bin/hello']);
    assert.equal(config.config.User, '10001:10001');
    const { stdout } = await run('tar', ['-tzvf', blob(manifest.layers[0]?.digest ?? '')]);
    assert.match(stdout, /-rwxr-xr-x 0\/0 .* \.\/bin\/hello/);
  });
});
