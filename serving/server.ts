/**
 * The HTTP face of the serving pod: Open Inference Protocol v2 (KServe, Triton) with binary tensor
 * data, TF-Serving's REST predict, health endpoints for Kubernetes probes, and `/metrics`.
 *
 * Every failure answers `{"error": "..."}` through one typed error ({@link HttpError}); the body
 * size is capped before parsing, and a request's tensors never outlive it.
 */
import express, { type NextFunction, type Request, type Response } from 'express';

import { COMPOFA_VERSION } from '../compofa/version.js';
import type { ServingConfig } from './config.js';
import { badRequest, HttpError, notFound, payloadTooLarge, unavailable } from './http-error.js';
import type { Logger } from './logger.js';
import { MicroBatcher } from './batcher.js';
import type { ServingMetrics } from './metrics.js';
import type { ServedModel } from './model.js';
import {
  ACCEPTED_DATATYPES,
  describeValue,
  encodeInferResponse,
  parseInferRequest,
  parsePredictRequest,
  parseRawInferRequest,
  predictResponse,
  modelMetadata,
  V2_EXTENSIONS,
  type ImageBatch,
} from './protocol.js';

/** Calls the model for parsed requests, directly or through the micro-batcher, and times it. */
class Inference {
  private readonly batcher: MicroBatcher | undefined;

  constructor(
    private readonly model: ServedModel,
    private readonly metrics: ServingMetrics,
    config: ServingConfig,
  ) {
    this.batcher = config.batching
      ? new MicroBatcher({
          ...config.batching,
          maxQueuedRows: config.maxQueuedRows,
          rowSize: model.rowSize,
          outputRowSize: model.signature.numClasses,
          run: (data, batch) => model.predict(data, batch),
          onBatch: (size) => {
            metrics.observeBatch(size);
          },
        })
      : undefined;
  }

  /** The probabilities of `batch`, and how long it took (queueing plus the model call). */
  async run(batch: ImageBatch): Promise<{ probabilities: Float32Array; seconds: number }> {
    const started = process.hrtime.bigint();
    let probabilities: Float32Array;
    if (this.batcher) {
      probabilities = await this.batcher.submit(batch);
    } else {
      this.metrics.observeBatch(batch.batch);
      probabilities = await this.model.predict(batch.data, batch.batch);
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.metrics.observeInference(seconds);
    return { probabilities, seconds };
  }

  /** Resolves when no request waits for or is inside a model call. */
  async drain(): Promise<void> {
    await this.batcher?.drain();
  }
}

/**
 * The server's mutable state: the model once loaded, and whether it is draining. Readiness is
 * derived from both, so it can never disagree with them.
 */
export class ServingState {
  private loaded: { model: ServedModel; inference: Inference } | undefined;
  private drainingSince: number | undefined;
  private inFlightRequests = 0;

  constructor(
    private readonly config: ServingConfig,
    private readonly metrics: ServingMetrics,
  ) {}

  /** Installs the loaded, warmed-up model; from now on the server is ready. */
  modelLoaded(model: ServedModel): void {
    this.loaded = { model, inference: new Inference(model, this.metrics, this.config) };
  }

  get ready(): boolean {
    return this.loaded !== undefined && this.drainingSince === undefined;
  }

  /** Whether a model was loaded (and so the server has been ready). */
  get hasModel(): boolean {
    return this.loaded !== undefined;
  }

  get draining(): boolean {
    return this.drainingSince !== undefined;
  }

  get inFlight(): number {
    return this.inFlightRequests;
  }

  /** Readiness turns false now; requests already accepted are still answered. */
  startDraining(): void {
    this.drainingSince ??= Date.now();
  }

  requestStarted(): void {
    this.inFlightRequests++;
  }

  requestFinished(): void {
    this.inFlightRequests--;
  }

  /** The model serving `name` (and `version`, when given), or the HttpError to answer. */
  resolve(name: string, version: string | undefined): { model: ServedModel; inference: Inference } {
    this.checkName(name);
    if (version !== undefined && version !== this.config.modelVersion) {
      throw notFound(
        `model '${name}' has no version '${version}'; this server serves version '${this.config.modelVersion}'`,
      );
    }
    if (!this.loaded) throw unavailable(`model '${name}' is still loading`);
    return this.loaded;
  }

  /** Whether the model called `name` is still loading; a 404 HttpError for any other name. */
  loading(name: string): boolean {
    this.checkName(name);
    return this.loaded === undefined;
  }

