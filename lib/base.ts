// Qpsmtpd::Base helpers that plugins use: IP classification and `~` expansion.
import { accessSync, constants as fs_constants, readFileSync } from 'node:fs';
import os from 'node:os';
import ipaddr from 'ipaddr.js';

/** True for 127/8, IPv4-mapped loopback and ::1, as qpsmtpd's is_localhost. */
export function is_localhost(ip: string | undefined): boolean {
  if (!ip) return false;
  if (/^127\./.test(ip) || ip.includes(':127.')) return true;
  return ipaddr.isValid(ip) && ipaddr.parse(ip).kind() === 'ipv6' && ipaddr.parse(ip).toString() === '::1';
}

/**
 * A usable client address: a dotted-quad IPv4 other than 0.0.0.0 and 255.255.255.255, or
 * any IPv6 address. (qpsmtpd also refused every address containing "255"; that was a bug.)
 */
export function is_valid_ip(ip: string | undefined): boolean {
  if (!ip) return false;
  if (ipaddr.IPv4.isValidFourPartDecimal(ip)) return ip !== '0.0.0.0' && ip !== '255.255.255.255';
  return is_ipv6(ip);
}

export function is_ipv6(ip: string | undefined): boolean {
  return !!ip && ip.includes(':') && ipaddr.IPv6.isValid(ip);
}

/** `~` and `~user` at the start of a path, as qpsmtpd's tildeexp. */
export function tildeexp(path: string): string {
  const m = /^~([^/]*)/.exec(path);
  if (!m) return path;
  let home: string | undefined;
  if (m[1] === '') home = process.env.HOME || process.env.LOGDIR || os.userInfo().homedir;
  else home = passwd_home(m[1]!);
  return home === undefined ? path : home + path.slice(m[0].length);
}

function passwd_home(user: string): string | undefined {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[0] === user && f.length >= 6) return f[5];
    }
  } catch {
    /* no readable passwd file: leave the path alone */
  }
  return undefined;
}

/** True if this process may read `file`. */
export function is_readable(file: string): boolean {
  return accessible(file, fs_constants.R_OK);
}

/** True if this process may execute `file`. */
export function is_executable(file: string): boolean {
  return accessible(file, fs_constants.X_OK);
}

function accessible(file: string, mode: number): boolean {
  try {
    accessSync(file, mode);
    return true;
  } catch {
    return false;
  }
}
