// queue/discard: accepts every message and throws it away. For benchmarks and tests only:
// it warns at start-up that it DROPS all mail.
//
//   queue/discard [loglevel N]
//
// Answers `250 Queued (discarded)`.
import { LOGWARN, OK, Plugin, type Transaction } from '../../lib/index.js';

export default class extends Plugin {
  override register(...args: string[]): void {
    this.parse_args(args, {});
    this.log(LOGWARN, 'WARNING: queue/discard is loaded: every accepted message is DROPPED, nothing is delivered');
  }

  hook_queue(_transaction: Transaction): [number, string] {
    return [OK, 'Queued (discarded)'];
  }
}
