/**
 * Notices when what launched this process is stopped, for a program that has a host to clean up.
 * `make demo` runs `npm run demo`, which runs tsx, which runs node: a SIGINT or SIGTERM sent by a
 * script to `make` alone never reaches node (make forwards SIGTERM to npm only, and for SIGINT
 * waits for its children, expecting them to have had the terminal's). GNU make resets a fatal
 * signal's handler to the default before it waits, so a launcher that no longer catches SIGINT or
 * SIGTERM, like one that has ended, means: stop now.
 */
import { readFileSync } from 'node:fs';

/** Signal numbers of Linux. */
const WATCHED_SIGNALS = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as const;

/** What /proc/<pid>/stat and /proc/<pid>/status say about one process. */
export interface ProcessInfo {
  readonly pid: number;
  readonly ppid: number;
  readonly command: string;
  /** Field 22 of stat: tells a process from a later one with the same pid. */
  readonly startTime: string;
  /** Signal numbers with a handler (SigCgt). */
  readonly caught: ReadonlySet<number>;
}

/** Parses /proc/<pid>/stat and /proc/<pid>/status. */
export function parseProcessInfo(pid: number, stat: string, status: string): ProcessInfo {
  // The command is in parentheses and may hold spaces and parentheses itself.
  const open = stat.indexOf('(');
  const close = stat.lastIndexOf(')');
  const fields = stat.slice(close + 2).split(' ');
  const mask = BigInt(`0x${/^SigCgt:\s*([0-9a-f]+)$/m.exec(status)?.[1] ?? '0'}`);
  const caught = new Set<number>();
  for (let signal = 1; signal <= 64; signal += 1)
    if ((mask >> BigInt(signal - 1)) & 1n) caught.add(signal);
  return {
    pid,
    ppid: Number(fields[1]),
    command: stat.slice(open + 1, close),
    startTime: fields[19] ?? '',
    caught,
  };
}

function readProcess(pid: number): ProcessInfo | undefined {
  try {
    return parseProcessInfo(
      pid,
      readFileSync(`/proc/${pid}/stat`, 'utf8'),
      readFileSync(`/proc/${pid}/status`, 'utf8'),
    );
  } catch {
    return undefined;
  }
}

/** Launchers between a program and the user's shell. */
const LAUNCHERS = /^(node|npm.*|tsx|sh|dash|make)$/;

/**
 * The processes that launched `pid`: its ancestors up to the nearest `make` (included), else up
 * to the first that is not node, npm, tsx or sh (excluded: the user's shell or a supervisor).
 */
export function launchers(pid: number, read = readProcess): ProcessInfo[] {
  const chain: ProcessInfo[] = [];
  for (let info = read(read(pid)?.ppid ?? 0); info && info.pid > 1; info = read(info.ppid)) {
    if (!LAUNCHERS.test(info.command)) break;
    chain.push(info);
    if (info.command === 'make') break;
  }
  return chain;
}

/**
 * Why the launchers are gone, comparing what they were (`before`) with what they are now, or
 * undefined if all is as before.
 */
export function launcherGone(
  before: readonly ProcessInfo[],
  read: (pid: number) => ProcessInfo | undefined = readProcess,
): string | undefined {
  for (const launcher of before) {
    const now = read(launcher.pid);
    if (!now || now.startTime !== launcher.startTime)
      return `${launcher.command} (process ${launcher.pid}) ended`;
    for (const [name, signal] of Object.entries(WATCHED_SIGNALS))
      if (launcher.caught.has(signal) && !now.caught.has(signal))
        return `${launcher.command} (process ${launcher.pid}) received ${name}`;
  }
  return undefined;
}

/** Calls `onGone` once, with the reason, when a launcher of this process ends or is signalled. */
export function watchLaunchers(onGone: (why: string) => void, intervalMs = 500): () => void {
  const before = launchers(process.pid);
  const timer = setInterval(() => {
    const why = launcherGone(before);
    if (why === undefined) return;
    clearInterval(timer);
    onGone(why);
  }, intervalMs);
  timer.unref();
  return () => {
    clearInterval(timer);
  };
}
