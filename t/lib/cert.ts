// A throw-away self-signed certificate made with the openssl command, for TLS tests.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export function make_cert(cn = 'localhost', dir = mkdtempSync(path.join(os.tmpdir(), 'qpts-cert-'))): { cert: string; key: string } {
  const cert = path.join(dir, `${cn}.crt`);
  const key = path.join(dir, `${cn}.key`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-days', '2', '-keyout', key, '-out', cert], {
    stdio: 'ignore',
  });
  return { cert, key };
}
