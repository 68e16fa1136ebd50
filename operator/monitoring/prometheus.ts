/**
 * A small client of Prometheus' HTTP API (https://prometheus.io/docs/prometheus/latest/querying/api/):
 * instant queries only, which is all the operator needs to read a target's served latency. It uses
 * the global fetch with a timeout, so a slow or unreachable Prometheus delays a reconcile by at most
 * that long, and every failure becomes a {@link PrometheusError} that names the server (without its
 * credentials) and what Prometheus said.
 */

/** A sample of an instant vector: the series' labels and its value at the evaluation time. */
export interface InstantSample {
  readonly metric: Readonly<Record<string, string>>;
  /** Unix time in seconds. */
  readonly timestamp: number;
  /** NaN and ±Infinity are kept as such (Prometheus writes them as "NaN", "+Inf", "-Inf"). */
  readonly value: number;
}

/** A series of a range vector (a subquery such as `up[5m]` evaluated as an instant query). */
export interface RangeSeries {
  readonly metric: Readonly<Record<string, string>>;
  readonly values: readonly { readonly timestamp: number; readonly value: number }[];
}

/** The result of an instant query, by Prometheus' resultType. */
export type QueryResult =
  | { readonly resultType: 'vector'; readonly samples: readonly InstantSample[] }
  | { readonly resultType: 'matrix'; readonly series: readonly RangeSeries[] }
  | { readonly resultType: 'scalar'; readonly timestamp: number; readonly value: number }
  | { readonly resultType: 'string'; readonly timestamp: number; readonly value: string };

/** A query's result with the warnings and infos Prometheus attached (e.g. about `rate` on gauges). */
export interface QueryAnswer {
  readonly result: QueryResult;
  readonly warnings: readonly string[];
}

/** A failed query. The message names the server (credentials removed) and Prometheus' error. */
export class PrometheusError extends Error {
  override readonly name = 'PrometheusError';

  constructor(
    /** The server's URL without userinfo, safe to log and to put in a condition message. */
    readonly url: string,
    /**
     * Prometheus' own errorType (`bad_data`, `timeout`, `execution`, `unavailable`, ...) when it
     * answered with one; otherwise `network` (no connection), `timeout` (no answer in time) or
     * `bad_response` (an answer that is not Prometheus' API JSON, e.g. from a proxy).
     */
    readonly errorType: string,
    /** Prometheus' error text, or what was wrong with the answer. */
    readonly detail: string,
    /** The HTTP status, when there was an answer. */
    readonly status?: number,
    options?: ErrorOptions,
  ) {
    super(`Prometheus at ${url}: ${errorType}: ${detail}`, options);
  }
}

/** The fetch the client calls; the global one unless a test injects another. */
export type Fetch = (input: string, init: RequestInit) => Promise<Response>;

/** Options of {@link PrometheusClient}. */
export interface PrometheusClientOptions {
  /**
   * Longest wait for one answer, in milliseconds (default 10 s); also sent as Prometheus' own
   * `timeout` so that it stops evaluating when the client has given up.
   */
  readonly timeoutMs?: number;
  /** Extra request headers, such as `Authorization: Bearer ...`; never put in messages. */
  readonly headers?: Readonly<Record<string, string>>;
  readonly fetch?: Fetch;
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** How much of a non-JSON answer an error quotes. */
const QUOTED_BODY_CHARS = 200;

/**
 * `url` without userinfo (and without a trailing slash), for messages: `http://user:pw@prom:9090/`
 * becomes `http://prom:9090`. A URL that does not parse is replaced by a placeholder rather than
 * quoted, since it may still hold a password; so is one without a host.
 */
export function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return '<an invalid URL>';
  }
  // Without a host (`user:pw@prom` parses as scheme `user:`) nothing tells a secret from a name.
  if (parsed.host === '') return '<an invalid URL>';
  parsed.username = '';
  parsed.password = '';
  return parsed.href.replace(/\/+$/, '');
}

