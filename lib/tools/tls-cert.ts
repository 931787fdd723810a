// qpsmtpd-ts-tls-cert: qpsmtpd's plugins/tls_cert script. Makes a self-signed CA and a server
// certificate signed by it, for the tls plugin, "the quick way" (no questions asked), with the
// openssl command line tool:
//
//   ssl/qpsmtpd-ca.key        CA private key (RSA 2048, mode 0600)
//   ssl/qpsmtpd-ca.crt        CA certificate (6 years)
//   ssl/.cert.serial          the CA's serial number file
//   ssl/qpsmtpd-server.key    server private key (RSA 2048, mode 0600)
//   ssl/qpsmtpd-server.csr    the signing request
//   ssl/qpsmtpd-server.crt    server certificate (2 years), signed by the CA
//   ssl/qpsmtpd-dhparam.pem   Diffie-Hellman parameters (RFC 7919 ffdhe2048)
//
// in `ssl/` below the current directory (created if needed; existing files are replaced).
//
// Options (Getopt::Long style: `--CN=mx.example.com`, `--CN mx.example.com`, `-CN …`, names
// case-insensitive), with qpsmtpd's defaults:
//   --C, --Country                      XY
//   --ST, --State                       unknown
//   --L, --Locality, --City             unknown
//   --O, --Organization                 QSMTPD
//   --OU, --OrganizationalUnit, --U     Server
//   --CN, --CommonName, --N             this host's name
//   --emailAddress, --email, --E        postmaster@<CN>
//   --help, --H
//
// Differences from qpsmtpd's script: --emailAddress is honoured (qpsmtpd always overwrote it
// with postmaster@CN); the server key is 2048 bits, not 1024 (OpenSSL 3 and Node refuse 1024-bit
// keys at their default security level); the server certificate names the CN in
// subjectAltName (DNS or IP), which TLS clients check nowadays, and says serverAuth; the DH
// parameters are the RFC 7919 group instead of a freshly generated 2048-bit prime (which took
// up to minutes); --help exits 0 and an unknown option is an error.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import path from 'node:path';

export interface TlsCertOptions {
  /** The directory in which `ssl/` is made (default: the current directory). */
  cwd?: string;
  /** The openssl program (default `openssl` from PATH). */
  openssl?: string;
  out?: (text: string) => void;
  err?: (text: string) => void;
}

export interface Subject {
  C: string;
  ST: string;
  L: string;
  O: string;
  OU: string;
  CN: string;
  emailAddress: string;
}

const OPTIONS: Record<string, keyof Subject | 'help'> = {
  c: 'C',
  country: 'C',
  st: 'ST',
  state: 'ST',
  l: 'L',
  locality: 'L',
  city: 'L',
  o: 'O',
  organization: 'O',
  ou: 'OU',
  organizationalunit: 'OU',
  u: 'OU',
  cn: 'CN',
  commonname: 'CN',
  n: 'CN',
  emailaddress: 'emailAddress',
  email: 'emailAddress',
  e: 'emailAddress',
  help: 'help',
  h: 'help',
};

/** RFC 7919's ffdhe2048 group, should the openssl at hand not know it by name. */
export const FFDHE2048 = `-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
`;

export class UsageError extends Error {}

/** Parses the options; `help` is true when usage was asked for. */
export function parse_options(argv: readonly string[], host = hostname()): { subject: Subject; help: boolean } {
  const given: Partial<Subject> = {};
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const m = /^--?([A-Za-z]+)(?:=(.*))?$/s.exec(arg);
    if (!m) throw new UsageError(`Unexpected argument: ${arg}`);
    const key = OPTIONS[m[1]!.toLowerCase()];
    if (!key) throw new UsageError(`Unknown option: ${m[1]}`);
    if (key === 'help') {
      help = true;
      continue;
    }
    let value = m[2];
    // `:s`: the value is optional; a following option is not taken as one
    if (value === undefined && i + 1 < argv.length && !/^-/.test(argv[i + 1]!)) value = argv[++i];
    given[key] = value ?? '';
  }
  const subject: Subject = {
    C: given.C || 'XY',
    ST: given.ST || 'unknown',
    L: given.L || 'unknown',
    O: given.O || 'QSMTPD',
    OU: given.OU || 'Server',
    CN: given.CN || host,
    emailAddress: '',
  };
  subject.emailAddress = given.emailAddress || `postmaster@${subject.CN}`;
  return { subject, help };
}

/** `-subj` text: `/C=XY/ST=…`, with `\`, `/` and `+` escaped. */
export function subject_arg(s: Subject, ou: string): string {
  const esc = (v: string) => v.replace(/[\\/+]/g, (c) => '\\' + c);
  const parts: Array<[string, string]> = [
    ['C', s.C],
    ['ST', s.ST],
    ['L', s.L],
    ['O', s.O],
    ['OU', ou],
    ['CN', s.CN],
    ['emailAddress', s.emailAddress],
  ];
  return parts.map(([k, v]) => `/${k}=${esc(v)}`).join('');
}

/** The server certificate's extensions (an openssl extfile, section x509v3). */
export function server_extensions(s: Subject): string {
  const san: string[] = [];
  if (isIP(s.CN)) san.push(`IP:${s.CN}`);
  else if (/^[A-Za-z0-9*_]([A-Za-z0-9_.-]*[A-Za-z0-9])?$/.test(s.CN)) san.push(`DNS:${s.CN}`);
  san.push('email:copy');
  return [
    'extensions = x509v3',
    '[ x509v3 ]',
    'basicConstraints = CA:FALSE',
    'keyUsage = digitalSignature, keyEncipherment',
    'extendedKeyUsage = serverAuth',
    `subjectAltName = ${san.join(', ')}`,
    'subjectKeyIdentifier = hash',
    'authorityKeyIdentifier = keyid,issuer',
    'nsComment = "tls certificate"',
    'nsCertType = server',
    '',
  ].join('\n');
}