  private checkName(name: string): void {
    if (name !== this.config.modelName) {
      throw notFound(
        `model '${name}' is not served here; this server serves '${this.config.modelName}'`,
      );
    }
  }

  /** Resolves once every request has been answered and no model call is pending. */
  async drained(): Promise<void> {
    await this.loaded?.inference.drain();
  }
}

/** Dependencies of {@link createApp}. */
export interface AppDependencies {
  readonly config: ServingConfig;
  readonly state: ServingState;
  readonly metrics: ServingMetrics;
  readonly logger: Logger;
}

/** Names the route template of a request for metrics and logs (bounded label values). */
function route(name: string) {
  return function namedRoute(_request: Request, response: Response, next: NextFunction): void {
    response.locals.route = name;
    next();
  };
}

/** Counts requests by route and status, and tracks how many are in flight. */
function requestMetrics(metrics: ServingMetrics, state: ServingState) {
  return function countRequests(request: Request, response: Response, next: NextFunction): void {
    metrics.requestStarted();
    state.requestStarted();
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      metrics.requestFinished();
      state.requestFinished();
      metrics.countRequest(routeOf(response), request.method, response.statusCode);
    };
    response.once('finish', finish);
    response.once('close', finish);
    next();
  };
}

/** One JSON line per request: debug for successes, warn for client errors, error for the rest. */
function requestLog(logger: Logger) {
  return function logRequest(request: Request, response: Response, next: NextFunction): void {
    const started = process.hrtime.bigint();
    response.once('finish', () => {
      const status = response.statusCode;
      const level = status >= 500 ? 'error' : status >= 400 ? 'warn' : 'debug';
      if (!logger.enabled(level)) return;
      logger.log(level, 'request', {
        method: request.method,
        path: request.path,
        route: routeOf(response),
        status,
        durationMs: Number(process.hrtime.bigint() - started) / 1e6,
        ...(typeof response.locals.error === 'string' ? { error: response.locals.error } : {}),
      });
    });
    next();
  };
}

/** While draining, asks clients to reconnect elsewhere instead of reusing this connection. */
function closeConnectionsWhileDraining(state: ServingState) {
  return function connectionClose(_request: Request, response: Response, next: NextFunction): void {
    if (state.draining) response.setHeader('Connection', 'close');
    next();
  };
}

/**
 * The header of the binary tensor data extension (Triton's, also KServe's): the byte length of the
 * JSON at the start of a body whose binary tensor data follows.
 */
const INFERENCE_HEADER_CONTENT_LENGTH = 'Inference-Header-Content-Length';

/**
 * Reads the body, of any content type, into `request.body` as one Buffer, capped at `limit`
 * bytes: a declared length over the limit is refused before reading, and reading stops as soon as
 * the limit is passed. Leaner than body-parser, which matters at millisecond budgets.
 */
function cappedBody(limit: number) {
  return function readCappedBody(request: Request, _response: Response, next: NextFunction): void {
    const tooLarge = (): HttpError =>
      payloadTooLarge(`request body is larger than the limit of ${limit} bytes`);
    const declared = Number(request.headers['content-length']);
    if (declared > limit) {
      request.resume();
      next(tooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    request.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > limit) {
        failed = true;
        next(tooLarge());
        return;
      }
      chunks.push(chunk);
    });
    request.on('error', (error) => {
      if (failed) return;
      failed = true;
      next(badRequest(`request body could not be read: ${error.message}`));
    });
    request.on('end', () => {
      if (failed) return;
      request.body = Buffer.concat(chunks, size);
      next();
    });
  };
}

/** Parses the Buffer of {@link cappedBody} as JSON (no charset negotiation: JSON is UTF-8). */
function jsonBody() {
  return function parseJsonBody(request: Request, _response: Response, next: NextFunction): void {
    request.body = parseJson(request.body as Buffer, 'request body');
    next();
  };
}

/** A v2 infer body as {@link inferBody} splits it. */
type InferBody =
  /** JSON, and the binary tensor data after it when the request had the header. */
  | { readonly json: unknown; readonly binary: Buffer | undefined }
  /** A raw binary request: the one input's bytes without JSON. */
  | { readonly raw: Buffer };

/**
 * Splits the Buffer of {@link cappedBody} per the binary tensor data extension: with
 * `Inference-Header-Content-Length: N` the first N bytes are the JSON request and the rest is
 * binary tensor data (left in place, not copied); N = 0 makes a raw binary request. Without the
 * header the whole body is JSON.
 */
