/**
 * The one typed error of the inference server: anything that should reach the client as a 4xx or
 * 503 answer is thrown as an {@link HttpError}; any other error is a bug and becomes a 500.
 */

/**
 * An error with the HTTP status it should be answered with. The message is written for the
 * client (it names the offending field and what is expected) and is sent as `{"error": message}`.
 */
export class HttpError extends Error {
  override readonly name = 'HttpError';
  /** The HTTP status code, e.g. 400. */
  readonly status: number;
  /** Whether the message may be shown to the client (always true: messages are written for it). */
  readonly expose = true;

  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** 400: the request is malformed; the message names the field and what is expected. */
export function badRequest(message: string): HttpError {
  return new HttpError(400, message);
}

/** 404: no such model, version or route. */
export function notFound(message: string): HttpError {
  return new HttpError(404, message);
}

/** 413: the request is larger than the server accepts (too many rows or bytes). */
export function payloadTooLarge(message: string): HttpError {
  return new HttpError(413, message);
}

/** 503: the server cannot take the request now (overloaded, not ready, or shutting down). */
export function unavailable(message: string): HttpError {
  return new HttpError(503, message);
}
