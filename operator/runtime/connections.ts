/**
 * One kept-alive connection pool per API server for a KubeConfig. client-node 1.4 gives every
 * request a new https.Agent (KubeConfig.applySecurityAuthentication), so each API call pays a TCP
 * and TLS handshake and leaves a socket behind: with a fleet of targets that was most of the
 * operator's time and memory. Requests keep their own headers (tokens are re-read per request);
 * only the transport is shared, keyed by everything that makes one agent differ from another.
 */
import { createHash } from 'node:crypto';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent, type AgentOptions } from 'node:https';

import type { KubeConfig } from '@kubernetes/client-node';

/** Connections kept open per API server (watches hold one each for as long as they run). */
const MAX_FREE_SOCKETS = 16;

/** The TLS options that tell two agents apart. */
const AGENT_KEYS = [
  'ca',
  'cert',
  'key',
  'pfx',
  'passphrase',
  'servername',
  'rejectUnauthorized',
] as const satisfies readonly (keyof AgentOptions)[];

/**
 * Makes `kubeConfig`'s API calls share kept-alive agents, one per distinct TLS setting; returns
 * it. Idempotent. Proxy agents (a cluster's proxy-url) are left as client-node makes them.
 */
export function reuseConnections(kubeConfig: KubeConfig): KubeConfig {
  if (POOLED.has(kubeConfig)) return kubeConfig;
  POOLED.add(kubeConfig);
  const agents = new Map<string, HttpAgent>();
  const authenticate = kubeConfig.applySecurityAuthentication.bind(kubeConfig);
  kubeConfig.applySecurityAuthentication = async (context) => {
    await authenticate(context);
    const fresh = context.getAgent();
    if (!fresh || (fresh.constructor !== HttpsAgent && fresh.constructor !== HttpAgent)) return;
    const options = (fresh as HttpsAgent).options;
    const key = agentKey(fresh instanceof HttpsAgent, options);
    let shared = agents.get(key);
    if (!shared) {
      const pooled = { ...options, keepAlive: true, maxFreeSockets: MAX_FREE_SOCKETS };
      shared = fresh instanceof HttpsAgent ? new HttpsAgent(pooled) : new HttpAgent(pooled);
      agents.set(key, shared);
    }
    context.setAgent(shared);
    fresh.destroy();
  };
  return kubeConfig;
}

const POOLED = new WeakSet<KubeConfig>();

function agentKey(tls: boolean, options: AgentOptions): string {
  const hash = createHash('sha256').update(tls ? 'https' : 'http');
  for (const name of AGENT_KEYS) {
    const value: unknown = options[name];
    hash.update(`\u0000${name}=`);
    if (value !== undefined)
      hash.update(
        typeof value === 'string' || Buffer.isBuffer(value) ? value : JSON.stringify(value),
      );
  }
  return hash.digest('hex');
}
