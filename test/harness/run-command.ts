/** Running a command to completion and capturing everything, for tests of scripts and CLIs. */
import { execFile } from 'node:child_process';

/** How a command ended. */
export interface CommandResult {
  /** The exit code; 1 when the command died of a signal or could not start. */
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `command` with `args`, adding `env` to this process's environment; never rejects. */
export function runCommand(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile(
      command,
      args,
      { env: { ...process.env, ...env }, maxBuffer: 16 << 20 },
      (error, stdout, stderr) => {
        const code = (error as { code?: unknown } | null)?.code;
        resolve({ code: error ? (typeof code === 'number' ? code : 1) : 0, stdout, stderr });
      },
    );
  });
}
