/** Polling until a condition holds, with a message that says what never happened. */
import { setTimeout as sleep } from 'node:timers/promises';

/** Thrown by a probe to end the wait at once: what it waits for can no longer happen. */
export class GiveUpWaiting extends Error {
  override readonly name = 'GiveUpWaiting';
}

/** Options of {@link waitFor}. */
export interface WaitOptions {
  readonly timeoutMs?: number;
  readonly intervalMs?: number;
  /** What was awaited, for the timeout message: `pod web-1 to be bound`. */
  readonly description: string;
  /** Appended to the timeout message, e.g. where the logs are. */
  readonly hint?: string;
  /** Ends the wait with the signal's reason when it aborts (checked before each probe). */
  readonly signal?: AbortSignal;
}

/**
 * Calls `probe` until it returns a value other than `undefined`/`false` and resolves with it.
 * A probe that throws is retried, and its last error quoted if the wait times out; one that throws
 * {@link GiveUpWaiting} ends the wait with that error.
 */
export async function waitFor<T>(
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  options: WaitOptions,
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    options.signal?.throwIfAborted();
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      if (error instanceof GiveUpWaiting) throw error;
      lastError = error;
    }
    if (Date.now() >= deadline) break;
    await sleep(options.intervalMs ?? 100);
  }
  const cause =
    lastError === undefined
      ? ''
      : ` (last error: ${lastError instanceof Error ? lastError.message : JSON.stringify(lastError)})`;
  const hint = options.hint ? `; ${options.hint}` : '';
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${options.description}${cause}${hint}`,
  );
}
