// The certificate for implicit-TLS (SMTPS) listeners: the tls plugin's, else tls_cert/tls_key.
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import type { Runtime } from '../runtime.js';

export function tls_context_for(runtime: Runtime): tls.SecureContext | undefined {
  for (const p of runtime.plugins) {
    const get = (p as unknown as { secure_context?: () => tls.SecureContext | undefined }).secure_context;
    if (typeof get === 'function') {
      const ctx = get.call(p);
      if (ctx) return ctx;
    }
  }
  const cert = runtime.server_qp.config('tls_cert');
  const key = runtime.server_qp.config('tls_key');
  if (!cert || !key) return undefined;
  return tls.createSecureContext({ cert: readFileSync(cert), key: readFileSync(key) });
}
