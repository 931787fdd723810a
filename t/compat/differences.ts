// The allow-list of the differential check (compat.test.ts): every way qpsmtpd-ts may answer
// differently from Debian's qpsmtpd 0.94 in the scenarios of scenarios.ts, with the reason.
//
// An entry rewrites qpsmtpd 0.94's (normalised) reply into ours: in the named scenarios and
// steps, every occurrence of `theirs` (a string, or a pattern) is replaced by `ours` (`$1`…
// refer to the pattern's groups). A reply pair passes when it is identical, or when the entries
// for its scenario and step, applied in list order, turn their reply into ours exactly, so an
// entry that covers a part of a reply (a header line, say) allows that part and nothing else.
// Entries that no longer match anything fail the test too (no stale entries), and each reason
// must appear in docs/compat.md (`QPTS_UPDATE_DOCS=1 npx vitest run t/compat -t docs` rewrites
// that section from this file).
//
// Sources: "0.94→1.00" = qpsmtpd.md section 0.1 (we follow qpsmtpd 1.00, so these are intended);
// "DECISIONS" = DECISIONS.md; "compat §n" = the section of docs/compat.md that documents it;
// "compat-address" = docs/compat-address.md.
import { PLAIN_BAD, PLAIN_GOOD, PLAIN_NOBODY } from './scenarios.js';

export interface Difference {
  /** Scenario names (scenarios.ts) in which the difference shows. */
  scenarios: string[];
  /** How the docs name the scenario list when it is long. */
  scenarios_label?: string;
  /** Steps (as labelled in transcripts) in which it shows. */
  steps: string[];
  /** What qpsmtpd 0.94 sends: the whole reply, a part of it, or a pattern. */
  theirs: string | RegExp;
  /** What qpsmtpd-ts sends in its place. */
  ours: string;
  /** One line: why qpsmtpd-ts differs. */
  reason: string;
  /** Where the behaviour is decided or documented. */
  source: string;
}

/** A difference that is a bug of qpsmtpd-ts (reported; pinned by an `it.fails` test). */
export interface KnownBug extends Difference {
  /** Where the bug is and what is wrong. */
  bug: string;
}

const EHLO_REPLY = [
  '250-mx.example.test Hi Unknown [127.0.0.1]',
  '250-PIPELINING',
  '250-8BITMIME',
  '250-SIZE 100000',
  '250-SMTPUTF8',
  '250 AUTH PLAIN CRAM-MD5 LOGIN',
].join('\n');
const QUIT_REPLY = '221 mx.example.test closing connection. Have a wonderful day.';
const CLOSED = '(connection closed)';

/** Scenarios that greet with EHLO (and so get the AUTH line). */
const EHLO_SCENARIOS = [
  'state-errors',
  'ehlo',
  'commands-case',
  'mail-parse',
  'rcpt-parse',
  'whitespace',
  'address-forms',
  'duplicate-recipients',
  'mail-twice',
  'rset',
  'auth-plain',
  'auth-plain-fail',
  'auth-plain-empty-password',
  'auth-login',
  'auth-login-cancel',
  'auth-cram-md5',
  'auth-cram-md5-fail',
  'auth-mechanism-errors',
  'auth-in-transaction',
  'data-dot-stuffing',
  'data-after-auth',
  'data-after-failed-auth',
  'data-no-header-separator',
  'data-headers',
  'data-empty-message',
  'data-two-messages',
  'databytes-overflow',
  'bare-lf-terminator',
  'bare-lf-in-body',
  'control-and-8bit',
  'bdat',
  'long-command-line',
  'pipelined-envelope',
  'pipelined-after-ehlo',
  'pipelined-data-content',
  'auth-failure-limit',
  'auth-plain-authzid',
  'auth-login-empty',
  'auth-malformed',
  'databytes-boundary',
  'size-parameter',
  'data-header-only',
  'data-8bit-nul-long',
  'data-header-edge',
  'command-arguments',
  'data-helo-name',
  'timeout-in-data',
];

