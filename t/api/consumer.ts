// Compiled by t/api.test.ts against the BUILT package (dist/*.d.ts), imported by its name,
// the way a third-party plugin sees the API.
import {
  Address,
  Connection,
  DECLINED,
  DENY,
  DENYSOFT,
  DENY_DISCONNECT,
  DONE,
  LOGINFO,
  LOGWARN,
  OK,
  Plugin,
  Transaction,
  dsn,
  log_level,
  return_code,
  type HookResult,
} from 'qpsmtpd-ts';

export default class ApiConsumer extends Plugin {
  private limit = 10;

  override register(...args: string[]): void {
    const a = this.parse_args(args, { limit: '10', reject: 1 });
    this.limit = Number(a.limit);
    this.log(LOGINFO, 'limit', this.limit, log_level(LOGWARN), return_code(DENY));
  }

  hook_connect(): number {
    const c: Connection = this.connection;
    c.notes('seen', (Number(c.notes('seen')) || 0) + 1);
    return c.remote_ip() === '192.0.2.1' ? DENY_DISCONNECT : DECLINED;
  }

  async hook_rcpt(txn: Transaction, rcpt: Address, params: Record<string, string | undefined>): Promise<number | [number, string]> {
    if (params.notify === 'NEVER') return [DENYSOFT, 'later'];
    if (txn.recipients().length >= this.limit) return dsn.too_many_rcpts();
    const list: string[] = this.config_list('rcpthosts');
    return list.includes(rcpt.host() ?? '') ? OK : this.get_reject('no', 'not local');
  }

  hook_data_post(txn: Transaction): number | [number, string] {
    const subject: string | undefined = txn.header()?.get('Subject');
    txn.body_resetpos();
    let lines = 0;
    while (txn.body_getline() !== undefined) lines++;
    return subject === undefined && lines === 0 ? [DENY, 'empty'] : DONE === 910 ? DECLINED : OK;
  }
}

export const parsed: Address | undefined = Address.parse('<a@example.test>');
export type R = HookResult;
