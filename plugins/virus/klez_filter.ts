// virus/klez_filter: refuse mail carrying the Klez worm (2002) by its base64 signature.
//
//   virus/klez_filter [loglevel N]
//
// data_post hook. Messages under 60000 bytes are passed (Klez is always bigger). Otherwise the
// first 41 lines of the body (after the header) are read; once a `Content-type:` line naming
// audio or application has been seen, a line starting with the base64 of a PE executable
// header (`TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQA`) gets `552 Klez Virus Detected`.
import { DECLINED, DENY, LOGINFO, Plugin, type Transaction } from '../../lib/index.js';

const CONTENT_TYPE = /^Content-type:.*(?:audio|application)/i;
const SIGNATURE = /^TVqQAAMAAAAEAAAA\/\/8AALgAAAAAAAAAQA/;

export default class extends Plugin {
  override register(...args: string[]): void {
    this.parse_args(args, {});
  }

  hook_data_post(transaction: Transaction): number | [number, string] {
    // klez files are always sorta big
    if (transaction.data_size() < 60_000) return DECLINED;
    transaction.body_resetpos();
    let line_number = 0;
    let seen_klez_signature = 0;
    for (let line = transaction.body_getline(); line; line = transaction.body_getline()) {
      if (line_number++ > 40) break;
      if (CONTENT_TYPE.test(line)) {
        seen_klez_signature++;
        continue;
      }
      if (seen_klez_signature && SIGNATURE.test(line)) {
        this.log(LOGINFO, 'fail, Klez signature found');
        return [DENY, 'Klez Virus Detected'];
      }
    }
    return DECLINED;
  }
}
