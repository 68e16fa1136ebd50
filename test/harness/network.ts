/** Loopback ports and HTTP probes for test servers. */
import { createServer } from 'node:net';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';

/** A TCP port on `host` (default 127.0.0.1) that was free a moment ago. */
export async function freeLoopbackPort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => {
    server.close(() => {
      resolve();
    });
  });
  if (address === null || typeof address === 'string') throw new Error('no TCP address for port 0');
  return address.port;
}

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
export async function isPortOpen(port: number): Promise<boolean> {
  const { connect } = await import('node:net');
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      resolve(false);
    });
  });
}

/**
 * GETs an HTTP or HTTPS URL on a new connection and resolves with its status and body; never
 * rejects on HTTP errors. A new connection each time: a pooled one that was opened before a
 * Service's rules existed can hang on a stale conntrack entry.
 */
export function httpGet(
  url: string,
  tls: Pick<RequestOptions, 'ca' | 'cert' | 'key' | 'rejectUnauthorized'> = {},
  timeoutMs = 2_000,
): Promise<{ status: number; body: string }> {
  const request = url.startsWith('https:') ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(url, { ...tls, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.once('timeout', () => req.destroy(new Error(`timed out after ${timeoutMs} ms`)));
    req.once('error', reject);
    req.end();
  });
}
