/**
 * A load generator for served models: `concurrency` loops, each sending one OIP v2 inference
 * request after the other to one URL, counting what was answered and what failed (a status other
 * than 200, a reset connection, a timeout). What a rollout under load is judged by.
 */
import { request } from 'node:http';

/** Counts of a {@link LoadGenerator} so far. */
export interface LoadCounts {
  readonly sent: number;
  readonly answered: number;
  readonly failed: number;
  /** The first few failures, e.g. `503 {"error":...}` or `ECONNRESET`. */
  readonly failures: readonly string[];
}

/** Options of {@link LoadGenerator.start}. */
export interface LoadOptions {
  /** The `/v2/models/<name>/infer` URL (http only). */
  readonly url: string;
  /** The JSON body of every request. */
  readonly body: string;
  /** Requests in flight at once; default 2. */
  readonly concurrency?: number;
  /** A request that takes longer fails; default 10 s. */
  readonly timeoutMs?: number;
}

const KEPT_FAILURES = 10;

/** Requests in a loop until {@link stop}. */
export class LoadGenerator {
  private sent = 0;
  private answered = 0;
  private failed = 0;
  private readonly failures: string[] = [];
  private running = true;
  private readonly loops: Promise<void>[];

  private constructor(private readonly options: LoadOptions) {
    this.loops = Array.from({ length: options.concurrency ?? 2 }, () => this.loop());
  }

  /** Starts sending at once. */
  static start(options: LoadOptions): LoadGenerator {
    return new LoadGenerator(options);
  }

  /** What happened so far. */
  counts(): LoadCounts {
    return {
      sent: this.sent,
      answered: this.answered,
      failed: this.failed,
      failures: [...this.failures],
    };
  }

  /** Lets the requests in flight finish, then resolves with the final counts. */
  async stop(): Promise<LoadCounts> {
    this.running = false;
    await Promise.all(this.loops);
    return this.counts();
  }

  private async loop(): Promise<void> {
    while (this.running) {
      this.sent += 1;
      const failure = await this.once();
      if (failure === undefined) this.answered += 1;
      else {
        this.failed += 1;
        if (this.failures.length < KEPT_FAILURES) this.failures.push(failure);
        // A failing target is not hammered: the next try waits a little.
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }

  /** One request; resolves with why it failed, or undefined. */
  private once(): Promise<string | undefined> {
    return new Promise((resolve) => {
      const req = request(
        this.options.url,
        {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(this.options.body),
          },
          // A connection per request, as independent clients would open: a pooled socket to a
          // pod that is going away would be a failure of this generator, not of the rollout.
          agent: false,
          timeout: this.options.timeoutMs ?? 10_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => {
            resolve(
              res.statusCode === 200
                ? undefined
                : `${res.statusCode ?? '?'} ${Buffer.concat(chunks).toString('utf8').slice(0, 200)}`,
            );
          });
          res.on('error', (error) => {
            resolve(error.message);
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', (error: NodeJS.ErrnoException) => {
        resolve(error.code ?? error.message);
      });
      req.end(this.options.body);
    });
  }
}
