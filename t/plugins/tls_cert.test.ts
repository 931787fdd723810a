// The tls_cert tool (bin/qpsmtpd-ts-tls-cert, lib/tools/tls-cert.ts): options as qpsmtpd's
// script, the files it writes with the real openssl, and that Node's tls accepts the result:
// a TLS server with the key, certificate and DH parameters, a client trusting only the CA.
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import ts from 'typescript';
import { afterEach, describe, expect, it } from 'vitest';
import { FFDHE2048, main, parse_options, server_extensions, subject_arg } from '../../lib/tools/tls-cert.js';
import { REPO } from '../lib/harness.js';
import { temp_dirs } from '../fixtures/plugins-c/helpers.js';

const tmp = temp_dirs();
afterEach(() => tmp.cleanup());

async function generate(argv: string[]) {
  const dir = tmp.make('qpts-tlscert-');
  let out = '';
  let err = '';
  const code = await main(argv, { cwd: dir, out: (t) => (out += t), err: (t) => (err += t) });
  return { dir, code, out, err, ssl: path.join(dir, 'ssl') };
}

/** A TLS handshake on 127.0.0.1 with the generated files; the client trusts only the CA. */
async function handshake(ssl: string, servername: string): Promise<{ authorized: boolean; error?: string; protocol: string | null }> {
  const server = tls.createServer({
    key: readFileSync(path.join(ssl, 'qpsmtpd-server.key')),
    cert: readFileSync(path.join(ssl, 'qpsmtpd-server.crt')),
    dhparam: readFileSync(path.join(ssl, 'qpsmtpd-dhparam.pem')),
  });
  server.on('secureConnection', (s) => s.end('220 hello\r\n'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  try {
    return await new Promise((resolve) => {
      const c = tls.connect({ host: '127.0.0.1', port, servername, ca: readFileSync(path.join(ssl, 'qpsmtpd-ca.crt')) }, () => {
        resolve({ authorized: c.authorized, protocol: c.getProtocol() });
        c.destroy();
      });
      c.on('error', (e) => resolve({ authorized: false, error: e.message, protocol: null }));
    });
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
}

describe('tls_cert: options (qpsmtpd Getopt::Long spellings)', () => {
  it('defaults: XY / unknown / unknown / QSMTPD / Server / hostname / postmaster@CN', () => {
    expect(parse_options([], 'h.example').subject).toEqual({
      C: 'XY',
      ST: 'unknown',
      L: 'unknown',
      O: 'QSMTPD',
      OU: 'Server',
      CN: 'h.example',
      emailAddress: 'postmaster@h.example',
    });
  });

  it('long names, aliases, =value, single dash, any case; an empty value means the default', () => {
    const { subject } = parse_options(
      ['--Country=DE', '-state', 'Berlin', '--City', 'Berlin', '--organization=Ex Org', '--U', 'Mail', '--commonname', 'mx.example.test', '--email=hostmaster@example.test'],
      'h',
    );
    expect(subject).toEqual({ C: 'DE', ST: 'Berlin', L: 'Berlin', O: 'Ex Org', OU: 'Mail', CN: 'mx.example.test', emailAddress: 'hostmaster@example.test' });
    expect(parse_options(['--C', '--CN', 'x.test'], 'h').subject).toMatchObject({ C: 'XY', CN: 'x.test', emailAddress: 'postmaster@x.test' });
    expect(parse_options(['-H'], 'h').help).toBe(true);
  });

  it('unknown options and stray words are errors', () => {
    expect(() => parse_options(['--days', '5'])).toThrow(/Unknown option: days/);
    expect(() => parse_options(['mx.example.test'])).toThrow(/Unexpected argument/);
  });

  it('-subj escaping and the server extensions', () => {
    const s = parse_options(['--O', 'A/B+C\\D', '--CN', 'mx.example.test'], 'h').subject;
    expect(subject_arg(s, 'CA')).toBe('/C=XY/ST=unknown/L=unknown/O=A\\/B\\+C\\\\D/OU=CA/CN=mx.example.test/emailAddress=postmaster@mx.example.test');
    expect(server_extensions(s)).toContain('subjectAltName = DNS:mx.example.test, email:copy');
    expect(server_extensions({ ...s, CN: '192.0.2.7' })).toContain('subjectAltName = IP:192.0.2.7, email:copy');
    expect(server_extensions({ ...s, CN: 'My Server' })).toContain('subjectAltName = email:copy');
  });
});

describe('tls_cert: generating with openssl', () => {
  it('writes the CA, the server key/csr/cert, the serial and DH parameters into ssl/; keys are 0600', async () => {
    const { code, out, ssl } = await generate(['--C', 'DE', '--ST', 'Hessen', '--L', 'Frankfurt', '--O', 'Example/Org+1', '--OU', 'Mail', '--CN', 'mx.example.test', '--emailAddress', 'tls@example.test']);
    expect(code).toBe(0);
    expect(out).toContain(`Using hostname: ${hostname()}`);
    expect(readdirSync(ssl).sort()).toEqual(
      ['.cert.serial', 'qpsmtpd-ca.crt', 'qpsmtpd-ca.key', 'qpsmtpd-dhparam.pem', 'qpsmtpd-server.crt', 'qpsmtpd-server.csr', 'qpsmtpd-server.key'].sort(),
    );
    for (const k of ['qpsmtpd-ca.key', 'qpsmtpd-server.key']) expect(statSync(path.join(ssl, k)).mode & 0o777).toBe(0o600);
    const ca = new X509Certificate(readFileSync(path.join(ssl, 'qpsmtpd-ca.crt')));
    const crt = new X509Certificate(readFileSync(path.join(ssl, 'qpsmtpd-server.crt')));
    expect(ca.ca).toBe(true);
    expect(crt.ca).toBe(false);
    expect(crt.checkIssued(ca)).toBe(true);
    expect(crt.verify(ca.publicKey)).toBe(true);
    // (Node shows a `+` inside a value escaped: one O value, not a multi-valued RDN)
    expect(crt.subject.split('\n')).toEqual(['C=DE', 'ST=Hessen', 'L=Frankfurt', 'O=Example/Org\\+1', 'OU=Mail', 'CN=mx.example.test', 'emailAddress=tls@example.test']);
    expect(ca.subject).toContain('OU=CA');
    expect(crt.subjectAltName).toBe('DNS:mx.example.test, email:tls@example.test');
    expect(crt.checkHost('mx.example.test')).toBe('mx.example.test');
    expect(crt.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
    const days = (Date.parse(crt.validTo) - Date.parse(crt.validFrom)) / 86400_000;
    expect(Math.round(days)).toBe(730);
    expect(Math.round((Date.parse(ca.validTo) - Date.parse(ca.validFrom)) / 86400_000)).toBe(2190);
    expect(readFileSync(path.join(ssl, 'qpsmtpd-dhparam.pem'), 'latin1')).toBe(FFDHE2048);
    // no temporary config files are left behind
    expect(readdirSync(ssl).filter((f) => f.endsWith('.cnf'))).toEqual([]);
    // openssl agrees
    const v = spawnSync('openssl', ['verify', '-CAfile', path.join(ssl, 'qpsmtpd-ca.crt'), path.join(ssl, 'qpsmtpd-server.crt')], { encoding: 'utf8' });
    expect(v.stdout.trim()).toMatch(/: OK$/);
  });

  it("Node's tls accepts the result: handshake with the CA as the only trust anchor, host name checked", async () => {
    const { code, ssl } = await generate(['--CN', 'mx.example.test']);
    expect(code).toBe(0);
    const ok = await handshake(ssl, 'mx.example.test');
    expect(ok).toMatchObject({ authorized: true });
    expect(ok.protocol).toMatch(/^TLSv1\.[23]$/);
    const wrong = await handshake(ssl, 'other.example.test');
    expect(wrong.authorized).toBe(false);
    expect(wrong.error).toMatch(/Hostname\/IP does not match certificate's altnames/);
    // the tls plugin's own context builder takes the files too (DH parameters included)
    expect(() =>
      tls.createSecureContext({
        key: readFileSync(path.join(ssl, 'qpsmtpd-server.key')),
        cert: readFileSync(path.join(ssl, 'qpsmtpd-server.crt')),
        ca: readFileSync(path.join(ssl, 'qpsmtpd-ca.crt')),
        dhparam: readFileSync(path.join(ssl, 'qpsmtpd-dhparam.pem')),
        ciphers: 'HIGH',
      }),
    ).not.toThrow();
  });

  it('defaults: CN is the host name, email postmaster@CN', async () => {
    const { code, ssl } = await generate([]);
    expect(code).toBe(0);
    const crt = new X509Certificate(readFileSync(path.join(ssl, 'qpsmtpd-server.crt')));
    expect(crt.subject.split('\n')).toEqual(['C=XY', 'ST=unknown', 'L=unknown', 'O=QSMTPD', 'OU=Server', `CN=${hostname()}`, `emailAddress=postmaster@${hostname()}`]);
  });

  it('--help prints the usage; a bad option exits 2; a missing openssl exits 1 with the reason', async () => {
    const help = await generate(['--help']);
    expect(help.code).toBe(0);
    expect(help.err).toContain('--CN      Common name');
    expect(existsSync(help.ssl)).toBe(false);
    const bad = await generate(['--bits', '4096']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/^Unknown option: bits/);
    const dir = tmp.make();
    let err = '';
    const code = await main([], { cwd: dir, openssl: '/nonexistent/openssl', out: () => undefined, err: (t) => (err += t) });
    expect(code).toBe(1);
    expect(err).toMatch(/^Cannot create CA key: .*ENOENT/);
  });
});

describe('tls_cert: bin/qpsmtpd-ts-tls-cert', () => {
  it('runs dist/lib/tools/tls-cert.js in the current directory', () => {
    // the script as shipped, next to this tool compiled the way `npm run build` does it
    const root = tmp.make('qpts-tlscert-bin-');
    mkdirSync(path.join(root, 'bin'));
    mkdirSync(path.join(root, 'dist', 'lib', 'tools'), { recursive: true });
    copyFileSync(path.join(REPO, 'bin', 'qpsmtpd-ts-tls-cert'), path.join(root, 'bin', 'qpsmtpd-ts-tls-cert'));
    const src = readFileSync(path.join(REPO, 'lib', 'tools', 'tls-cert.ts'), 'utf8');
    const js = ts.transpileModule(src, { compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 } }).outputText;
    writeFileSync(path.join(root, 'dist', 'lib', 'tools', 'tls-cert.js'), js);
    writeFileSync(path.join(root, 'package.json'), '{"type":"module"}');
    const work = tmp.make('qpts-tlscert-cwd-');
    const out = execFileSync(process.execPath, [path.join(root, 'bin', 'qpsmtpd-ts-tls-cert'), '--CN=bin.example.test'], { cwd: work, encoding: 'utf8' });
    expect(out).toContain('Using hostname:');
    const crt = new X509Certificate(readFileSync(path.join(work, 'ssl', 'qpsmtpd-server.crt')));
    expect(crt.subject).toContain('CN=bin.example.test');
    const r = spawnSync(process.execPath, [path.join(root, 'bin', 'qpsmtpd-ts-tls-cert'), '--nope'], { cwd: work, encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('Unknown option: nope');
  });

  it('without a build it says so', () => {
    const root = tmp.make('qpts-tlscert-nobuild-');
    mkdirSync(path.join(root, 'bin'));
    copyFileSync(path.join(REPO, 'bin', 'qpsmtpd-ts-tls-cert'), path.join(root, 'bin', 'qpsmtpd-ts-tls-cert'));
    const r = spawnSync(process.execPath, [path.join(root, 'bin', 'qpsmtpd-ts-tls-cert')], { cwd: root, encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('qpsmtpd-ts is not built');
  });
});