/** Scenarios whose delivered message is compared and that deliver in both servers. */
const STORED_SCENARIOS = [
  'duplicate-recipients',
  'data-dot-stuffing',
  'data-after-helo',
  'data-after-auth',
  'data-after-failed-auth',
  'data-no-header-separator',
  'data-headers',
  'data-empty-message',
  'data-two-messages',
  'pipelined-envelope',
  'databytes-boundary',
  'data-header-only',
  'data-8bit-nul-long',
  'data-header-edge',
  'data-helo-name',
];

const STORED = '(stored messages)';

export const DIFFERENCES: Difference[] = [
  // -- greeting and state ----------------------------------------------------------------------
  {
    scenarios: EHLO_SCENARIOS,
    scenarios_label: 'every scenario that sends EHLO',
    steps: ['EHLO client.test', 'ehlo client.test', 'EHLO client.test extra words', 'EHLO client.test+MAIL', 'EHLO a(b)c\\d.test', 'EHLO   client.test   '],
    theirs: /^250 AUTH (?=(?:PLAIN|CRAM-MD5|LOGIN) (?:PLAIN|CRAM-MD5|LOGIN) (?:PLAIN|CRAM-MD5|LOGIN)$)(?=.*\bPLAIN\b)(?=.*\bCRAM-MD5\b)(?=.*\bLOGIN\b).*$/m,
    ours: '250 AUTH PLAIN CRAM-MD5 LOGIN',
    reason: 'AUTH mechanisms are listed in the fixed order PLAIN CRAM-MD5 LOGIN; qpsmtpd prints Perl hash order, which changes from process to process',
    source: 'compat §4 (Port); qpsmtpd.md 3.4',
  },
  {
    scenarios: EHLO_SCENARIOS,
    scenarios_label: 'every scenario that sends EHLO',
    steps: ['EHLO client.test', 'ehlo client.test', 'EHLO client.test extra words', 'EHLO client.test+MAIL', 'EHLO a(b)c\\d.test', 'EHLO   client.test   '],
    theirs: /^(250-SIZE 100000)$/m,
    ours: '$1\n250-SMTPUTF8',
    reason: 'EHLO offers SMTPUTF8 (RFC 6531): UTF-8 addresses are accepted when MAIL carries the SMTPUTF8 parameter',
    source: 'RFC 6531; lib/smtp/session.ts (not yet in docs/compat.md)',
  },
  {
    scenarios: ['state-errors'],
    steps: ['HELO client.test'],
    theirs: '503 but you already said HELO ...',
    ours: '250 mx.example.test Hi Unknown [127.0.0.1]; I am so happy to meet you.',
    reason: 'A second HELO is accepted and resets the transaction (RFC 5321 §4.1.4); qpsmtpd refused it with 503',
    source: 'DECISIONS; compat §1',
  },
  {
    scenarios: ['state-errors'],
    steps: ['EHLO again.test'],
    theirs: '503 but you already said HELO ...',
    ours: EHLO_REPLY,
    reason: 'A second EHLO is accepted and resets the transaction (RFC 5321 §4.1.4); qpsmtpd refused it with 503',
    source: 'DECISIONS; compat §1',
  },
  // -- input framing and limits ----------------------------------------------------------------
  {
    scenarios: ['bare-lf-commands'],
    steps: ['EHLO client.test\\nNOOP\\r\\n'],
    theirs: /^250-mx\.example\.test Hi Unknown \[127\.0\.0\.1\]\n250-PIPELINING\n250-8BITMIME\n250-SIZE 100000\n250 AUTH [A-Z5 -]+\n250 OK$/,
    ours: '501 5.5.2 Syntax error: control characters in command',
    reason: 'Only CRLF ends a command line: `EHLO x\\nNOOP` is one EHLO whose argument holds a control character (501); qpsmtpd took the bare LF as a line end',
    source: 'compat §1 (Safety R1/R9)',
  },
  {
    scenarios: ['bare-lf-commands'],
    steps: ['NOOP\\nNOOP\\r\\n'],
    theirs: '250 OK\n250 OK',
    ours: '500 Unrecognized command',
    reason: 'Only CRLF ends a command line: `NOOP\\nNOOP` is one unknown command; qpsmtpd answered two NOOPs',
    source: 'compat §1 (Safety R1/R9)',
  },
  {
    scenarios: ['control-and-8bit'],
    steps: ['RCPT TO:<x\\x01y@example.test>', 'HELO a\\x00b.test'],
    theirs: /^(?:250 <"x\\\x01y"@example\.test>, recipient ok|503 but you already said HELO \.\.\.)$/,
    ours: '501 5.5.2 Syntax error: control characters in command',
    reason: 'A control character in the arguments of a known command gets 501 before anything else; qpsmtpd passed it on (and echoed it)',
    source: 'compat §1 (Safety R9)',
  },
  {
    scenarios: ['long-command-line'],
    steps: ['NOOP ' + 'z'.repeat(600)],
    theirs: '250 OK',
    ours: '500 5.5.2 Line too long',
    reason: 'A command line over 512 octets gets `500 5.5.2 Line too long` (RFC 5321 §4.5.3.1.4); qpsmtpd had no limit',
    source: 'compat §1 (Safety R2)',
  },
  {
    scenarios: ['bdat'],
    steps: ['BDAT 10 LAST'],
    theirs: '500 Unrecognized command',
    ours: '521 5.5.1 BDAT not supported (CHUNKING is not offered), closing connection',
    reason: 'BDAT closes the connection, because its chunk bytes cannot be told apart from commands',
    source: 'compat §1 (Safety, BDT-01)',
  },
  {
    scenarios: ['pipelined-after-ehlo'],
    steps: ['EHLO client.test+MAIL'],
    theirs: '250 <a@b.test>, sender OK - how exciting to get mail from you!',
    ours: '554 5.5.0 Error: SMTP protocol synchronization',
    reason: 'Input pipelined behind EHLO/HELO/DATA is a synchronization error (RFC 2920 §3.1): 554 and close',
    source: 'compat §1 (Safety R4)',
  },
  {
    scenarios: ['pipelined-data-content'],
    steps: ['DATA+<message>'],
    theirs: '354 go ahead\n250 Queued! ',
    ours: '554 5.5.0 Error: SMTP protocol synchronization',
    reason: 'Message text sent before the 354 is never parsed: 554 synchronization error and close (RFC 2920 §3.1)',
    source: 'compat §1 (Safety R4)',
  },
  {
    scenarios: ['many-errors'],
    steps: ['RCPT TO:<x@example.test>'],
    theirs: '503 Use MAIL before RCPT',
    ours: '421 4.7.0 Too many errors, closing connection',
    reason: 'After `max_errors` (20) error replies the client gets `421 4.7.0 Too many errors` and is disconnected',
    source: 'compat §1 (Safety R8)',
  },
  {
    scenarios: ['junk-commands'],
    steps: ['QUIT'],
    theirs: QUIT_REPLY,
    ours: '421 4.7.0 Too many commands without mail, closing connection',
    reason: 'After `max_junk_commands` (100) NOOP/RSET/VRFY/HELP without mail the client gets 421 and is disconnected',
    source: 'compat §1 (Safety R8)',
  },
  {
    scenarios: ['timeout-idle', 'timeout-in-data'],
    steps: ['(silence)'],
    theirs: '421 Connection Timed Out [bare LF]',
    ours: '421 4.4.2 Connection Timed Out',
    reason: 'A timeout answers `421 4.4.2 Connection Timed Out` ending in CRLF; qpsmtpd ended the line with a bare LF',
    source: 'DECISIONS; compat §1 (RFC 5321 §4.2)',
  },
  {
    scenarios: ['bdat', 'pipelined-after-ehlo', 'pipelined-data-content', 'many-errors', 'auth-failure-limit', 'bare-lf-in-body'],
    steps: ['QUIT'],
    theirs: QUIT_REPLY,
    ours: CLOSED,
    reason: 'The connection is already closed by the previous reply (421/521/554), so QUIT gets no answer',
    source: 'follows from the entries above',
  },
  // -- MAIL / RCPT -------------------------------------------------------------------------------
  {
    scenarios: ['mail-parse'],
    steps: ['MAIL FROM:<a b@c.test>'],
    theirs: '250 <"a\\ b"@c.test>, sender OK - how exciting to get mail from you!',
    ours: '501 could not parse your mail from command',
    reason: 'An unquoted local part may hold only atext and dots, so `<a b@c.test>` is refused',
    source: 'compat-address; compat §6',
  },
  {
    scenarios: ['mail-parse'],
    steps: ['MAIL FROM:<"a b"@c.test>'],
    theirs: '501 could not parse your mail from command',
    ours: '250 <"a\\ b"@c.test>, sender OK - how exciting to get mail from you!',
    reason: 'A quoted local part may hold a space (RFC 5321 quoted-string), so `<"a b"@c.test>` is accepted; qpsmtpd refused it',
    source: 'compat-address; compat §6',
  },
  {
    scenarios: ['address-forms'],
    steps: ['RCPT TO:<"x y"@example.test>'],
    theirs: '501 could not parse recipient',
    ours: '250 <"x\\ y"@example.test>, recipient ok',
    reason: 'A quoted local part may hold a space (RFC 5321 quoted-string), so `<"x y"@example.test>` is accepted; qpsmtpd refused it',
    source: 'compat-address; compat §6',
  },
  {
    scenarios: ['mail-parse'],
    steps: ['MAIL FROM:<u@b@c.test>'],
    theirs: '250 <"u\\@b"@c.test>, sender OK - how exciting to get mail from you!',
    ours: '501 could not parse your mail from command',
    reason: 'A second `@` in an unquoted local part is refused',
    source: 'compat-address; compat §6',
  },
  {
    scenarios: ['address-forms'],
    steps: ['MAIL FROM:<a(b)@c.test>'],
    theirs: '250 <"a\\(b\\)"@c.test>, sender OK - how exciting to get mail from you!',
    ours: '501 could not parse your mail from command',
    reason: '`(` and `)` in an unquoted local part are refused',
    source: 'compat-address; compat §6',
  },
  {
    scenarios: ['address-forms'],
    steps: ['MAIL FROM:<a@b#c.test>'],
    theirs: '250 <a@b#c.test>, sender OK - how exciting to get mail from you!',
    ours: '501 could not parse your mail from command',
    reason: 'Domain labels are separated by a literal `.` only (qpsmtpd let any character separate them)',
    source: 'compat-address; compat §6',
  },
  {
    scenarios: ['address-forms'],
    steps: ['MAIL FROM:<a@[1.2.3.999]>'],
    theirs: '250 <a@[1.2.3.999]>, sender OK - how exciting to get mail from you!',
    ours: '501 could not parse your mail from command',
    reason: 'IPv4 address literals are range-checked',
    source: 'compat-address; compat §6',
  },
  {
    scenarios: ['control-and-8bit'],
    steps: ['MAIL FROM:<j\\xc3\\xb6rg@example.test>'],
    theirs: '250 <"j\\\xc3\\\xb6rg"@example.test>, sender OK - how exciting to get mail from you!',
    ours: '553 5.6.7 Non-ASCII address needs SMTPUTF8',
    reason: 'Non-ASCII in an address is refused with `553 5.6.7` unless MAIL carries SMTPUTF8 (RFC 6531 §3.4)',
    source: 'compat-address; compat §6',
  },
  {
    scenarios: ['databytes-overflow'],
    steps: ['MAIL FROM:<a@b.test> SIZE=200000'],
    theirs: '250 <a@b.test>, sender OK - how exciting to get mail from you!',
    ours: '552 5.3.4 Message size exceeds fixed maximum message size',
    reason: 'A declared SIZE above `databytes` is refused at MAIL (RFC 1870 §6.3); qpsmtpd never checked SIZE',
    source: 'compat §1',
  },
  {
    scenarios: ['size-parameter'],
    steps: ['MAIL FROM:<a@b.test> SIZE=abc', 'MAIL FROM:<a@b.test> SIZE'],
    theirs: '250 <a@b.test>, sender OK - how exciting to get mail from you!',
    ours: '501 5.5.4 Syntax error in parameters (SIZE)',
    reason: 'A malformed SIZE parameter gets `501 5.5.4` (RFC 1870); qpsmtpd ignored it',
    source: 'compat §1',
  },
  // -- AUTH --------------------------------------------------------------------------------------
  {
    scenarios: ['auth-plain-fail', 'auth-login', 'auth-cram-md5-fail', 'auth-failure-limit', 'data-after-failed-auth'],
    steps: [`AUTH PLAIN ${PLAIN_BAD}`, PLAIN_BAD, `AUTH PLAIN ${PLAIN_NOBODY}`, 'd3Jvbmc=', '<CRAM-MD5 answer for good@example.test/wrong>'],
    theirs: /^(535 [A-Z5-]+ authentication failed for \S+)(?= - |$)/,
    ours: '$1 from 127.0.0.1',
    reason: 'The 535 reply names the client IP (`… failed for <user> from <ip>`), as qpsmtpd 1.00 does',
    source: '0.94→1.00',
  },
  {
    scenarios: ['auth-mechanism-errors'],
    steps: ['AUTH', 'AUTH FOO'],
    theirs: '504 Unimplemented authentification mechanism: ',
    ours: '504 Unimplemented authentication mechanism: ',
    reason: 'The 504 text is spelt "authentication", as in qpsmtpd 1.00',
    source: '0.94→1.00',
  },
  {
    scenarios: ['auth-plain-empty-password'],
    steps: [`AUTH PLAIN ${Buffer.from('\0good@example.test\0').toString('base64')}`],
    theirs: '(no reply)',
    ours: '535 Authentication invalid for good@example.test',
    reason: 'AUTH PLAIN with an empty password gets 535; qpsmtpd sent no reply at all',
    source: 'DECISIONS fix 3; qpsmtpd.md 3.12 #5; compat §2',
  },
  {
    scenarios: ['auth-login-empty'],
    steps: ['(empty user name)'],
    theirs: '(no reply)',
    ours: '535 Authentication invalid',
    reason: 'AUTH LOGIN with an empty user name gets 535; qpsmtpd sent no reply at all',
    source: 'DECISIONS fix 3; qpsmtpd.md 3.12 #5; compat §2',
  },
  {
    scenarios: ['auth-login-empty'],
    steps: ['(empty password)'],
    theirs: '(no reply)',
    ours: '535 Authentication invalid for good@example.test',
    reason: 'AUTH LOGIN with an empty password gets 535; qpsmtpd sent no reply at all',
    source: 'DECISIONS fix 3; qpsmtpd.md 3.12 #5; compat §2',
  },
  {
    scenarios: ['auth-login-cancel'],
    steps: ['*'],
    theirs: '(no reply)',
    ours: '501 Authentication canceled',
    reason: 'A `*` line cancels AUTH with 501 (RFC 4954 §4); qpsmtpd decoded it to an empty answer and said nothing',
    source: 'compat §4 (RFC 4954 §4)',
  },
  {
    scenarios: ['auth-malformed'],
    steps: ['AUTH PLAIN !!!not-base64!!!'],
    theirs: /^535 Authentication invalid \(.*\)$/s,
    ours: '501 5.5.2 Invalid base64 data',
    reason: 'An AUTH answer that is not base64 gets `501 5.5.2 Invalid base64 data` (RFC 4954 §4); qpsmtpd decoded it leniently and echoed the garbage',
    source: 'compat §4 (RFC 4954 §4)',
  },
  {
    scenarios: ['auth-malformed'],
    steps: ['Z29vZEBleGFtcGxlLnRlc3Q='],
    theirs: '504 Invalid authentication string',
    ours: '501 Invalid authentication string',
    reason: 'A CRAM-MD5 answer without a digest is a malformed response: 501, not 504 (RFC 4954 §4)',
    source: 'compat §4 (RFC 4954 §4)',
  },
  {
    scenarios: ['auth-in-transaction'],
    steps: [`AUTH PLAIN ${PLAIN_GOOD}`],
    theirs: '235 PLAIN authentication successful for good@example.test - auth_flat_file',
    ours: '503 5.5.1 AUTH not permitted during a mail transaction',
    reason: 'AUTH after MAIL is refused (RFC 4954 §4 MUST); qpsmtpd allowed it',
    source: 'compat §4 (RFC 4954 §4)',
  },
  {
    scenarios: ['auth-failure-limit'],
    steps: [`AUTH PLAIN ${PLAIN_GOOD}`],
    theirs: '235 PLAIN authentication successful for good@example.test - auth_flat_file',
    ours: '421 4.7.0 Too many authentication failures, closing connection',
    reason: 'After `max_auth_failures` (3) failed attempts the next AUTH gets 421 and the connection is closed',
    source: 'compat §4 (Safety R8)',
  },
  // -- DATA and the stored message ---------------------------------------------------------------
  {
    scenarios: ['bare-lf-in-body'],
    steps: ['Subject: lf\\r\\n\\r\\nline one\\nline two\\r\\n.\\r\\n'],
    theirs: '250 Queued! ',
    ours: '421 See http://smtpd.develooper.com/barelf.html',
    reason: 'A bare LF anywhere in DATA ends the session with the barelf 421 and nothing is queued (SMTP smuggling); qpsmtpd stored the line',
    source: 'DECISIONS; compat §3 (Safety R1)',
  },
  {
    scenarios: ['bare-lf-in-body', 'pipelined-data-content'],
    steps: [STORED],
    theirs: /^Return-Path: <a@b\.test>\n[\s\S]*\nSubject: (?:lf\n\nline one\nline two|early\n\nbody)\n$/,
    ours: '(nothing stored)',
    reason: 'The refused message (bare LF, or text before the 354) is not queued',
    source: 'follows from the entries above',
  },
  {
    scenarios: STORED_SCENARIOS,
    scenarios_label: 'every scenario that stores a message in both servers',
    steps: [STORED],
    theirs: /^(Received: .*\n .*)\n(Authentication-Results: .*)$/m,
    ours: '$2\n$1',
    reason: 'Authentication-Results is added above Received, as qpsmtpd 1.00 does (0.94 put Received on top)',
    source: '0.94→1.00',
  },
  {
    scenarios: STORED_SCENARIOS,
    scenarios_label: 'every scenario that stores a message in both servers',
    steps: [STORED],
    theirs: / with (E?SMTPA?); <date>$/m,
    ours: ' with $1 id <id>; <date>',
    reason: 'Received names the transaction: `with ESMTP id <connection uuid>.<n>; <date>`, as Postfix and Haraka write it (qpsmtpd had no id)',
    source: 'compat §3',
  },
  {
    scenarios: ['data-helo-name'],
    steps: [STORED],
    theirs: '(HELO a(b)c\\d.test)',
    ours: '(HELO a?b?c?d.test)',
    reason: 'In Received, `(`, `)` and `\\` of a client-chosen name become `?`, so a HELO name cannot open or close a header comment',
    source: 'Safety (R9, INJ-02), commit 225ba85; not yet in compat §3',
  },
  {
    scenarios: ['data-dot-stuffing'],
    steps: [STORED],
    theirs: '\n.single\n',
    ours: '\nsingle\n',
    reason: 'Every leading dot of a DATA line is removed (RFC 5321 §4.5.2), so `.single` is stored as `single`; qpsmtpd only unstuffed `..`',
    source: 'compat §3',
  },
  {
    scenarios: ['data-headers'],
    steps: [STORED],
    theirs: 'Authentication-Results: evil.test; auth=pass\nX-Tab:\tvalue\n',
    ours: 'X-Tab:\tvalue\nOriginal-Authentication-Results: evil.test; auth=pass\n',
    reason: "A client's Authentication-Results header becomes Original-Authentication-Results at the end of the header, as in qpsmtpd 1.00 (0.94 left it)",
    source: '0.94→1.00; compat §2',
  },
];

export const KNOWN_BUGS: KnownBug[] = [];
