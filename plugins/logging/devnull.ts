// logging/devnull: swallows every log message. Being a logging plugin that answers DECLINED
// (handled), it also keeps the built-in stderr logger quiet.
import { DECLINED, Plugin } from '../../lib/index.js';

export default class extends Plugin {
  hook_logging(): number {
    return DECLINED;
  }
}
