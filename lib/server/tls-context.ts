// Server certificates. The default one is the tls plugin's (else tls_cert/tls_key); a listener
// address may have its own (`via/<local ip>/tls_cert` and `tls_key`, or the listener_parameters
// hook), and a name the client asks for with SNI its own (`sni/<name>/tls_cert` and `tls_key`,
// exact name first, then `*.<parent domain>`). docs/listeners.md.
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { LOGERROR, LOGINFO } from '../constants.js';
import type { Qpsmtpd } from '../qpsmtpd.js';
import type { Runtime } from '../runtime.js';

/** The default certificate and the settings other certificates are built with. */
export interface TlsBase {
  context: tls.SecureContext;
  /** Everything but cert and key (ciphers, versions, CA, dhparam). */
  options: tls.SecureContextOptions;
  /** The default files, so an overlay naming the same ones reuses `context`. */
  cert?: string;
  key?: string;
}

interface Provider {
  tls_base?: () => TlsBase | undefined;
  secure_context?: () => tls.SecureContext | undefined;
}

/** The tls plugin's certificate and settings, else tls_cert/tls_key with node's defaults. */
export function tls_base_for(runtime: Runtime): TlsBase | undefined {
  for (const p of runtime.plugins) {
    const provider = p as unknown as Provider;
    if (typeof provider.tls_base === 'function') {
      const base = provider.tls_base.call(p);
      if (base) return base;
    }
    if (typeof provider.secure_context === 'function') {
      const ctx = provider.secure_context.call(p);
      if (ctx) return { context: ctx, options: {} };
    }
  }
  const qp = runtime.server_qp;
  const cert = config_path(qp, 'tls_cert', qp.config('tls_cert'));
  const key = config_path(qp, 'tls_key', qp.config('tls_key'));
  if (!cert || !key) return undefined;
  return { context: tls.createSecureContext({ cert: readFileSync(cert), key: readFileSync(key) }), options: {}, cert, key };
}

/** The default context (what implicit-TLS listeners used before per-listener certificates). */
export function tls_context_for(runtime: Runtime): tls.SecureContext | undefined {
  return tls_base_for(runtime)?.context;
}

/** A config value naming a file: a relative path is relative to the config directory that holds `name`. */
function config_path(qp: Qpsmtpd, name: string, value: string | undefined): string | undefined {
  const v = value?.trim();
  if (!v) return undefined;
  return path.isAbsolute(v) ? v : path.join(qp.runtime.config.config_dir(name), v);
}

interface Cached {
  context: tls.SecureContext;
  stamp: string;
}

const built = new WeakMap<TlsBase, Map<string, Cached>>();

function stamp_of(file: string): string {
  const st = statSync(file);
  return `${st.mtimeMs}:${st.size}:${st.ino}`;
}

/** The context for a cert/key pair with `base`'s other settings; rebuilt when a file changes. */
function context_with(qp: Qpsmtpd, base: TlsBase, cert: string, key: string): tls.SecureContext | undefined {
  if (cert === base.cert && key === base.key) return base.context;
  let cache = built.get(base);
  if (!cache) built.set(base, (cache = new Map()));
  const id = `${cert}\0${key}`;
  try {
    const stamp = `${stamp_of(cert)}/${stamp_of(key)}`;
    const hit = cache.get(id);
    if (hit && hit.stamp === stamp) return hit.context;
    const context = tls.createSecureContext({ ...base.options, cert: readFileSync(cert), key: readFileSync(key) });
    cache.set(id, { context, stamp });
    qp.log(LOGINFO, `TLS certificate ${cert} loaded`);
    return context;
  } catch (err) {
    qp.log(LOGERROR, `cannot use TLS certificate ${cert} with key ${key}: ${err instanceof Error ? err.message : String(err)}; using the default certificate`);
    return undefined;
  }
}

/** The pair named by one config layer, or undefined unless both files are named. */
function pair(lookup: (name: string) => string[] | undefined, dir_of: (name: string) => string): [string, string] | undefined {
  const cert = lookup('tls_cert')?.[0]?.trim();
  const key = lookup('tls_key')?.[0]?.trim();
  if (!cert || !key) return undefined;
  const abs = (v: string, name: string) => (path.isAbsolute(v) ? v : path.join(dir_of(name), v));
  return [abs(cert, 'tls_cert'), abs(key, 'tls_key')];
}

/**
 * The certificate for `qp`'s connection before any SNI: the listener's own (listener_parameters
 * hook or `via/<local ip>/` files), else the default.
 */
export function context_for(qp: Qpsmtpd, base: TlsBase): tls.SecureContext {
  const ip = qp.connection.local_ip();
  const config = qp.runtime.config;
  // a via file's relative path is relative to the config directory holding it
  const from_via = (name: string) => !qp.listener_params?.[name] && !!ip && config.get_overlay(`via/${ip}`, name) !== undefined;
  const files = pair(
    (name) => qp.listener_config(name),
    (name) => config.config_dir(from_via(name) ? `via/${ip}/${name}` : name),
  );
  return (files && context_with(qp, base, ...files)) || base.context;
}

/** Server names usable as a directory name: a DNS name, at most 253 characters. */
const SERVERNAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?)*$/;

/** The certificate for an SNI name, from `sni/<name>/` (then `sni/*.<parent>/`); undefined if none. */
export function sni_context(qp: Qpsmtpd, base: TlsBase, servername: string): tls.SecureContext | undefined {
  const name = servername.toLowerCase().replace(/\.$/, '');
  if (!SERVERNAME.test(name)) return undefined;
  const candidates = [name];
  const dot = name.indexOf('.');
  if (dot > 0 && name.indexOf('.', dot + 1) > 0) candidates.push(`*${name.slice(dot)}`);
  const config = qp.runtime.config;
  for (const n of candidates) {
    const files = pair(
      (f) => config.get_overlay(`sni/${n}`, f),
      (f) => config.config_dir(`sni/${n}/${f}`),
    );
    if (files) return context_with(qp, base, ...files);
  }
  return undefined;
}

/** A node `SNICallback` choosing by name for `qp`'s connection (no match: the context given first). */
export function sni_callback(qp: Qpsmtpd, base: TlsBase): (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void) => void {
  return (servername, cb) => {
    let ctx: tls.SecureContext | undefined;
    try {
      ctx = sni_context(qp, base, servername);
    } catch (err) {
      qp.log(LOGERROR, `SNI ${servername}: ${err instanceof Error ? err.message : String(err)}`);
    }
    cb(null, ctx);
  };
}
