import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { freeLoopbackPort } from '../../test/harness/network.js';
import { PrometheusClient, PrometheusError, redactUrl, type Fetch } from './prometheus.js';

/** A fetch that records its calls and answers `body` with `status`. */
function answering(
  body: unknown,
  status = 200,
): { fetch: Fetch; calls: { url: URL; init: RequestInit }[] } {
  const calls: { url: URL; init: RequestInit }[] = [];
  const fetch: Fetch = (input, init) => {
    calls.push({ url: new URL(input), init });
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    return Promise.resolve(new Response(text, { status }));
  };
  return { fetch, calls };
}

function vector(...values: string[]) {
  return {
    status: 'success',
    data: {
      resultType: 'vector',
      result: values.map((value, i) => ({
        metric: { pod: `p${i}` },
        value: [1700000000.5, value],
      })),
    },
  };
}

async function rejection(promise: Promise<unknown>): Promise<PrometheusError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof PrometheusError, `expected a PrometheusError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the query to fail');
}

describe('redactUrl', () => {
  it('removes userinfo and the trailing slash, and never quotes an invalid URL', () => {
    assert.equal(redactUrl('http://alice:s3cret@prom:9090/'), 'http://prom:9090');
    assert.equal(redactUrl('https://token@prom.example/prefix/'), 'https://prom.example/prefix');
    assert.equal(redactUrl('http://prom:9090'), 'http://prom:9090');
    assert.equal(redactUrl('alice:s3cret@prom'), '<an invalid URL>');
  });
});

describe('PrometheusClient.query', () => {
  it('GETs /api/v1/query below the base path with query, time and timeout', async () => {
    const { fetch, calls } = answering(vector('1'));
    const client = new PrometheusClient('http://prom:9090/prometheus', { fetch, timeoutMs: 2500 });
    await client.query('up{job="a"}', new Date(1_700_000_000_123));
    const [call] = calls;
    assert.ok(call);
    assert.equal(call.url.origin + call.url.pathname, 'http://prom:9090/prometheus/api/v1/query');
    assert.equal(call.url.searchParams.get('query'), 'up{job="a"}');
    assert.equal(call.url.searchParams.get('time'), '1700000000.123');
    assert.equal(call.url.searchParams.get('timeout'), '2500ms');
    assert.ok(call.init.signal instanceof AbortSignal);
  });

  it('sends userinfo as Basic auth, not in the URL, and names the URL without it', async () => {
    const { fetch, calls } = answering(vector('1'));
    const client = new PrometheusClient('http://alice:s%40cret@prom:9090', {
      fetch,
      headers: { 'x-scope-orgid': 'team' },
    });
    await client.query('up');
    const headers = calls[0]?.init.headers as Record<string, string>;
    assert.equal(headers.authorization, `Basic ${Buffer.from('alice:s@cret').toString('base64')}`);
    assert.equal(headers['x-scope-orgid'], 'team');
    assert.equal(calls[0]?.url.username, '');
    assert.equal(client.url, 'http://prom:9090');
  });

  it('parses vectors, with NaN and infinities', async () => {
    const { fetch } = answering({
      ...vector('0.25', 'NaN', '+Inf', '-Inf', '1e-3'),
      warnings: ['w'],
      infos: ['i'],
    });
    const answer = await new PrometheusClient('http://prom', { fetch }).query('x');
    assert.deepEqual(answer.warnings, ['w', 'i']);
    assert.equal(answer.result.resultType, 'vector');
    const values = answer.result.samples.map((s) => s.value);
    assert.deepEqual(values, [0.25, NaN, Infinity, -Infinity, 0.001]);
    assert.deepEqual(answer.result.samples[0], {
      metric: { pod: 'p0' },
      timestamp: 1700000000.5,
      value: 0.25,
    });
  });

  it('parses scalars, strings and matrices', async () => {
    const client = (body: unknown) => new PrometheusClient('http://prom', answering(body));
    const scalar = await client({
      status: 'success',
      data: { resultType: 'scalar', result: [12, '3'] },
    }).query('3');
    assert.deepEqual(scalar.result, { resultType: 'scalar', timestamp: 12, value: 3 });
    const text = await client({
      status: 'success',
      data: { resultType: 'string', result: [12, 'hi'] },
    }).query('"hi"');
    assert.deepEqual(text.result, { resultType: 'string', timestamp: 12, value: 'hi' });
    const matrix = await client({
      status: 'success',
      data: {
        resultType: 'matrix',
        result: [
          {
            metric: {},
            values: [
              [1, '1'],
              [2, '2'],
            ],
          },
        ],
      },
    }).query('up[2s]');
    assert.deepEqual(matrix.result, {
      resultType: 'matrix',
      series: [
        {
          metric: {},
          values: [
            { timestamp: 1, value: 1 },
            { timestamp: 2, value: 2 },
          ],
        },
      ],
    });
  });

  it("turns Prometheus' errors into PrometheusError with errorType, error and status", async () => {
    const { fetch } = answering(
      { status: 'error', errorType: 'bad_data', error: '1:5: parse error: unexpected "}"' },
      400,
    );
    const error = await rejection(
      new PrometheusClient('http://bob:pw@prom:9090', { fetch }).query('up{}}'),
    );
    assert.equal(error.errorType, 'bad_data');
    assert.equal(error.status, 400);
    assert.equal(error.url, 'http://prom:9090');
    assert.equal(
      error.message,
      'Prometheus at http://prom:9090: bad_data: 1:5: parse error: unexpected "}"',
    );
  });

  it('reports answers that are not the API JSON as bad_response, quoting the body', async () => {
    const html = await rejection(
      new PrometheusClient('http://prom', answering('<html>502 Bad Gateway</html>', 502)).query(
        'up',
      ),
    );
    assert.equal(html.errorType, 'bad_response');
    assert.match(html.message, /HTTP 502 with a body that is not JSON: "<html>502 Bad Gateway/);
    const shape = await rejection(
      new PrometheusClient('http://prom', answering({ status: 'success', data: {} })).query('up'),
    );
    assert.match(shape.message, /bad_response: HTTP 200: expected resultType vector, matrix/);
    const value = await rejection(
      new PrometheusClient('http://prom', answering(vector('fast'))).query('up'),
    );
    assert.match(value.message, /expected a number, got "fast"/);
  });

  it('reports a timeout with the limit', async () => {
    // AbortSignal.timeout's timer does not keep the process alive; a real socket would.
    const hanging: Fetch = (_input, init) =>
      new Promise((_resolve, reject) => {
        const socket = setTimeout(() => undefined, 60_000);
        init.signal?.addEventListener('abort', () => {
          clearTimeout(socket);
          // What AbortSignal.timeout's signal rejects with, as undici passes it on.
          reject(new DOMException('The operation was aborted due to timeout', 'TimeoutError'));
        });
      });
    const error = await rejection(
      new PrometheusClient('http://prom', { fetch: hanging, timeoutMs: 50 }).query('up'),
    );
    assert.equal(error.errorType, 'timeout');
    assert.equal(error.message, 'Prometheus at http://prom: timeout: no answer within 50 ms');
  });

  it('reports an unreachable server with the real fetch, naming the URL without credentials', async () => {
    const port = await freeLoopbackPort();
    const error = await rejection(
      new PrometheusClient(`http://alice:s3cret@127.0.0.1:${port}/`).query('up'),
    );
    assert.equal(error.errorType, 'network');
    assert.match(
      error.message,
      new RegExp(`^Prometheus at http://127\\.0\\.0\\.1:${port}: network: .*ECONNREFUSED`),
    );
    assert.doesNotMatch(error.message, /alice|s3cret/);
  });

  it('refuses a URL that is not http(s) without quoting its credentials', () => {
    assert.throws(
      () => new PrometheusClient('ftp://u:pw@prom'),
      /Prometheus at ftp:\/\/prom: bad_data: expected an http\(s\) URL, got ftp:/,
    );
    assert.throws(
      () => new PrometheusClient('u:pw@prom'),
      (error: unknown) => {
        assert.ok(error instanceof PrometheusError);
        assert.doesNotMatch(error.message, /pw/);
        return true;
      },
    );
  });
});

describe('PrometheusClient.queryVector', () => {
  it('returns the samples, and refuses other result types naming the query', async () => {
    const samples = await new PrometheusClient('http://prom', answering(vector('2'))).queryVector(
      'x',
    );
    assert.equal(samples[0]?.value, 2);
    const error = await rejection(
      new PrometheusClient(
        'http://prom',
        answering({ status: 'success', data: { resultType: 'scalar', result: [1, '1'] } }),
      ).queryVector('1'),
    );
    assert.match(error.message, /expected an instant vector from 1, got a scalar/);
  });
});
