// tls: STARTTLS (RFC 3207), qpsmtpd's plugins/tls.
//
//   tls [cert [key [ca [dhparam]]]]
//
// Defaults: ssl/qpsmtpd-server.crt, ssl/qpsmtpd-server.key, ssl/qpsmtpd-ca.crt and
// ssl/qpsmtpd-dhparam.pem, relative to the working directory (config/ssl/… when there is no
// ssl/ directory). Configs: tls_cert, tls_key (paths; they replace the defaults, arguments
// replace them), tls_ciphers (OpenSSL cipher string, default HIGH), tls_protocols (OpenSSL
// words such as SSLv23:!SSLv2:!SSLv3; default TLSv1.2 and up), tls_handshake_timeout
// (seconds, default 30). See docs/plugins/tls.md.
//
// EHLO offers STARTTLS while TLS is not active; STARTTLS switches the session to TLS
// (lib/smtp/starttls.ts). If the handshake fails the session is closed. The plugin also
// joins helo/mail/rcpt/data and every auth hook registered before it, refusing them once
// the transaction note `ssl_failed` is set (RFC 2487 5.1), as qpsmtpd does.
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import {
  DECLINED,
  DENY,
  DONE,
  LOGDEBUG,
  LOGINFO,
  LOGWARN,
  Plugin,
  PluginArgumentError,
  type Qpsmtpd,
  type Transaction,
} from '../lib/index.js';
import { is_readable } from '../lib/base.js';
import type { SmtpSession } from '../lib/smtp/session.js';
import { starttls } from '../lib/smtp/starttls.js';
import { context_for, sni_callback, type TlsBase } from '../lib/server/tls-context.js';

const SECURITY_MSG = 'Command refused due to lack of security';
const DEFAULT_HANDSHAKE_TIMEOUT = 30;

type TlsVersion = 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
const VERSIONS: readonly TlsVersion[] = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'];

/** Everything the plugin resolved from its arguments and config files. */
export interface TlsSettings {
  cert: string;
  key: string;
  ca?: string;
  dhparam?: string;
  ciphers: string;
  /** The `tls_protocols` line as configured ('' when the file is absent). */
  protocols: string;
  min_version: TlsVersion;
  max_version: TlsVersion;
  handshake_timeout_ms: number;
}

function non_empty_file(file: string): boolean {
  try {
    const st = statSync(file);
    return st.isFile() && st.size > 0;
  } catch {
    return false;
  }
}

/**
 * `tls_protocols` (IO::Socket::SSL's SSL_version syntax: `SSLv23:!SSLv2:!SSLv3`, `TLSv1_2`,
 * `!TLSv1_1`, …) as node's minVersion/maxVersion. Positive words pick versions (SSLv23, TLS or
 * ALL: every version; none given: every version), `!word` removes one. Node takes a range, so
 * when the result has a gap the range is the contiguous run ending at the highest version.
 */
export function protocol_range(spec: string | undefined, warn: (msg: string) => void = () => {}): [TlsVersion, TlsVersion] {
  const words = (spec ?? '')
    .split(/[\s:,]+/)
    .map((w) => w.trim())
    .filter(Boolean);
  if (!words.length) return ['TLSv1.2', 'TLSv1.3'];
  const version_of = (word: string): TlsVersion[] | 'ssl' | undefined => {
    const w = word.toLowerCase().replace(/[_.]/g, '');
    if (w === 'sslv23' || w === 'sslv2/3' || w === 'tls' || w === 'all') return [...VERSIONS];
    if (w === 'sslv2' || w === 'sslv3') return 'ssl'; // long gone from OpenSSL/node
    if (w === 'tlsv1' || w === 'tlsv10') return ['TLSv1'];
    if (w === 'tlsv11') return ['TLSv1.1'];
    if (w === 'tlsv12') return ['TLSv1.2'];
    if (w === 'tlsv13') return ['TLSv1.3'];
    return undefined;
  };
  const wanted = new Set<TlsVersion>();
  const removed = new Set<TlsVersion>();
  let positive = false;
  for (const word of words) {
    const neg = word.startsWith('!');
    const v = version_of(neg ? word.slice(1) : word);
    if (v === undefined) throw new Error(`tls_protocols: unknown protocol '${word}'`);
    if (v === 'ssl') {
      if (!neg) warn(`tls_protocols: ${word} is not supported and is ignored`);
      continue;
    }
    if (!neg) positive = true;
    for (const x of v) (neg ? removed : wanted).add(x);
  }
  if (!positive) for (const x of VERSIONS) wanted.add(x);
  const enabled = VERSIONS.filter((v) => wanted.has(v) && !removed.has(v));
  if (!enabled.length) throw new Error(`tls_protocols: '${spec}' leaves no TLS version enabled`);
  const max = enabled[enabled.length - 1]!;
  let lo = VERSIONS.indexOf(max);
  while (lo > 0 && enabled.includes(VERSIONS[lo - 1]!)) lo--;
  const min = VERSIONS[lo]!;
  if (VERSIONS.indexOf(enabled[0]!) < lo) warn(`tls_protocols: '${spec}' is not a contiguous range; using ${min} to ${max}`);
  return [min, max];
}