/**
 * A Prometheus server's query API. `baseUrl` is the server's root (a path prefix such as
 * `http://prom/prometheus` is kept); userinfo in it becomes a Basic Authorization header, since
 * fetch refuses URLs with credentials.
 */
export class PrometheusClient {
  /** The base URL without credentials, as messages name it. */
  readonly url: string;
  private readonly base: URL;
  private readonly headers: Readonly<Record<string, string>>;
  private readonly timeoutMs: number;
  private readonly fetch: Fetch;

  constructor(baseUrl: string, options: PrometheusClientOptions = {}) {
    this.url = redactUrl(baseUrl);
    this.base = parseBaseUrl(baseUrl, this.url);
    this.headers = { accept: 'application/json', ...basicAuth(this.base), ...options.headers };
    this.base.username = '';
    this.base.password = '';
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.fetch = options.fetch ?? ((input, init) => fetch(input, init));
  }

  /** Evaluates `promql` at `time` (default: now, as Prometheus sees it). */
  async query(promql: string, time?: Date): Promise<QueryAnswer> {
    const endpoint = new URL('api/v1/query', this.base);
    endpoint.searchParams.set('query', promql);
    if (time) endpoint.searchParams.set('time', (time.getTime() / 1000).toFixed(3));
    endpoint.searchParams.set('timeout', `${this.timeoutMs}ms`);
    const response = await this.get(endpoint);
    const body = await this.readJson(response);
    return this.parseAnswer(response.status, body);
  }

  /** Evaluates `promql`, which must give an instant vector, and returns its samples. */
  async queryVector(promql: string, time?: Date): Promise<readonly InstantSample[]> {
    const { result } = await this.query(promql, time);
    if (result.resultType !== 'vector')
      throw new PrometheusError(
        this.url,
        'bad_data',
        `expected an instant vector from ${promql}, got a ${result.resultType}`,
      );
    return result.samples;
  }