const REQ_CONFIG = [
  '[ req ]',
  'distinguished_name = req_distinguished_name',
  'prompt = no',
  'x509_extensions = v3_ca',
  '[ req_distinguished_name ]',
  '[ v3_ca ]',
  'basicConstraints = critical, CA:TRUE',
  'keyUsage = critical, keyCertSign, cRLSign',
  'subjectKeyIdentifier = hash',
  'authorityKeyIdentifier = keyid:always, issuer',
  '',
].join('\n');

export function usage(host = hostname()): string {
  return `
 qpsmtpd-ts-tls-cert will generate a TLS certificate "the quick way",
 i.e. without interaction.  You can change some defaults however.

 These options are recognized:             Default:

  --C       Country (two letters, e.g. DE) XY
  --ST      State (spelled out)            unknown
  --L       City                           unknown
  --O       Organization                   QSMTPD
  --OU      Organizational Unit            Server
  --CN      Common name                    ${host}
  --email   Email address of postmaster    postmaster@CN
  --help    Show usage

 The files are written to ssl/ below the current directory.
`;
}

function run(openssl: string, args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(openssl, args, { cwd, maxBuffer: 1 << 20 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const why = String(stderr || '').trim() || err.message;
      reject(new Error(`${openssl} ${args[0]}: ${why}`));
    });
  });
}

/** Makes the CA and server certificate; resolves to the exit status (0 = done). */
export async function main(argv: readonly string[], opts: TlsCertOptions = {}): Promise<number> {
  const out = opts.out ?? ((t: string) => void process.stdout.write(t));
  const err = opts.err ?? ((t: string) => void process.stderr.write(t));
  const cwd = opts.cwd ?? process.cwd();
  const openssl = opts.openssl ?? 'openssl';
  const host = hostname();
  let parsed: ReturnType<typeof parse_options>;
  try {
    parsed = parse_options(argv, host);
  } catch (e) {
    err(`${(e as Error).message}\n${usage(host)}`);
    return 2;
  }
  if (parsed.help) {
    err(usage(host));
    return 0;
  }
  const s = parsed.subject;
  out(`Using hostname: ${host}\n`);

  const ssl = path.join(cwd, 'ssl');
  mkdirSync(ssl, { recursive: true });
  const f = {
    ca_key: 'ssl/qpsmtpd-ca.key',
    ca_crt: 'ssl/qpsmtpd-ca.crt',
    serial: 'ssl/.cert.serial',
    key: 'ssl/qpsmtpd-server.key',
    csr: 'ssl/qpsmtpd-server.csr',
    crt: 'ssl/qpsmtpd-server.crt',
    dh: 'ssl/qpsmtpd-dhparam.pem',
  };
  const temp = (what: string) => `ssl/.${what}.${randomBytes(6).toString('hex')}.cnf`;
  const req_cfg = temp('req');
  const ext_cfg = temp('sign');
  const step = async (what: string, args: string[]) => {
    try {
      await run(openssl, args, cwd);
    } catch (e) {
      throw new Error(`${what}: ${(e as Error).message}`);
    }
  };
  try {
    writeFileSync(path.join(cwd, req_cfg), REQ_CONFIG, { mode: 0o600 });
    writeFileSync(path.join(cwd, ext_cfg), server_extensions(s), { mode: 0o600 });

    await step('Cannot create CA key', ['genrsa', '-out', f.ca_key, '2048']);
    chmodSync(path.join(cwd, f.ca_key), 0o600);
    await step('Cannot create CA cert', [
      'req', '-config', req_cfg, '-new', '-x509', '-utf8', '-sha256', '-days', String(365 * 6),
      '-key', f.ca_key, '-subj', subject_arg(s, 'CA'), '-out', f.ca_crt,
    ]);

    await step('Cannot create server key', ['genrsa', '-out', f.key, '2048']);
    chmodSync(path.join(cwd, f.key), 0o600);
    await step('Cannot create server cert', [
      'req', '-config', req_cfg, '-new', '-utf8', '-sha256', '-key', f.key, '-subj', subject_arg(s, s.OU), '-out', f.csr,
    ]);

    writeFileSync(path.join(cwd, f.serial), '01\n');
    await step('Cannot sign cert', [
      'x509', '-req', '-sha256', '-in', f.csr, '-extfile', ext_cfg, '-extensions', 'x509v3', '-days', String(365 * 2),
      '-CA', f.ca_crt, '-CAkey', f.ca_key, '-CAserial', f.serial, '-out', f.crt,
    ]);

    try {
      await run(openssl, ['genpkey', '-genparam', '-algorithm', 'DH', '-pkeyopt', 'group:ffdhe2048', '-out', f.dh], cwd);
    } catch {
      writeFileSync(path.join(cwd, f.dh), FFDHE2048);
    }
  } catch (e) {
    err(`${(e as Error).message}\n`);
    return 1;
  } finally {
    rmSync(path.join(cwd, req_cfg), { force: true });
    rmSync(path.join(cwd, ext_cfg), { force: true });
  }
  out(
    [
      `CA:          ${f.ca_crt} (key ${f.ca_key})`,
      `server:      ${f.crt} (key ${f.key}), CN=${s.CN}`,
      `DH params:   ${f.dh}`,
      '',
    ].join('\n'),
  );
  return 0;
}
