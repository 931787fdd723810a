// Qpsmtpd::Command: argument parsing for MAIL/RCPT/AUTH/HELO (qpsmtpd 3.5).
import { DENY, LOGERROR, OK } from '../constants.js';
import type { ParserFn } from '../hooks.js';

export type ParseResult = [rc: number, ...values: string[]];

const PARAM = /^[A-Za-z0-9][A-Za-z0-9-]*(=[^= \x00-\x1f]+)?$/;

/** Splits trailing `KEY[=VALUE]` parameters off an address argument (`_get_mail_params`). */
export function get_mail_params(cmd: string, line: string): ParseResult {
  let rest = line.replace(/\s+$/, '');
  const params: string[] = [];
  // peel whitespace-separated tokens off the end while they look like parameters
  for (;;) {
    const m = /\s+(\S+)$/.exec(rest);
    if (!m || !PARAM.test(m[1]!)) break;
    params.unshift(m[1]!);
    rest = rest.slice(0, m.index);
  }
  if (rest) {
    if (/@.*\s/.test(rest)) return [DENY, 'Syntax error in parameters'];
    return [OK, rest, ...params];
  }
  const addr = params.shift() ?? '';
  if (cmd === 'mail') {
    if (!addr) return [OK, '<>'];
    if (/@.*\s/.test(addr)) return [DENY, 'Syntax error in parameters'];
    return [OK, addr, ...params];
  }
  if (addr.includes('@')) {
    if (/@.*\s/.test(addr)) return [DENY, 'Syntax error in parameters'];
    return [OK, addr, ...params];
  }
  if (/\s/.test(addr)) return [DENY, 'Syntax error in parameters'];
  if (!/^(postmaster|abuse)$/i.test(addr)) return [DENY, 'Syntax error in address'];
  return [OK, addr, ...params];
}

/**
 * `parse(cmd, line, parser?)`: a plugin-supplied parser wins; MAIL needs `FROM:`, RCPT `TO:`;
 * anything else splits on spaces. `line` undefined (bare command) gives just OK.
 */
export function parse_command(
  cmd: string,
  line: string | undefined,
  parser: ParserFn | undefined,
  log: (level: number, msg: string) => void,
): ParseResult {
  if (line === undefined) return [OK];
  const lc = cmd.toLowerCase();
  if (parser) {
    try {
      return parser({ cmd: lc }, lc, line) as ParseResult;
    } catch (err) {
      log(LOGERROR, `Failed to parse command [${lc}]: ${err instanceof Error ? err.message : String(err)}`);
      return [DENY, line];
    }
  }
  if (lc === 'mail' || lc === 'rcpt') {
    const m = (lc === 'mail' ? /^from:\s*/i : /^to:\s*/i).exec(line);
    if (!m) return [DENY, 'Syntax error in command'];
    return get_mail_params(lc, line.slice(m[0].length));
  }
  const words = line.split(/ +/);
  while (words.length && words[words.length - 1] === '') words.pop(); // as Perl's split
  return [OK, ...words];
}

/** `KEY=VALUE` parameters as an object with lower-cased keys (bare keywords map to undefined). */
export function params_object(params: readonly string[]): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const p of params) {
    const i = p.indexOf('=');
    if (i < 0) out[p.toLowerCase()] = undefined;
    else out[p.slice(0, i).toLowerCase()] = p.slice(i + 1);
  }
  return out;
}
