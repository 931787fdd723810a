// Qpsmtpd::DSN: RFC 1893 enhanced status codes as (return code, "text (#c.s.d)") pairs.
import { DENY, DENYSOFT, DONE, OK, return_code } from './constants.js';

const RFC1893: readonly (readonly string[])[] = [
  ['Other or Undefined Status'],
  [
    'Other address status.',
    'Bad destination mailbox address.',
    'Bad destination system address.',
    'Bad destination mailbox address syntax.',
    'Destination mailbox address ambiguous.',
    'Destination address valid.',
    'Destination mailbox has moved, No forwarding address.',
    "Bad sender's mailbox address syntax.",
    "Bad sender's system address.",
  ],
  [
    'Other or undefined mailbox status.',
    'Mailbox disabled, not accepting messages.',
    'Mailbox full.',
    'Message length exceeds administrative limit.',
    'Mailing list expansion problem.',
  ],
  [
    'Other or undefined mail system status.',
    'Mail system full.',
    'System not accepting network messages.',
    'System not capable of selected features.',
    'Message too big for system.',
    'System incorrectly configured.',
  ],
  [
    'Other or undefined network or routing status.',
    'No answer from host.',
    'Bad connection.',
    'Directory server failure.',
    'Unable to route.',
    'Mail system congestion.',
    'Routing loop detected.',
    'Delivery time expired.',
  ],
  [
    'Other or undefined protocol status.',
    'Invalid command.',
    'Syntax error.',
    'Too many recipients.',
    'Invalid command arguments.',
    'Wrong protocol version.',
  ],
  [
    'Other or undefined media error.',
    'Media not supported.',
    'Conversion required and prohibited.',
    'Conversion required but not supported.',
    'Conversion with loss performed.',
    'Conversion Failed.',
  ],
  [
    'Other or undefined security status.',
    'Delivery not authorized, message refused.',
    'Mailing list expansion prohibited.',
    'Security conversion required but not possible.',
    'Security features not supported.',
    'Cryptographic failure.',
    'Cryptographic algorithm not supported.',
    'Message integrity failure.',
  ],
];

export type DsnResult = [code: number, text: string];
/** Called as `dsn.relaying_denied()`, `(text)`, `(code)` or `(code, text)`, like Qpsmtpd::DSN. */
export type DsnHelper = (codeOrText?: number | string, text?: string) => DsnResult;

function status_class(rc: number): number {
  const name = return_code(rc) ?? '';
  if (name.startsWith('DENYSOFT')) return 4;
  if (name.startsWith('DENY')) return 5;
  if (rc === OK || rc === DONE) return 2;
  return 4;
}

function make(def: number, subject: number, detail: number, own_text?: string): DsnHelper {
  return (first?: number | string, second?: string) => {
    let rc: number = def;
    // the helper-specific defaults apply through `||`, as in the Perl
    let reason: string | undefined = own_text ? second || own_text : second;
    if (first !== undefined && first !== null) {
      if (typeof first === 'number' || /^\d+$/.test(first)) rc = Number(first);
      else reason = first;
    }
    let s = subject;
    let d = detail;
    if (RFC1893[s]?.[d] === undefined) {
      d = 0;
      if (RFC1893[s]?.[d] === undefined) s = 0;
    }
    const text = reason ?? RFC1893[s]![d]!;
    return [rc, `${text} (#${status_class(rc)}.${s}.${d})`];
  };
}

export const dsn = {
  unspecified: make(DENYSOFT, 0, 0),
  addr_unspecified: make(DENYSOFT, 1, 0),
  no_such_user: make(DENY, 1, 1, 'No such user'),
  addr_bad_dest_mbox: make(DENY, 1, 1),
  addr_bad_dest_system: make(DENY, 1, 2),
  addr_bad_dest_syntax: make(DENY, 1, 3),
  addr_dest_ambigous: make(DENYSOFT, 1, 4),
  addr_rcpt_ok: make(OK, 1, 5),
  addr_mbox_moved: make(DENY, 1, 6),
  addr_bad_from_syntax: make(DENY, 1, 7),
  addr_bad_from_system: make(DENY, 1, 8),
  mbox_unspecified: make(DENYSOFT, 2, 0),
  mbox_disabled: make(DENY, 2, 1),
  mbox_full: make(DENYSOFT, 2, 2),
  mbox_msg_too_long: make(DENY, 2, 3),
  mbox_list_expansion_problem: make(DENYSOFT, 2, 4),
  sys_unspecified: make(DENYSOFT, 3, 0),
  sys_disk_full: make(DENYSOFT, 3, 1),
  sys_not_accepting_mail: make(DENYSOFT, 3, 2),
  sys_not_supported: make(DENYSOFT, 3, 3),
  sys_msg_too_big: make(DENY, 3, 4),
  net_unspecified: make(DENYSOFT, 4, 0),
  net_directory_server_failed: make(DENYSOFT, 4, 3),
  temp_resolver_failed: make(DENYSOFT, 4, 3, 'Temporary address resolution failure'),
  net_system_congested: make(DENYSOFT, 4, 5),
  net_routing_loop: make(DENY, 4, 6),
  too_many_hops: make(DENY, 4, 6, 'Too many hops'),
  proto_unspecified: make(DENYSOFT, 5, 0),
  proto_invalid_command: make(DENY, 5, 1),
  proto_syntax_error: make(DENY, 5, 2),
  proto_rcpt_list_too_long: make(DENYSOFT, 5, 3),
  too_many_rcpts: make(DENYSOFT, 5, 3),
  proto_invalid_cmd_args: make(DENY, 5, 4),
  proto_wrong_version: make(DENYSOFT, 5, 5),
  media_unspecified: make(DENYSOFT, 6, 0),
  media_unsupported: make(DENY, 6, 1),
  media_conv_prohibited: make(DENY, 6, 2),
  media_conv_unsupported: make(DENYSOFT, 6, 3),
  media_conv_lossy: make(DENYSOFT, 6, 4),
  sec_unspecified: make(DENYSOFT, 7, 0),
  sec_sender_unauthorized: make(DENY, 7, 1),
  bad_sender_ip: make(DENY, 7, 1, "Bad sender's IP"),
  relaying_denied: make(DENY, 7, 1, 'Relaying denied'),
  sec_list_dest_prohibited: make(DENY, 7, 2),
  sec_conv_failed: make(DENY, 7, 3),
  sec_feature_unsupported: make(DENY, 7, 4),
  sec_crypto_failure: make(DENY, 7, 5),
  sec_crypto_algorithm_unsupported: make(DENYSOFT, 7, 6),
  sec_msg_integrity_failure: make(DENY, 7, 7),
} satisfies Record<string, DsnHelper>;

export type DsnName = keyof typeof dsn;
