import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { launcherGone, launchers, parseProcessInfo, type ProcessInfo } from './launcher-watch.js';

/** A stat line with the given pid, command and parent, and start time 1000 + pid. */
const stat = (pid: number, command: string, ppid: number): string =>
  `${pid} (${command}) S ${ppid} ${pid} ${pid} 0 -1 4194560 100 0 0 0 1 1 0 0 20 0 1 0 ${1000 + pid} 1000 100`;
const status = (sigcgt: string): string =>
  `Name:\tx\nSigBlk:\t0000000000000000\nSigCgt:\t${sigcgt}\n`;

function table(
  rows: Array<[number, string, number, string]>,
): (pid: number) => ProcessInfo | undefined {
  const infos = new Map(
    rows.map(([pid, command, ppid, sigcgt]) => [
      pid,
      parseProcessInfo(pid, stat(pid, command, ppid), status(sigcgt)),
    ]),
  );
  return (pid) => infos.get(pid);
}

describe('launcher watch', () => {
  it('parses a command with spaces and parentheses, its parent, start time and caught signals', () => {
    const info = parseProcessInfo(7, stat(7, 'npm run (demo)', 3), status('0000000000004002'));
    assert.equal(info.command, 'npm run (demo)');
    assert.equal(info.ppid, 3);
    assert.equal(info.startTime, '1007');
    assert.deepEqual(
      [...info.caught].sort((a, b) => a - b),
      [2, 15],
    );
  });

  it('follows the launchers up to make, and stops before a shell', () => {
    const read = table([
      [50, 'node', 40, '0'],
      [40, 'node', 30, '0'],
      [30, 'npm run demo', 20, '0'],
      [20, 'make', 10, '4002'],
      [10, 'bash', 1, '4002'],
    ]);
    assert.deepEqual(
      launchers(50, read).map((info) => info.pid),
      [40, 30, 20],
    );
    const noMake = table([
      [50, 'node', 40, '0'],
      [40, 'node', 10, '0'],
      [10, 'bash', 1, '0'],
    ]);
    assert.deepEqual(
      launchers(50, noMake).map((info) => info.pid),
      [40],
    );
  });

  it('says when a launcher ended, was replaced, or stopped catching SIGINT or SIGTERM', () => {
    const before = launchers(
      50,
      table([
        [50, 'node', 20, '0'],
        [20, 'make', 10, '4002'],
        [10, 'bash', 1, '0'],
      ]),
    );
    assert.equal(launcherGone(before, table([[20, 'make', 10, '4002']])), undefined);
    assert.equal(launcherGone(before, table([])), 'make (process 20) ended');
    assert.equal(
      launcherGone(before, table([[20, 'make', 10, '4000']])),
      'make (process 20) received SIGINT',
    );
    assert.equal(
      launcherGone(before, table([[20, 'make', 10, '0002']])),
      'make (process 20) received SIGTERM',
    );
    const replaced = (pid: number) =>
      pid === 20
        ? parseProcessInfo(20, stat(20, 'make', 10).replace(' 1020 ', ' 99 '), status('4002'))
        : undefined;
    assert.equal(launcherGone(before, replaced), 'make (process 20) ended');
  });
});
