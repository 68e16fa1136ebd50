/**
 * Training checkpoints: named float32 tensors plus a JSON state, written to a temporary folder and
 * renamed into place, so a kill -9 at any moment leaves either the new checkpoint or the previous
 * one, never half of one.
 *
 * Layout: `<dir>/latest/{state.json, tensors.bin}`; during the swap the old one is briefly
 * `<dir>/previous/`, which {@link loadCheckpoint} falls back to.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Format version of checkpoints written by this module. */
export const CHECKPOINT_VERSION = 1;

/** A tensor's values, shape and name, as stored. */
export interface StoredTensor {
  readonly name: string;
  readonly shape: readonly number[];
  readonly values: Float32Array;
}

/** What a checkpoint holds: caller state (JSON) and tensors. */
export interface Checkpoint<State> {
  readonly state: State;
  readonly tensors: readonly StoredTensor[];
}

/** A checkpoint that cannot be read; names the file and what is wrong. */
export class CheckpointError extends Error {
  override readonly name = 'CheckpointError';
}

interface Manifest<State> {
  readonly version: number;
  readonly state: State;
  readonly tensors: readonly {
    readonly name: string;
    readonly shape: readonly number[];
    readonly offset: number;
    readonly length: number;
  }[];
}

/** Writes `checkpoint` as `<dir>/latest`, atomically replacing the one before. */
export async function saveCheckpoint<State>(
  dir: string,
  checkpoint: Checkpoint<State>,
): Promise<void> {
  await mkdir(dir, { recursive: true });
  // Left by a writer that was killed mid-write.
  for (const entry of await readdir(dir)) {
    if (entry.startsWith('.writing-')) await rm(join(dir, entry), { recursive: true, force: true });
  }
  const temporary = join(dir, `.writing-${randomBytes(4).toString('hex')}`);
  const latest = join(dir, 'latest');
  const previous = join(dir, 'previous');
  try {
    await mkdir(temporary);
    let offset = 0;
    const entries = checkpoint.tensors.map((tensor) => {
      const entry = {
        name: tensor.name,
        shape: [...tensor.shape],
        offset,
        length: tensor.values.length,
      };
      offset += tensor.values.length;
      return entry;
    });
    const data = new Float32Array(offset);
    checkpoint.tensors.forEach((tensor, i) => {
      data.set(tensor.values, entries[i]?.offset ?? 0);
    });
    const manifest: Manifest<State> = {
      version: CHECKPOINT_VERSION,
      state: checkpoint.state,
      tensors: entries,
    };
    await writeFile(
      join(temporary, 'tensors.bin'),
      new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    );
    // state.json last: its presence marks a complete folder.
    await writeFile(join(temporary, 'state.json'), JSON.stringify(manifest));
    await rm(previous, { recursive: true, force: true });
    if (await exists(latest)) await rename(latest, previous);
    await rename(temporary, latest);
    await rm(previous, { recursive: true, force: true });
  } catch (error) {
    await rm(temporary, { recursive: true, force: true });
    throw error;
  }
}

/** Reads `<dir>/latest` (or `<dir>/previous` after an interrupted swap); undefined when there is none. */
export async function loadCheckpoint<State>(dir: string): Promise<Checkpoint<State> | undefined> {
  for (const name of ['latest', 'previous']) {
    const folder = join(dir, name);
    if (await exists(join(folder, 'state.json'))) return readFolder<State>(folder);
  }
  return undefined;
}

async function readFolder<State>(folder: string): Promise<Checkpoint<State>> {
  const manifestPath = join(folder, 'state.json');
  let manifest: Manifest<State>;
  try {
    manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as Manifest<State>;
  } catch (error) {
    throw new CheckpointError(`${manifestPath}: is not valid JSON (${(error as Error).message})`);
  }
  if (manifest.version !== CHECKPOINT_VERSION) {
    throw new CheckpointError(
      `${manifestPath}: checkpoint format version ${String(manifest.version)} is not ${CHECKPOINT_VERSION}`,
    );
  }
  const dataPath = join(folder, 'tensors.bin');
  const bytes = await readFile(dataPath);
  const expected = manifest.tensors.reduce((sum, t) => Math.max(sum, t.offset + t.length), 0) * 4;
  if (bytes.byteLength !== expected) {
    throw new CheckpointError(
      `${dataPath}: holds ${bytes.byteLength} bytes, the manifest expects ${expected}`,
    );
  }
  const data = new Float32Array(
    bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
  );
  return {
    state: manifest.state,
    tensors: manifest.tensors.map((t) => ({
      name: t.name,
      shape: t.shape,
      values: data.slice(t.offset, t.offset + t.length),
    })),
  };
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
