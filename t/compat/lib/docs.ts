// The "Differential check against qpsmtpd 0.94" section of docs/compat.md, generated from
// scenarios.ts and differences.ts so the page and the allow-list cannot drift apart.
// `QPTS_UPDATE_DOCS=1 npx vitest run t/compat -t docs` rewrites the section (in place, or
// appended at the end of the file); the rest of docs/compat.md is never touched.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DIFFERENCES, KNOWN_BUGS, type Difference } from '../differences.js';
import { SCENARIOS } from '../scenarios.js';
import { printable } from './transcript.js';

export const DOC_HEADING = '## Differential check against qpsmtpd 0.94';
export const DOC_FILE = path.join(import.meta.dirname, '..', '..', '..', 'docs', 'compat.md');

/** Where the section is in `text`: [start, end) offsets, or undefined. */
function locate(text: string): [number, number] | undefined {
  const m = new RegExp(`^${DOC_HEADING.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm').exec(text);
  if (!m) return undefined;
  const after = m.index + m[0].length;
  const next = /^## /m.exec(text.slice(after));
  return [m.index, next ? after + next.index : text.length];
}

/** The section as it is in docs/compat.md now, or undefined. */
export function docs_section(): string | undefined {
  let text: string;
  try {
    text = readFileSync(DOC_FILE, 'utf8');
  } catch {
    return undefined;
  }
  const at = locate(text);
  return at ? text.slice(at[0], at[1]).replace(/\s+$/, '\n') : undefined;
}

/** Writes the generated section into docs/compat.md (replacing the old one, or at the end). */
export function write_docs_section(): void {
  let text = '';
  try {
    text = readFileSync(DOC_FILE, 'utf8');
  } catch {
    /* a new file */
  }
  const section = render_section();
  const at = locate(text);
  if (at) {
    const rest = text.slice(at[1]);
    text = text.slice(0, at[0]) + section + (rest ? '\n' + rest : '');
  } else {
    text = (text ? text.replace(/\s*$/, '\n\n') : '') + section;
  }
  writeFileSync(DOC_FILE, text);
}

/** A value as table cell text: code spans, one per line, `|` escaped, long values cut. */
function cell(v: string | RegExp): string {
  if (v instanceof RegExp) return code(`/${v.source}/${v.flags}`);
  if (v === '') return '(empty)';
  const shown = v.length > 180 ? v.slice(0, 177) + '…' : v;
  // a part of a message that starts or ends at a line break: show just its lines
  const lines = shown.replace(/^\n(?=.)/s, '').replace(/(?<=.)\n$/s, '').split('\n');
  return lines.map((l) => (l === '' ? '(empty line)' : code(printable(l)))).join('<br>');
}

/** A code span; leading and trailing spaces shown as `␠` (they matter in replies). */
function code(s: string): string {
  const t = s.replace(/^ +| +$/g, (sp) => '␠'.repeat(sp.length)).replace(/\|/g, '\\|');
  return t.includes('`') ? `\`\` ${t} \`\`` : `\`${t}\``;
}

function scenarios(d: Difference): string {
  if (d.scenarios_label) return `${d.scenarios_label} (${d.scenarios.length})`;
  return d.scenarios.map((s) => `\`${s}\``).join(', ');
}

function steps(d: Difference): string {
  return d.steps.map((s) => code(s.length > 60 ? s.slice(0, 57) + '…' : s)).join(', ');
}

function row(d: Difference, extra?: string): string {
  return `| ${scenarios(d)} | ${steps(d)} | ${cell(d.theirs)} | ${cell(d.ours)} | ${d.reason.replace(/\|/g, '\\|')} | ${extra ?? d.source} |`;
}

export function render_section(): string {
  const out: string[] = [];
  out.push(DOC_HEADING, '');
  out.push(
    '`t/compat/compat.test.ts` (part of `npm test`) plays a set of SMTP sessions against Debian\'s',
    'qpsmtpd 0.94 (the `qpsmtpd` package) and against qpsmtpd-ts, both on 127.0.0.1 with the plugins',
    'and config of qpsmtpd.md Appendix A: `count_unrecognized_commands 4`, `dont_require_anglebrackets`,',
    '`auth/auth_flat_file`, `rcpt_ok`, `queue/maildir <tmp>`; `me` `mx.example.test`, `rcpthosts`',
    '`example.test`, `databytes` 100000, `flat_auth_pw` `good@example.test:good_pass` (and `timeout` 2',
    'for the two timeout scenarios, on a second pair of servers). Every reply, byte for byte after',
    'normalisation, and every message delivered to the maildir must be the same in both, or be',
    'listed below. A difference that is not listed fails the test, and so does an entry that no',
    'longer matches anything. The transcripts of Appendix A itself are replayed against qpsmtpd-ts',
    'alone in `t/smtp/appendix.test.ts`.',
    '',
    '### How to run',
    '',
    '```sh',
    'apt-get install -y --no-install-recommends qpsmtpd   # .ci/run installs it',
    'npx vitest run t/compat/',
    '```',
    '',
    'Without `/usr/bin/qpsmtpd-forkserver` (or Perl\'s `Net::DNS`) the test **fails** and says so;',
    'it never skips. It needs nothing else: it writes a config dir, spool dir (mode 0700) and',
    'maildir under the system temp dir (outside any git checkout, because qpsmtpd adds',
    '`git describe` to its version inside one), starts `qpsmtpd-forkserver -l 127.0.0.1 -p <free port>',
    '-c 64 -m 0` (with `-u qpsmtpd`, and the temp tree owned by that user, when run as root), and',
    'starts qpsmtpd-ts in the test process with `listen(runtime, { port: 0 })`. Both servers look',
    'up the client\'s PTR record on every connection; both are pointed at a DNS stub (dns2) on a',
    'random loopback port that answers NXDOMAIN, so no query leaves the machine and both call the',
    'client `Unknown`. qpsmtpd runs under `perl -T`, where the resolver cannot be redirected through',
    'the environment, so it is started through `t/compat/qp-dns-wrap.pl`, which wraps',
    '`Net::DNS::Resolver->new` to use the stub and then runs the unmodified daemon. A run takes',
    'about 20 seconds.',
    '',
    'Before comparing, both sides are normalised: the product name and version (`qpsmtpd-ts',
    '<version>`, `qpsmtpd 0.94`, `qpsmtpd-ts/<version>`, `qpsmtpd/0.94`) become `qpsmtpd <version>`',
    '(the name itself is a documented difference, section 5), RFC 5322 dates become `<date>`, a',
    'CRAM-MD5 challenge becomes `<cram-md5 challenge>`, the id in our `Received:` (`id <uuid>.<n>`)',
    'becomes `id <id>`, and this machine\'s host name becomes `<hostname>`. A line qpsmtpd ended',
    'with a bare LF is marked `[bare LF]`. Maildir file names are',
    'not compared. After the last step the test records whether the server closed the connection.',
    '',
    'This section is generated from `t/compat/scenarios.ts` and `t/compat/differences.ts`; after',
    'changing them run `QPTS_UPDATE_DOCS=1 npx vitest run t/compat -t docs`.',
    '',
    '### Scenarios',
    '',
    '| Scenario | What it covers | Stored message compared |',
    '|---|---|---|',
  );
  for (const s of SCENARIOS) out.push(`| \`${s.name}\` | ${s.about.replace(/\|/g, '\\|')} | ${s.stored ? 'yes' : ''} |`);
  out.push(
    '',
    '### Remaining differences',
    '',
    'Each row turns qpsmtpd 0.94\'s reply into ours: in the listed scenarios and steps, the text (or',
    'pattern) in the 0.94 column is replaced by the qpsmtpd-ts column. "0.94→1.00" marks a change',
    'qpsmtpd itself made after 0.94 (qpsmtpd.md section 0.1): qpsmtpd-ts follows 1.00. "compat §n"',
    'is the section of this page that documents the behaviour.',
    '',
    '| Scenarios | Steps | qpsmtpd 0.94 | qpsmtpd-ts | Reason | Source |',
    '|---|---|---|---|---|---|',
  );
  for (const d of DIFFERENCES) out.push(row(d));
  out.push('', '### Known bugs found by the check', '');
  if (!KNOWN_BUGS.length) out.push('None.');
  else {
    out.push(
      'These differences are bugs of qpsmtpd-ts, not intended behaviour. The differential test lets',
      'them pass so the rest stays checked, and `compat.test.ts` pins each with an `it.fails` test',
      'that starts failing (and must be removed) once the bug is fixed.',
      '',
      '| Scenarios | Steps | qpsmtpd 0.94 | qpsmtpd-ts | What is wrong | Where |',
      '|---|---|---|---|---|---|',
    );
    for (const b of KNOWN_BUGS) out.push(row({ ...b, reason: b.reason }, b.bug.replace(/\|/g, '\\|')));
  }
  return out.join('\n') + '\n';
}
