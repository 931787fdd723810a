// qpsmtpd-ts in this process on a real TCP port (127.0.0.1, random port), with the plugin set
// of qpsmtpd.md Appendix A and a maildir queue in a temp dir. rDNS goes to a loopback DNS stub.
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Runtime } from '../../../lib/runtime.js';
import { listen_port, make_runtime } from '../../lib/harness.js';

/** The config files of the Appendix A runs (qpsmtpd.md A), minus the queue line. */
export const APPENDIX_CONFIG: Record<string, string | string[]> = {
  me: 'mx.example.test',
  rcpthosts: 'example.test',
  databytes: '100000',
  flat_auth_pw: 'good@example.test:good_pass',
};

/** The plugins of Appendix A in their order; `queue/maildir <dir>` comes last. */
export const APPENDIX_PLUGINS = ['count_unrecognized_commands 4', 'dont_require_anglebrackets', 'auth/auth_flat_file', 'rcpt_ok'];

export interface OurServer {
  port: number;
  runtime: Runtime;
  maildir: string;
  config_dir: string;
  close(): Promise<void>;
}

/**
 * Starts qpsmtpd-ts with the Appendix A plugins, `queue/maildir <tmp>`, and `files` on top of
 * the Appendix A config. `dns_port` is the loopback DNS stub every PTR lookup goes to.
 */
export async function start_ours(dns_port: number, files: Record<string, string | string[]> = {}): Promise<OurServer> {
  const base = mkdtempSync(path.join(os.tmpdir(), 'qpts-compat-ours-'));
  const maildir = path.join(base, 'maildir');
  mkdirSync(maildir);
  const { runtime, dir } = await make_runtime({
    ...APPENDIX_CONFIG,
    plugins: [...APPENDIX_PLUGINS, `queue/maildir ${maildir}`],
    dns_servers: `127.0.0.1:${dns_port}`,
    ...files,
  });
  const { server, port } = await listen_port(runtime, { host: '127.0.0.1' });
  return {
    port,
    runtime,
    maildir,
    config_dir: dir,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.unref();
        setTimeout(resolve, 500).unref(); // sessions still open end with their sockets
      });
      for (const d of [base, dir, spool_of(dir)]) if (d) rmSync(d, { recursive: true, force: true });
    },
  };
}

/** The spool dir make_runtime created for the config in `dir`. */
function spool_of(dir: string): string | undefined {
  try {
    const p = readFileSync(path.join(dir, 'spool_dir'), 'utf8').trim();
    return p.startsWith(os.tmpdir()) ? p : undefined;
  } catch {
    return undefined;
  }
}

/** Messages delivered into `<maildir>/new`, by file name. */
export function delivered(maildir: string): Map<string, string> {
  const dir = path.join(maildir, 'new');
  const out = new Map<string, string>();
  let names: string[] = [];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return out;
  }
  for (const n of names) out.set(n, readFileSync(path.join(dir, n), 'latin1'));
  return out;
}

/** Files in `<maildir>/new` that are not in `before`. */
export function new_messages(maildir: string, before: Map<string, string>): string[] {
  return [...delivered(maildir)].filter(([n]) => !before.has(n)).map(([, body]) => body);
}
