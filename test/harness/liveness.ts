/** Whether a process id still names a live process (zombies count as gone). */
import { readFileSync } from 'node:fs';

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