  private async get(endpoint: URL): Promise<Response> {
    try {
      return await this.fetch(endpoint.href, {
        headers: this.headers,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (error) {
      if (error instanceof Error && error.name === 'TimeoutError')
        throw new PrometheusError(this.url, 'timeout', `no answer within ${this.timeoutMs} ms`);
      throw new PrometheusError(this.url, 'network', networkReason(error), undefined, {
        cause: error,
      });
    }
  }

  private async readJson(response: Response): Promise<unknown> {
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      const reason =
        error instanceof Error && error.name === 'TimeoutError'
          ? `no complete answer within ${this.timeoutMs} ms`
          : networkReason(error);
      throw new PrometheusError(this.url, 'network', reason, response.status, { cause: error });
    }
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new PrometheusError(
        this.url,
        'bad_response',
        `HTTP ${response.status} with a body that is not JSON: ${quote(text)}`,
        response.status,
      );
    }
  }

  private parseAnswer(status: number, body: unknown): QueryAnswer {
    if (!isRecord(body) || (body.status !== 'success' && body.status !== 'error'))
      throw this.badResponse(status, 'expected {"status": "success" | "error", ...}');
    if (body.status === 'error') {
      const errorType = typeof body.errorType === 'string' ? body.errorType : 'unknown';
      const detail = typeof body.error === 'string' ? body.error : 'no error text';
      throw new PrometheusError(this.url, errorType, detail, status);
    }
    const warnings = [...strings(body.warnings), ...strings(body.infos)];
    try {
      return { result: parseResult(body.data), warnings };
    } catch (error) {
      throw this.badResponse(status, error instanceof Error ? error.message : String(error));
    }
  }

  private badResponse(status: number, what: string): PrometheusError {
    return new PrometheusError(this.url, 'bad_response', `HTTP ${status}: ${what}`, status);
  }
}

function parseBaseUrl(baseUrl: string, redacted: string): URL {
  let base: URL;
  try {
    base = new URL(baseUrl);
  } catch {
    throw new PrometheusError(
      redacted,
      'bad_data',
      'expected an http(s) URL such as http://prometheus:9090',
    );
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:')
    throw new PrometheusError(
      redacted,
      'bad_data',
      `expected an http(s) URL, got ${base.protocol}`,
    );
  // A trailing slash makes `api/v1/query` resolve below any path prefix.
  if (!base.pathname.endsWith('/')) base.pathname += '/';
  base.search = '';
  base.hash = '';
  return base;
}

function basicAuth(url: URL): Record<string, string> {
  if (url.username === '' && url.password === '') return {};
  const user = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  return { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` };
}

/** Why fetch failed, from undici's `fetch failed` and its cause (ECONNREFUSED, ENOTFOUND, ...). */
function networkReason(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause: unknown = error.cause;
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code;
    return typeof code === 'string'
      ? `${error.message} (${code})`
      : `${error.message} (${cause.message})`;
  }
  return error.message;
}

function quote(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return JSON.stringify(
    flat.length > QUOTED_BODY_CHARS ? `${flat.slice(0, QUOTED_BODY_CHARS)}…` : flat,
  );
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function strings(value: unknown): string[] {
  return Array.isArray(value)
    ? value.filter((item): item is string => typeof item === 'string')
    : [];
}

function parseResult(data: unknown): QueryResult {
  if (!isRecord(data)) throw new Error('expected a data object');
  const { resultType, result } = data;
  switch (resultType) {
    case 'vector':
      return { resultType, samples: array(result, 'vector').map(parseSample) };
    case 'matrix':
      return { resultType, series: array(result, 'matrix').map(parseSeries) };
    case 'scalar': {
      const [timestamp, value] = parsePair(result);
      return { resultType, timestamp, value: parseValue(value) };
    }
    case 'string': {
      const [timestamp, value] = parsePair(result);
      return { resultType, timestamp, value };
    }
    default:
      throw new Error(
        `expected resultType vector, matrix, scalar or string, got ${JSON.stringify(resultType)}`,
      );
  }
}

function array(value: unknown, resultType: string): unknown[] {
  if (!Array.isArray(value)) throw new Error(`expected an array as the ${resultType} result`);
  return value;
}

function parseSample(item: unknown): InstantSample {
  if (!isRecord(item)) throw new Error('expected each sample to be an object');
  if ('histogram' in item)
    throw new Error('got a native histogram sample; expected float samples (classic histograms)');
  const [timestamp, value] = parsePair(item.value);
  return { metric: parseLabels(item.metric), timestamp, value: parseValue(value) };
}

function parseSeries(item: unknown): RangeSeries {
  if (!isRecord(item) || !Array.isArray(item.values))
    throw new Error('expected each series to be an object with values');
  const values = item.values.map((pair) => {
    const [timestamp, value] = parsePair(pair);
    return { timestamp, value: parseValue(value) };
  });
  return { metric: parseLabels(item.metric), values };
}

function parseLabels(value: unknown): Record<string, string> {
  if (!isRecord(value)) throw new Error('expected labels as an object');
  const labels: Record<string, string> = {};
  for (const [name, label] of Object.entries(value)) {
    if (typeof label !== 'string') throw new Error(`expected label ${name} to be a string`);
    labels[name] = label;
  }
  return labels;
}

/** `[unix seconds, "value"]`, the shape of every sample in the API. */
function parsePair(value: unknown): [number, string] {
  if (
    !Array.isArray(value) ||
    value.length !== 2 ||
    typeof value[0] !== 'number' ||
    typeof value[1] !== 'string'
  )
    throw new Error(`expected a [timestamp, "value"] pair, got ${JSON.stringify(value)}`);
  return [value[0], value[1]];
}

/** Prometheus' float text: Go's formatting plus NaN, +Inf and -Inf, which Number() half knows. */
function parseValue(text: string): number {
  if (text === '+Inf' || text === 'Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  const value = Number(text);
  if (text.trim() === '' || Number.isNaN(value))
    throw new Error(`expected a number, got ${JSON.stringify(text)}`);
  return value;
}