/** Resolves qpsmtpd's positional arguments and our config files into settings (no file read). */
export function tls_settings(qp: Qpsmtpd, args: readonly string[] = [], warn: (msg: string) => void = () => {}): TlsSettings {
  const dir = is_dir('ssl') ? 'ssl' : 'config/ssl';
  const from_config = (name: string): string | undefined => {
    const v = qp.config(name)?.trim();
    if (!v) return undefined;
    // our own config files: a relative path is relative to the directory holding that file
    return path.isAbsolute(v) ? v : path.join(qp.runtime.config.config_dir(name), v);
  };
  const [a_cert, a_key, a_ca, a_dh] = args.map((a) => a || undefined);
  const cert = a_cert ?? from_config('tls_cert') ?? `${dir}/qpsmtpd-server.crt`;
  const key = a_key ?? from_config('tls_key') ?? `${dir}/qpsmtpd-server.key`;
  // the CA and dhparam are optional unless named explicitly
  let ca: string | undefined = a_ca ?? `${dir}/qpsmtpd-ca.crt`;
  if (a_ca === undefined && !is_readable(ca)) ca = undefined;
  let dhparam: string | undefined = a_dh ?? `${dir}/qpsmtpd-dhparam.pem`;
  if (!non_empty_file(dhparam)) {
    if (a_dh !== undefined) warn(`dhparam file ${dhparam} does not exist or is empty; DHE ciphers are unavailable`);
    dhparam = undefined;
  }
  const protocols = qp.config('tls_protocols')?.trim() ?? '';
  const [min_version, max_version] = protocol_range(protocols, warn);
  const t = Number(qp.config('tls_handshake_timeout'));
  return {
    cert,
    key,
    ca,
    dhparam,
    ciphers: qp.config('tls_ciphers')?.trim() || 'HIGH',
    protocols,
    min_version,
    max_version,
    handshake_timeout_ms: (t > 0 ? t : DEFAULT_HANDSHAKE_TIMEOUT) * 1000,
  };
}

function is_dir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function read_pem(what: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err));
    throw new PluginArgumentError(`tls: cannot read ${what} ${file} (${why}); run plugins/tls_cert or name the files as arguments`);
  }
}

/** Everything of `settings` but the certificate and key (shared by per-listener and SNI certificates). */
export function base_options(s: TlsSettings): tls.SecureContextOptions {
  const options: tls.SecureContextOptions = {
    ciphers: s.ciphers,
    honorCipherOrder: true,
    minVersion: s.min_version,
    maxVersion: s.max_version,
  };
  if (s.ca) options.ca = read_pem('CA certificate', s.ca);
  if (s.dhparam) options.dhparam = read_pem('dhparam file', s.dhparam);
  return options;
}

/** The SecureContext for `settings`; a missing file or a bad cert/key pair throws, naming them. */
export function secure_context(s: TlsSettings): tls.SecureContext {
  const options: tls.SecureContextOptions = {
    cert: read_pem('certificate', s.cert),
    key: read_pem('private key', s.key),
    ...base_options(s),
  };
  try {
    return tls.createSecureContext(options);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new PluginArgumentError(`tls: cannot use certificate ${s.cert} with key ${s.key} (ciphers '${s.ciphers}', ${s.min_version}-${s.max_version}): ${why}`);
  }
}

/**
 * The SecureContext the tls plugin would build from `qp`'s config (and optional plugin
 * arguments): what the daemon hands to `listen(..., { tls_context })` for SMTPS (port 465).
 */
export function tls_context_from_config(qp: Qpsmtpd, args: readonly string[] = []): tls.SecureContext {
  return secure_context(tls_settings(qp, args));
}

/** The session behind `qp` when it is an SMTP session (not the loading server). */
function session_of(qp: Qpsmtpd): SmtpSession | undefined {
  const s = qp as Partial<SmtpSession>;
  return typeof s.detach === 'function' && typeof s.reattach === 'function' && typeof s.tls_active === 'function'
    ? (qp as SmtpSession)
    : undefined;
}

export default class TlsPlugin extends Plugin {
  settings?: TlsSettings;
  ssl_context?: tls.SecureContext;
  /** The default certificate and the settings per-listener and SNI certificates share. */
  base?: TlsBase;
  /** Per session (each session has its own view): STARTTLS was offered by the EHLO in effect. */
  offered = false;