function inferBody() {
  return function splitInferBody(request: Request, _response: Response, next: NextFunction): void {
    const body = request.body as Buffer;
    const header = request.headers[INFERENCE_HEADER_CONTENT_LENGTH.toLowerCase()];
    let split: InferBody;
    if (header === undefined) {
      split = { json: parseJson(body, 'request body'), binary: undefined };
    } else {
      const length = jsonHeaderLength(String(header), body.length);
      split =
        length === 0
          ? { raw: body }
          : {
              json: parseJson(body.subarray(0, length), `JSON header (the first ${length} bytes)`),
              binary: body.subarray(length),
            };
    }
    request.body = split;
    next();
  };
}

/** The value of `Inference-Header-Content-Length`, checked against the body's length. */
function jsonHeaderLength(value: string, bodyLength: number): number {
  if (!/^\d+$/.test(value)) {
    throw badRequest(
      `${INFERENCE_HEADER_CONTENT_LENGTH}: expected the byte length of the JSON header ` +
        `(an integer >= 0), got ${describeValue(value)}`,
    );
  }
  const length = Number(value);
  if (length > bodyLength) {
    throw badRequest(
      `${INFERENCE_HEADER_CONTENT_LENGTH}: ${length} is larger than the body (${bodyLength} bytes)`,
    );
  }
  return length;
}

function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch (error) {
    throw badRequest(`${what} is not valid JSON: ${(error as Error).message}`);
  }
}

/** Turns every error into `{"error": ...}` with its status; unexpected ones are 500 and logged. */
function errorResponses(logger: Logger) {
  return function answerError(
    error: unknown,
    request: Request,
    response: Response,
    next: NextFunction,
  ): void {
    if (response.headersSent) {
      next(error);
      return;
    }
    const { status, message } = describeError(error);
    if (status >= 500 && !(error instanceof HttpError)) {
      logger.error('request failed', {
        method: request.method,
        path: request.path,
        error: error instanceof Error ? (error.stack ?? error.message) : String(error),
      });
    }
    response.locals.error = message;
    response.status(status).json({ error: message });
  };
}

/** Status and message of an error: an HttpError as it is, anything else a 500. */
function describeError(error: unknown): { status: number; message: string } {
  if (error instanceof HttpError) return { status: error.status, message: error.message };
  return { status: 500, message: 'internal error' };
}

/**
 * The W3C Server-Timing header with the inference time, so clients and proxies can tell the
 * model's share of a response time from the network's.
 */
function serverTiming(response: Response, seconds: number): void {
  response.setHeader('Server-Timing', `inference;dur=${(seconds * 1000).toFixed(3)}`);
}

function routeOf(response: Response): string {
  return typeof response.locals.route === 'string' ? response.locals.route : 'unmatched';
}

/** A path parameter (express types them loosely); undefined when the route has none. */
function optionalParam(request: Request, name: string): string | undefined {
  const value: unknown = (request.params as Record<string, unknown>)[name];
  return typeof value === 'string' ? value : undefined;
}

function param(request: Request, name: string): string {
  const value = optionalParam(request, name);
  if (value === undefined) throw notFound(`missing path parameter '${name}'`);
  return value;
}

/** Splits TF Serving's `name:verb` path segment. */
function modelCall(segment: string): { name: string; verb: string | undefined } {
  const colon = segment.lastIndexOf(':');
  return colon < 0
    ? { name: segment, verb: undefined }
    : { name: segment.slice(0, colon), verb: segment.slice(colon + 1) };
}

