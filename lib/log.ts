// Log line formatting shared by the built-in stderr logger and logging plugins.
import { log_level } from './constants.js';

/** Escapes control characters so nothing a client sent can split or forge a log line. */
export function sanitize_log_text(text: string): string {
  // eslint-disable-next-line no-control-regex
  return /[\x00-\x08\x0a-\x1f\x7f]/.test(text)
    ? text.replace(/[\x00-\x08\x0a-\x1f\x7f]/g, (c) => '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0'))
    : text;
}

/** qpsmtpd's stderr prefix: ` (<hook>) <plugin>:`, ` <plugin>:` or ` (<hook>) running plugin:`. */
export function log_prefix(hook?: string, plugin?: string): string {
  if (plugin !== undefined && hook !== undefined) return ` (${hook}) ${plugin}:`;
  if (plugin !== undefined) return ` ${plugin}:`;
  if (hook !== undefined) return ` (${hook}) running plugin:`;
  return '';
}

/** `<pid>[ prefix] <msg>` exactly as qpsmtpd's built-in logger writes it. */
export function format_log_line(pid: number | string, hook: string | undefined, plugin: string | undefined, msg: string): string {
  return `${pid}${log_prefix(hook, plugin)} ${msg}`;
}

export type LogWriter = (line: string) => void;

export const stderr_writer: LogWriter = (line) => {
  process.stderr.write(line + '\n');
};

/** A log level given as digits (`6`) or as a name (`LOGINFO`); undefined if it is neither. */
export function parse_log_level(value: string): number | undefined {
  if (/^\d+$/.test(value)) return Number(value);
  return log_level(value);
}
