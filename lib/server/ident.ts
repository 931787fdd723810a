// RFC 1413 ident lookup of a client, under a short deadline; off unless the `ident` config is true.
import net from 'node:net';

export interface IdentQuery {
  remote_ip: string;
  remote_port: number;
  local_ip: string;
  local_port: number;
  /** Port of the client's identd (config `ident_port`, default 113). */
  port?: number;
  timeout_ms?: number;
}

/** The user id the client's identd reports, or undefined (no answer, error, or timeout). */
export function ident_lookup(q: IdentQuery): Promise<string | undefined> {
  return new Promise((resolve) => {
    let buf = '';
    let done = false;
    const finish = (v?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(v);
    };
    const socket = net.connect({ host: q.remote_ip, port: q.port ?? 113, localAddress: q.local_ip });
    const timer = setTimeout(() => finish(), q.timeout_ms ?? 2000);
    socket.on('error', () => finish());
    socket.on('connect', () => socket.write(`${q.remote_port} , ${q.local_port}\r\n`));
    socket.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      const nl = buf.indexOf('\n');
      if (nl >= 0) finish(parse_ident(buf.slice(0, nl)));
      else if (buf.length > 512) finish(); // RFC 1413: the reply is at most 512 octets
    });
    socket.on('end', () => finish(parse_ident(buf)));
  });
}

/** `<ports> : USERID : <os>[,charset] : <user id>` -> a user id of word characters and `.+=-` (at most 64). */
export function parse_ident(line: string): string | undefined {
  const m = /^[^:]*:\s*USERID\s*:[^:]*:(.*)$/.exec(line.replace(/\r$/, ''));
  if (!m) return undefined;
  // only characters that cannot break a header comment or a reply survive
  const user = m[1]!.trim().replace(/[^\w.+=-]/g, '').slice(0, 64);
  return user || undefined;
}