/** The express application; {@link ServingState} decides readiness and which model answers. */
export function createApp({ config, state, metrics, logger }: AppDependencies): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.use(requestMetrics(metrics, state), requestLog(logger), closeConnectionsWhileDraining(state));
  const body = cappedBody(config.maxBodyBytes);
  const json = jsonBody();
  const v2Body = inferBody();

  // Bodies as KServe's client reads them; the status alone still answers Kubernetes probes.
  app.get('/v2/health/live', route('/v2/health/live'), (_request, response) => {
    response.status(200).json({ live: true });
  });
  app.get('/v2/health/ready', route('/v2/health/ready'), (_request, response) => {
    response.status(state.ready ? 200 : 503).json({ ready: state.ready });
  });
  app.get('/v2', route('/v2'), (_request, response) => {
    response.json({ name: 'compofa-serving', version: COMPOFA_VERSION, extensions: V2_EXTENSIONS });
  });

  const metadata = (request: Request, response: Response): void => {
    const name = param(request, 'model');
    const version = optionalParam(request, 'version');
    const { model } = state.resolve(name, version);
    response.json({
      ...modelMetadata(
        { modelName: name, versions: [config.modelVersion], platform: model.platform },
        model.signature,
      ),
      parameters: {
        subnet: model.description.subnet ?? null,
        design_space: model.description.designSpace ?? null,
        engine: model.description.engine.name,
        engine_version: model.description.engine.version,
        target: config.target,
        accepted_datatypes: ACCEPTED_DATATYPES,
        max_batch_size: config.maxRequestBatch,
      },
    });
  };
  app.get('/v2/models/:model', route('/v2/models/{m}'), metadata);
  app.get('/v2/models/:model/versions/:version', route('/v2/models/{m}/versions/{v}'), metadata);

  const modelReady = (request: Request, response: Response): void => {
    const name = param(request, 'model');
    try {
      state.resolve(name, optionalParam(request, 'version'));
    } catch (error) {
      // Still loading is an answer here (not ready), as draining is; another name or version 404s.
      if (!(error instanceof HttpError && error.status === 503)) throw error;
    }
    response.status(state.ready ? 200 : 503).json({ name, ready: state.ready });
  };
  app.get('/v2/models/:model/ready', route('/v2/models/{m}/ready'), modelReady);
  app.get(
    '/v2/models/:model/versions/:version/ready',
    route('/v2/models/{m}/versions/{v}/ready'),
    modelReady,
  );

  const infer = async (request: Request, response: Response): Promise<void> => {
    const name = param(request, 'model');
    const { model, inference } = state.resolve(name, optionalParam(request, 'version'));
    const split = request.body as InferBody;
    const parsed =
      'raw' in split
        ? parseRawInferRequest(split.raw, model.signature)
        : parseInferRequest(split.json, model.signature, split.binary);
    const { probabilities, seconds } = await inference.run(parsed.batch);
    serverTiming(response, seconds);
    const encoded = encodeInferResponse({
      modelName: name,
      modelVersion: config.modelVersion,
      id: parsed.id,
      probabilities,
      batch: parsed.batch.batch,
      numClasses: model.signature.numClasses,
      outputName: model.signature.outputName,
      binaryOutput: parsed.binaryOutput,
    });
    if (encoded.headerLength === undefined) {
      response.type('json');
    } else {
      response.setHeader(INFERENCE_HEADER_CONTENT_LENGTH, String(encoded.headerLength));
      response.type('application/octet-stream');
    }
    response.send(encoded.body);
  };
  app.post('/v2/models/:model/infer', route('/v2/models/{m}/infer'), body, v2Body, infer);
  app.post(
    '/v2/models/:model/versions/:version/infer',
    route('/v2/models/{m}/versions/{v}/infer'),
    body,
    v2Body,
    infer,
  );

  // TF Serving puts the verb after a colon in the last segment: /v1/models/m:predict.
  const predict = async (request: Request, response: Response): Promise<void> => {
    const call = modelCall(param(request, 'call'));
    if (call.verb !== 'predict') {
      throw notFound(`unknown method '${call.verb ?? ''}'; only ':predict' is served`);
    }
    // Without a version segment the call segment holds the model name, else the version.
    const versioned = optionalParam(request, 'model') !== undefined;
    const name = versioned ? param(request, 'model') : call.name;
    const version = versioned ? call.name : undefined;
    const { model, inference } = state.resolve(name, version);
    const parsed = parsePredictRequest(request.body, model.signature);
    const { probabilities, seconds } = await inference.run(parsed.batch);
    serverTiming(response, seconds);
    response.json(
      predictResponse(parsed.format, probabilities, parsed.batch.batch, model.signature.numClasses),
    );
  };
  app.post('/v1/models/:call', route('/v1/models/{m}:predict'), body, json, predict);
  app.post(
    '/v1/models/:model/versions/:call',
    route('/v1/models/{m}/versions/{v}:predict'),
    body,
    json,
    predict,
  );
  app.get('/v1/models/:model', route('/v1/models/{m}'), (request, response) => {
    const loading = state.loading(param(request, 'model'));
    response.json({
      model_version_status: [
        {
          version: config.modelVersion,
          state: loading ? 'LOADING' : state.draining ? 'UNLOADING' : 'AVAILABLE',
          status: { error_code: 'OK', error_message: '' },
        },
      ],
    });
  });

  app.get('/metrics', route('/metrics'), async (_request, response) => {
    const { contentType, body: text } = await metrics.exposition();
    response.type(contentType).send(text);
  });

  app.use(route('unmatched'), (request: Request) => {
    throw notFound(`no route for ${request.method} ${request.path}`);
  });
  app.use(errorResponses(logger));
  return app;
}
