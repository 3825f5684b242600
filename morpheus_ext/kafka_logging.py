"""librdkafka's own log lines, through Python logging and rate-limited.

A broker that is down makes librdkafka log the same "Connection refused" several times a
second per client; a 10 s outage once wrote ~200 ERROR lines. :class:`RepeatLimit` lets the
first line of a kind through, holds back the same kind (digits ignored: ports, timings,
counters) for ``interval_s``, and then says how many it held back, so an outage reads as a
few lines and its end is still visible.

>>> import logging
>>> limit = RepeatLimit(interval_s=60, clock=iter([0.0, 1.0, 2.0, 61.0]).__next__)
>>> def rec(msg: str) -> logging.LogRecord:
...     return logging.LogRecord("librdkafka", logging.ERROR, "", 0, msg, None, None)
>>> [limit.filter(rec(f"127.0.0.1:{p}: Connect failed: refused")) for p in (9092, 9093, 9094)]
[True, False, False]
>>> later = rec("127.0.0.1:9095: Connect failed: refused")
>>> limit.filter(later), later.getMessage()
(True, '127.0.0.1:9095: Connect failed: refused (2 similar lines held back in the last 61 s)')
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

_DIGITS = re.compile(r"\d+")


class RepeatLimit(logging.Filter):
    """Pass a log line, then at most one of the same kind per ``interval_s``."""

    def __init__(
        self, interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.clock = clock
        self._seen: dict[tuple[int, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.levelno, _DIGITS.sub("#", record.getMessage()))
        now = self.clock()
        with self._lock:
            first, held = self._seen.get(key, (None, 0))
            if first is not None and now - first < self.interval_s:
                self._seen[key] = (first, held + 1)
                return False
            self._seen[key] = (now, 0)
            if len(self._seen) > 1000:  # bounded: forget the oldest kinds
                for old in sorted(self._seen, key=lambda k: self._seen[k][0])[:500]:
                    del self._seen[old]
        if held and first is not None:
            record.msg = (
                f"{record.getMessage()} ({held} similar lines held back in the last "
                f"{now - first:.0f} s)"
            )
            record.args = None
        return True


def client_logger() -> logging.Logger:
    """The ``librdkafka`` logger every consumer and producer of the project logs through."""
    logger = logging.getLogger("librdkafka")
    if not any(isinstance(f, RepeatLimit) for f in logger.filters):
        logger.addFilter(RepeatLimit())
    return logger
