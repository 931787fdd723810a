import { describe, expect, it } from 'vitest';
import * as C from '../lib/constants.js';
import { Connection } from '../lib/connection.js';
import { dsn } from '../lib/dsn.js';

describe('constants (Qpsmtpd::Constants)', () => {
  it('has qpsmtpd numeric codes and levels', () => {
    expect([C.OK, C.DENY, C.DENYSOFT, C.DENY_DISCONNECT, C.DENYHARD, C.DENYSOFT_DISCONNECT, C.DECLINED, C.DONE]).toEqual([
      900, 901, 902, 903, 903, 904, 909, 910,
    ]);
    expect([C.LOGDEBUG, C.LOGINFO, C.LOGNOTICE, C.LOGWARN, C.LOGERROR, C.LOGCRIT, C.LOGALERT, C.LOGEMERG, C.LOGRADAR]).toEqual([
      7, 6, 5, 4, 3, 2, 1, 0, 0,
    ]);
  });
  it('maps names and numbers both ways, exactly', () => {
    expect(C.return_code('DENY')).toBe(901);
    expect(C.return_code(901)).toBe('DENY');
    expect(C.return_code('903')).toBe('DENY_DISCONNECT');
    expect(C.return_code(1)).toBeUndefined(); // qpsmtpd matched digits as a substring
    expect(C.return_code(12345)).toBeUndefined();
    expect(C.return_code('BOGUS')).toBeUndefined();
    expect(C.log_level('LOGINFO')).toBe(6);
    expect(C.log_level(4)).toBe('LOGWARN');
    expect(C.log_level(0)).toBe('LOGEMERG');
  });
  it('knows every qpsmtpd hook and the method names that register them', () => {
    // qpsmtpd's @hooks holds 39 names; listener_parameters is ours
    expect(C.HOOK_NAMES.filter((h) => h !== 'listener_parameters')).toHaveLength(39);
    expect(C.hook_method_name('pre-connection')).toBe('hook_pre_connection');
    expect(C.hook_method_name('auth-cram-md5')).toBe('hook_auth_cram_md5');
    expect(C.hook_for_method('hook_post_connection')).toBe('post-connection');
    expect(C.is_hook_name('auth-foo')).toBe(false);
  });
});

describe('Connection (Qpsmtpd::Connection)', () => {
  it('reads and sets in accessor style, storing explicit undefined', () => {
    const c = new Connection();
    expect(c.remote_host()).toBeUndefined();
    expect(c.remote_host('mx.example')).toBe('mx.example');
    expect(c.remote_host()).toBe('mx.example');
    expect(c.notes('k', 1)).toBe(1);
    expect(c.notes('k', undefined)).toBeUndefined();
    expect('k' in c.all_notes()).toBe(true);
  });
  it('start takes only truthy values and normalises IPv4-mapped addresses', () => {
    const c = new Connection().start({ remote_ip: '::ffff:192.0.2.7', remote_port: 0, local_ip: '', relay_client: 1 });
    expect(c.remote_ip()).toBe('192.0.2.7');
    expect(c.remote_port()).toBeUndefined();
    expect(c.local_ip()).toBeUndefined();
    expect(c.relay_client()).toBe(1);
    expect(new Connection().start({ remote_ip: '2001:db8::1' }).remote_ip()).toBe('2001:db8::1');
  });
  it('clone shares notes, drops hello, and resets the original unless told not to', () => {
    const c = new Connection().start({ remote_ip: '127.0.0.1', remote_host: 'localhost' });
    c.hello('ehlo');
    c.hello_host('client.test');
    c.notes('tls', 'x');
    const d = c.clone({ no_reset: true });
    expect(d.remote_ip()).toBe('127.0.0.1');
    expect(d.hello()).toBeUndefined();
    expect(d.hello_host()).toBeUndefined();
    d.notes('shared', 1);
    expect(c.notes('shared')).toBe(1);
    const e = c.clone();
    expect(e.notes('tls')).toBe('x');
    expect(c.notes('tls')).toBeUndefined();
  });
});

describe('DSN helpers (Qpsmtpd::DSN)', () => {
  it('gives code and RFC 1893 text with the status triple', () => {
    expect(dsn.relaying_denied()).toEqual([C.DENY, 'Relaying denied (#5.7.1)']);
    expect(dsn.no_such_user('mail to x not accepted here')).toEqual([C.DENY, 'mail to x not accepted here (#5.1.1)']);
    expect(dsn.no_such_user(C.DENYSOFT)).toEqual([C.DENYSOFT, 'No such user (#4.1.1)']);
    expect(dsn.no_such_user(C.DENY, '')).toEqual([C.DENY, 'No such user (#5.1.1)']);
    expect(dsn.mbox_full()).toEqual([C.DENYSOFT, 'Mailbox full. (#4.2.2)']);
    expect(dsn.addr_unspecified('')).toEqual([C.DENYSOFT, ' (#4.1.0)']);
    expect(dsn.addr_rcpt_ok()).toEqual([C.OK, 'Destination address valid. (#2.1.5)']);
    expect(dsn.temp_resolver_failed()).toEqual([C.DENYSOFT, 'Temporary address resolution failure (#4.4.3)']);
    expect(dsn.addr_bad_from_system(C.DENYSOFT, 'FQDN required in the envelope sender')).toEqual([
      C.DENYSOFT,
      'FQDN required in the envelope sender (#4.1.8)',
    ]);
    expect(dsn.too_many_hops()).toEqual([C.DENY, 'Too many hops (#5.4.6)']);
    expect(dsn.unspecified(C.DECLINED)).toEqual([C.DECLINED, 'Other or Undefined Status (#4.0.0)']);
    expect(dsn.sys_msg_too_big(C.DONE)).toEqual([C.DONE, 'Message too big for system. (#2.3.4)']);
  });
  it('has every helper of the spec table', () => {
    expect(Object.keys(dsn)).toHaveLength(49);
  });
});
