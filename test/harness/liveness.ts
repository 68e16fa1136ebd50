/** Whether a process id still names a live process (zombies count as gone). */
import { readdirSync, readFileSync } from 'node:fs';

export function isProcessAlive(pid: number): boolean {
  try {
    // Field 3 of /proc/<pid>/stat is the state; `comm` (field 2) may hold spaces, so split after ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Pids of live processes whose command line contains `text` (from /proc). */
export function processesWithArgument(text: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text) && isProcessAlive(pid))
        pids.push(pid);
    } catch {
      // The process ended while we looked.
    }
  }
  return pids;
}
