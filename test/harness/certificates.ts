/**
 * The PKI of a test control plane, made with the openssl command: a CA, the API server's serving
 * certificate for 127.0.0.1 and localhost (and, for a cluster with kubelets, its address on the
 * node network and the `kubernetes` Service's names), an admin client certificate in group
 * system:masters (as envtest does) and the service-account signing key. Client certificates for
 * kubelets and kube-proxy come from {@link issueClientCertificate}.
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Paths of the files written by {@link createCertificates}, and the PEM text clients need. */
export interface ControlPlaneCertificates {
  readonly caCert: string;
  readonly caKey: string;
  readonly servingCert: string;
  readonly servingKey: string;
  readonly adminCert: string;
  readonly adminKey: string;
  readonly serviceAccountKey: string;
  readonly serviceAccountPublicKey: string;
  readonly pem: { readonly ca: string; readonly adminCert: string; readonly adminKey: string };
}

async function openssl(args: readonly string[], cwd: string): Promise<void> {
  try {
    await run('openssl', args, { cwd });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? '';
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new Error(
      missing
        ? 'the openssl command is needed to make the test control plane certificates (apt-get install openssl)'
        : `openssl ${args[0] ?? ''} failed: ${stderr.trim() || String(error)}`,
    );
  }
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** Signs a new key of `name` in `dir` with the CA there (ca.crt, ca.key). */
async function issue(
  dir: string,
  name: string,
  subject: string,
  extensions: string,
): Promise<void> {
  await openssl(
    ['req', ...EC_KEY, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject],
    dir,
  );
  await writeFile(join(dir, `${name}.ext`), extensions);
  await openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '2',
      '-out',
      `${name}.crt`,
      '-extfile',
      `${name}.ext`,
    ],
    dir,
  );
}

/** A client certificate and key, as files. */
export interface ClientCertificate {
  readonly cert: string;
  readonly key: string;
}

/**
 * Issues a client certificate for user `commonName` in `groups` from the CA that
 * {@link createCertificates} made in `dir`, e.g. `system:node:<name>` in `system:nodes` for a
 * kubelet (what the Node authorizer and NodeRestriction expect).
 */
export async function issueClientCertificate(
  dir: string,
  name: string,
  commonName: string,
  groups: readonly string[] = [],
): Promise<ClientCertificate> {
  const subject = [...groups.map((group) => `/O=${group}`), `/CN=${commonName}`].join('');
  await issue(
    dir,
    name,
    subject,
    'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n',
  );
  return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
}

/**
 * Writes a fresh PKI into `dir` (valid for two days; every test run makes its own).
 * `servingAddresses`: more IP addresses and DNS names the API server is reached at.
 */
export async function createCertificates(
  dir: string,
  servingAddresses: { readonly ips?: readonly string[]; readonly dns?: readonly string[] } = {},
): Promise<ControlPlaneCertificates> {
  await openssl(
    [
      'req',
      '-x509',
      ...EC_KEY,
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '2',
      '-subj',
      '/CN=compofa-test-ca',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  const altNames = [
    ...['127.0.0.1', ...(servingAddresses.ips ?? [])].map((ip) => `IP:${ip}`),
    ...['localhost', ...(servingAddresses.dns ?? [])].map((name) => `DNS:${name}`),
  ];
  await issue(
    dir,
    'serving',
    '/CN=kube-apiserver',
    `subjectAltName=${altNames.join(',')}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n`,
  );
  await issue(
    dir,
    'admin',
    '/O=system:masters/CN=compofa-test-admin',
    'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n',
  );

  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  await writeFile(
    join(dir, 'service-account.key'),
    privateKey.export({ type: 'pkcs8', format: 'pem' }),
    { mode: 0o600 },
  );
  await writeFile(
    join(dir, 'service-account.pub'),
    publicKey.export({ type: 'spki', format: 'pem' }),
  );

  const path = (file: string): string => join(dir, file);
  const [ca, adminCert, adminKey] = await Promise.all(
    ['ca.crt', 'admin.crt', 'admin.key'].map((file) => readFile(path(file), 'utf8')),
  );
  return {
    caCert: path('ca.crt'),
    caKey: path('ca.key'),
    servingCert: path('serving.crt'),
    servingKey: path('serving.key'),
    adminCert: path('admin.crt'),
    adminKey: path('admin.key'),
    serviceAccountKey: path('service-account.key'),
    serviceAccountPublicKey: path('service-account.pub'),
    pem: { ca: ca ?? '', adminCert: adminCert ?? '', adminKey: adminKey ?? '' },
  };
}
