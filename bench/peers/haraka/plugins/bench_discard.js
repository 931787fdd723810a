// bench_discard: accepts every message and throws it away (benchmarks only), the counterpart
// of qpsmtpd-ts's queue/discard. Haraka's own queue/discard only discards when a note or
// $YES_REALLY_DO_DISCARD says so; this one always does.
'use strict'

exports.register = function () {
    this.logwarn('bench_discard: every accepted message is DROPPED')
}

exports.hook_queue = function (next) {
    next(OK, 'Queued (discarded)')
}
