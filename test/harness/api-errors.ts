/** Reading the message out of a failed Kubernetes API call. */

/** The API server's `Status.message` of a failed call made with @kubernetes/client-node. */
export function apiErrorMessage(error: unknown): string {
  const body = (error as { body?: unknown }).body;
  if (typeof body === 'string') {
    try {
      const status = JSON.parse(body) as { message?: unknown };
      if (typeof status.message === 'string') return status.message;
    } catch {
      return body;
    }
  }
  if (
    body &&
    typeof body === 'object' &&
    typeof (body as { message?: unknown }).message === 'string'
  ) {
    return (body as { message: string }).message;
  }
  return error instanceof Error ? error.message : String(error);
}

/** The HTTP status of a failed @kubernetes/client-node call, if it has one. */
export function apiErrorCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}
