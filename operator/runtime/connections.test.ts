import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';

import {
  createCertificates,
  type ControlPlaneCertificates,
} from '../../test/harness/certificates.js';
import { reuseConnections } from './connections.js';

describe('reuseConnections', () => {
  let dir: string;
  let certificates: ControlPlaneCertificates;
  let server: Server;
  let handshakes = 0;
  let requests = 0;

  const kubeConfig = (): KubeConfig => {
    const config = new KubeConfig();
    const { port } = server.address() as AddressInfo;
    config.loadFromOptions({
      clusters: [
        {
          name: 'test',
          server: `https://127.0.0.1:${port}`,
          caData: Buffer.from(certificates.pem.ca).toString('base64'),
        },
      ],
      users: [{ name: 'test', token: 'secret-token' }],
      contexts: [{ name: 'test', cluster: 'test', user: 'test' }],
      currentContext: 'test',
    });
    return config;
  };
  const listTenTimes = async (config: KubeConfig) => {
    const core = config.makeApiClient(CoreV1Api);
    for (let i = 0; i < 10; i++) await core.listNamespace();
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'compofa-connections-'));
    certificates = await createCertificates(dir);
    server = createServer(
      {
        cert: await readFile(certificates.servingCert),
        key: await readFile(certificates.servingKey),
      },
      (request, response) => {
        requests++;
        assert.equal(request.headers.authorization, 'Bearer secret-token');
        response.setHeader('content-type', 'application/json');
        response.end(JSON.stringify({ apiVersion: 'v1', kind: 'NamespaceList', items: [] }));
      },
    );
    server.on('secureConnection', () => handshakes++);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  it('without it, client-node opens a TLS connection per request', async () => {
    handshakes = requests = 0;
    await listTenTimes(kubeConfig());
    assert.equal(requests, 10);
    assert.equal(handshakes, 10);
  });

  it('with it, requests share one kept-alive connection and keep their credentials', async () => {
    handshakes = requests = 0;
    const config = reuseConnections(kubeConfig());
    assert.equal(reuseConnections(config), config, 'idempotent');
    await listTenTimes(config);
    assert.equal(requests, 10);
    assert.equal(handshakes, 1);
  });
});
