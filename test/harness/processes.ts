/**
 * Child processes that a test harness owns: each writes its output to a log file, and every one
 * still running is killed when the harness stops it or when this Node process exits for any
 * reason (a failed assertion, an uncaught exception, Ctrl-C), so no test leaves a stray server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants, createWriteStream, type WriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';

const running = new Set<ManagedProcess>();
const exitCleanups = new Set<() => void>();
let exitHooksInstalled = false;

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  // 'exit' handlers must be synchronous: SIGKILL is the only sure way to stop a child from there.
  process.on('exit', () => {
    for (const child of running) child.killNow();
    for (const cleanup of exitCleanups) cleanup();
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      // Someone else handles this signal (a graceful shutdown): let them. Otherwise die of it,
      // which runs the 'exit' handler above.
      if (process.listenerCount(signal) > 0) return;
      for (const child of running) child.killNow();
      for (const cleanup of exitCleanups) cleanup();
      process.kill(process.pid, signal);
    });
  }
}

/**
 * Runs `cleanup` (synchronous) if this process exits before the returned function is called, e.g.
 * to delete a test server's data and keys after a crash.
 */
export function onAbnormalExit(cleanup: () => void): () => void {
  installExitHooks();
  exitCleanups.add(cleanup);
  return () => exitCleanups.delete(cleanup);
}

/**
 * util-linux's setpriv, to give each child PR_SET_PDEATHSIG: the kernel kills it when this
 * process dies, even by SIGKILL, when no exit handler can run.
 */
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((path) => {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
});

/** Options of {@link ManagedProcess.start}. */
export interface StartProcessOptions {
  /** Short name used in messages, e.g. `etcd`. */
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly logFile: string;
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
}

/** A child process whose stdout and stderr go to a log file. */
export class ManagedProcess {
  private exitCode: number | null = null;
  private exitSignal: NodeJS.Signals | null = null;
  private readonly exited: Promise<void>;

  private constructor(
    readonly name: string,
    readonly logFile: string,
    private readonly child: ChildProcess,
    private readonly log: WriteStream,
  ) {
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitCode = code;
        this.exitSignal = signal;
        running.delete(this);
        resolve();
      });
    });
  }

  /** Starts `command`; rejects when it cannot be spawned (missing binary, no permission). */
  static async start(options: StartProcessOptions): Promise<ManagedProcess> {
    installExitHooks();
    const log = createWriteStream(options.logFile, { flags: 'a' });
    await once(log, 'open');
    const [command, args] = SETPRIV
      ? [SETPRIV, ['--pdeathsig', 'KILL', '--', options.command, ...options.args]]
      : [options.command, options.args];
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', log, log],
    });
    const managed = new ManagedProcess(options.name, options.logFile, child, log);
    running.add(managed);
    try {
      await once(child, 'spawn');
    } catch (error) {
      running.delete(managed);
      log.end();
      throw new Error(`could not start ${options.name} (${options.command}): ${String(error)}`);
    }
    return managed;
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error(`${this.name} has no pid`);
    return this.child.pid;
  }

  /** True until the process has exited. */
  get isRunning(): boolean {
    return this.exitCode === null && this.exitSignal === null;
  }

  /** How the process ended, for messages: `exit code 1`, `signal SIGKILL` or `still running`. */
  describeExit(): string {
    if (this.exitSignal) return `signal ${this.exitSignal}`;
    if (this.exitCode !== null) return `exit code ${this.exitCode}`;
    return 'still running';
  }

  /** Sends SIGTERM, then SIGKILL after `graceMs`, and resolves once the process is gone. */
  async stop(graceMs = 5_000): Promise<void> {
    if (this.isRunning) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    await new Promise<void>((resolve) => this.log.end(resolve));
  }

  /** Synchronous SIGKILL for exit handlers. */
  killNow(): void {
    if (this.isRunning) this.child.kill('SIGKILL');
  }

  /** The last `lines` lines of the log, for error messages. */
  async logTail(lines = 20): Promise<string> {
    const text = await readFile(this.logFile, 'utf8').catch(() => '');
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  }
}