  override register(...args: string[]): void {
    const s = tls_settings(this.qp, args, (msg) => this.log(LOGWARN, msg));
    this.ssl_context = secure_context(s);
    this.settings = s;
    this.base = { context: this.ssl_context, options: base_options(s), cert: s.cert, key: s.key };
    if (!s.dhparam) this.log(LOGDEBUG, 'no dhparam file: DHE ciphers are unavailable (ECDHE still works)');
    this.log(LOGDEBUG, `cert ${s.cert}, key ${s.key}${s.ca ? `, ca ${s.ca}` : ''}, ciphers ${s.ciphers}, ${s.min_version}-${s.max_version}`);
    // the hook must outlive the handshake it waits for
    const need = s.handshake_timeout_ms / 1000 + 5;
    if (this.qp.runtime.hook_timeout_ms() / 1000 < need) this.hook_timeout = need;
    // qpsmtpd: join every auth hook an earlier plugin registered, with the ssl_failed check
    for (const hook of this.qp.hooks.names()) {
      if (/^auth(-.+)?$/.test(hook)) this.register_hook(hook, 'bad_ssl_hook');
    }
  }

  /** The server's SecureContext (for implicit TLS on an SMTPS listener). */
  secure_context(): tls.SecureContext {
    if (!this.ssl_context) throw new Error('tls: plugin not registered');
    return this.ssl_context;
  }

  /** The default certificate and shared settings (implicit-TLS listeners choose per connection). */
  tls_base(): TlsBase | undefined {
    return this.base;
  }

  handshake_timeout_ms(): number {
    return this.settings?.handshake_timeout_ms ?? DEFAULT_HANDSHAKE_TIMEOUT * 1000;
  }

  private tls_active(): boolean {
    return !!this.connection.notes('tls_enabled') || !!session_of(this.qp)?.tls_active();
  }

  /** SMTPS: the listener did the handshake; record it in the notes as STARTTLS would. */
  hook_connect(): number {
    const session = session_of(this.qp);
    if (!session?.tls_active() || this.connection.notes('tls_enabled')) return DECLINED;
    const c = this.connection;
    c.notes('tls_enabled', 1);
    c.notes('tls_socket', session.stream);
    c.notes('tls_protocol', session.tls_protocol());
    c.notes('tls_cipher', session.tls_cipher());
    this.log(LOGINFO, 'pass, connect via SMTPS');
    return DECLINED;
  }

  hook_ehlo(transaction: Transaction): number | [number, string] {
    this.offered = false;
    if (!this.ssl_context || this.tls_active()) return DECLINED;
    if (transaction.notes('ssl_failed')) return [DENY, SECURITY_MSG];
    const caps = transaction.notes('capabilities');
    const list: unknown[] = Array.isArray(caps) ? caps : [];
    if (!list.includes('STARTTLS')) list.push('STARTTLS');
    transaction.notes('capabilities', list);
    transaction.notes('tls_enabled', 1);
    this.offered = true;
    return DECLINED;
  }

  hook_helo(transaction: Transaction): number | [number, string] {
    this.offered = false; // HELO offers no extensions
    return this.bad_ssl_hook(transaction);
  }

  async hook_unrecognized_command(transaction: Transaction, cmd: string, rest?: string): Promise<number | [number, string]> {
    if (String(cmd).toLowerCase() !== 'starttls') return DECLINED;
    const session = session_of(this.qp);
    if (!session || !this.ssl_context) return DECLINED;
    if (this.tls_active()) {
      // RFC 3207 4.2: STARTTLS is not offered again; refuse it clearly (STL-03)
      session.respond(503, '5.5.1 TLS already active');
      return DONE;
    }
    // only when offered by the EHLO in effect (qpsmtpd: the transaction note, which RSET and
    // MAIL used to lose; the offer now lasts until the next HELO/EHLO)
    if (!transaction.notes('tls_enabled') && !(this.offered && this.connection.hello() === 'ehlo')) return DECLINED;
    if (rest !== undefined && String(rest).trim() !== '') return [DENY, 'Syntax error (no parameters allowed)'];
    // the listener's own certificate, if it has one; another by SNI name (docs/listeners.md)
    const ok = await starttls(session, {
      context: this.base ? context_for(session, this.base) : this.ssl_context,
      ...(this.base ? { SNICallback: sni_callback(session, this.base) } : {}),
      timeout_ms: this.handshake_timeout_ms(),
      ...(this.signal ? { signal: this.signal } : {}),
    });
    if (!ok) {
      // qpsmtpd kept talking in clear and refused everything; the socket is gone here
      transaction.notes('ssl_failed', 1);
      return DONE;
    }
    this.offered = false;
    this.log(LOGINFO, 'TLS setup returning');
    return DONE;
  }

  /** RFC 2487 5.1: after a failed negotiation every command is refused. */
  bad_ssl_hook(transaction: Transaction): number | [number, string] {
    if (transaction?.notes('ssl_failed')) return [DENY, SECURITY_MSG];
    return DECLINED;
  }

  hook_mail(transaction: Transaction): number | [number, string] {
    return this.bad_ssl_hook(transaction);
  }

  hook_rcpt(transaction: Transaction): number | [number, string] {
    return this.bad_ssl_hook(transaction);
  }

  hook_data(transaction: Transaction): number | [number, string] {
    return this.bad_ssl_hook(transaction);
  }
}
