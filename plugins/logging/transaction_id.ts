// logging/transaction_id: like logging/connection_id, but each line starts with the id of the
// transaction it belongs to: `<connection id>.<n>`, where n counts the transactions of the
// connection (1 for the one that exists from connect to the first MAIL, 2 after it, … — every
// MAIL, RSET and queued message starts a new one), as qpsmtpd 0.3x numbered them.
//
//   logging/transaction_id [level]
//
// level: a number or a LOG* name; default LOGWARN. Lines go to stderr:
//   <id> <plugin> plugin: <text>   |   <id> running plugin (<hook>): <text>   |   <id> <text>
//
// The connection id is the one logging/connection_id uses (connection note `id`, made when
// nothing set it). The transaction's number is kept in its note `transaction_number` (and the
// whole id in `transaction_id`), the count in the connection note `transaction_count`. Lines
// outside any session carry the pid.
import { DECLINED } from '../../lib/index.js';
import ConnectionId from './connection_id.js';

interface Notes {
  notes(key: string, value?: unknown): any;
}

export default class extends ConnectionId {
  /**
   * The transaction's id: its number (numbered when the transaction logs, or is looked at,
   * first) after the connection's current id.
   */
  transaction_id(transaction: Notes | undefined): string {
    const t = transaction?.notes ? transaction : this.transaction;
    let n = Number(t.notes('transaction_number')) || 0;
    if (!n) {
      const c = this.connection;
      n = (Number(c.notes('transaction_count')) || 0) + 1;
      c.notes('transaction_count', n);
      t.notes('transaction_number', n);
    }
    return String(t.notes('transaction_id', `${this.connection_id()}.${n}`));
  }

  override hook_connect(): number {
    this.connection_id();
    this.transaction_id(this.transaction);
    return DECLINED;
  }

  override line_id(transaction: unknown): string {
    return this.transaction_id(transaction as Notes | undefined);
  }
}
