"""Hooks of scripts/api-fuzz.sh. They make generated requests also obey the
few rules the OpenAPI documents cannot state, so that a schema-valid request
the service still refuses is a real defect (the positive_data_acceptance
check). They only ever replace a valid value by another valid one, so a
schema-invalid (negative) request stays invalid in the way it was made.

- An event's `time` must be from 1900 on and at most 24 hours ahead: a
  `time` outside the years 2000 to 2025 gets the year 2000.
- A read's `to` must not be before `from`, and a range may hold at most 3660
  periods: the dates are put in order and the range is cut to fit.
- A trend or comparison whose JSON would be over NATS's max_payload (1 MiB;
  a daily trend of all metrics over about 7 years, or a daily comparison of
  many movements) is answered 400 naming `from`, a limit the document can
  only state in prose. Trend and comparison ranges are cut to 1000 periods
  so that schema-valid requests stay within it.
- `top` is taken only with `by` (a `top` alone is refused, not ignored): a
  `top` without `by` gets `by=area`. A split read answers at most 20 000
  rows (values kept, with `(other)`, times rows per value, times movements
  compared): a split read's range is cut to 100 periods and its `top` to 9
  (given when absent).
- A read is as of a sequence (`as_of_seq`) or a time (`as_of`), not both:
  a read given both keeps `as_of`; and a time to come is refused, so an
  `as_of` later than now becomes 2000-01-01T00:00:00Z.
- `min_seq` makes a read wait for a stream sequence and answer 503 if it
  does not come, and so do `as_of_seq` and `since_seq` (a read as of a
  sequence waits for it): each is kept at or below MOMENTUM_FUZZ_MIN_SEQ_MAX,
  a sequence the test has already seen applied.
"""

import datetime
import os
import re

import schemathesis

_TIME = re.compile(r"^(\d{4})(-\d\d-\d\d[Tt].*)$", re.S)
_DATE = re.compile(r"^(19|2\d)\d\d-\d\d-\d\d$")
_PERIODS_MAX = 3660
# See the answer size limit above.
_LARGE_ANSWER_PERIODS_MAX = 1000
# See the split rows limit above.
_SPLIT_PERIODS_MAX = 100
_SPLIT_TOP_MAX = 9
_SEQ_MAX = 2**64 - 1
# The fewest days a period of each interval has.
_DAYS_PER_PERIOD = {"day": 1, "week": 7, "month": 28}


def _event_in_range(event):
    if isinstance(event, dict) and isinstance(event.get("time"), str):
        match = _TIME.match(event["time"])
        if match and not 2000 <= int(match.group(1)) <= 2025:
            event = dict(event)
            event["time"] = "2000" + match.group(2)
    return event


def _date(value):
    if isinstance(value, str) and _DATE.match(value):
        try:
            return datetime.date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _split_within_bounds(query):
    if "top" in query and "by" not in query:
        query["by"] = "area"
    if "by" not in query:
        return
    top = query.setdefault("top", _SPLIT_TOP_MAX)
    if isinstance(top, int) and not isinstance(top, bool) and 1 <= top <= 100:
        query["top"] = min(top, _SPLIT_TOP_MAX)
    elif isinstance(top, str) and top.isascii() and top.isdigit() and 1 <= int(top) <= 100:
        query["top"] = str(min(int(top), _SPLIT_TOP_MAX))


def _readable_range(path, query):
    start, end = _date(query.get("from")), _date(query.get("to"))
    if start is not None and "to" not in query:
        end = max(start, datetime.date.today())
    # A split read without `from` covers the year before `to`: give it a
    # `from` within its bound.
    if "by" in query and start is None and "from" not in query and not path.endswith("/stickiness"):
        end = end or datetime.date.today()
        start = end - datetime.timedelta(days=_SPLIT_PERIODS_MAX - 2)
    if start is None or end is None:
        return
    start, end = min(start, end), max(start, end)
    interval = query.get("interval", "day" if path.endswith("/principles") else "week")
    periods_max = _PERIODS_MAX
    if path.endswith("/trends") or path == "/v1/compare":
        periods_max = _LARGE_ANSWER_PERIODS_MAX
    if "by" in query:
        periods_max = _SPLIT_PERIODS_MAX
    days = _DAYS_PER_PERIOD.get(interval if isinstance(interval, str) else "", 1) * (periods_max - 2)
    end = min(end, start + datetime.timedelta(days=days))
    query["from"], query["to"] = start.isoformat(), end.isoformat()


@schemathesis.hook
def map_case(context, case):
    if case.operation.path == "/v1/events" and case.body is not None:
        if isinstance(case.body, list):
            case.body = [_event_in_range(event) for event in case.body]
        else:
            case.body = _event_in_range(case.body)
    if isinstance(case.query, dict) and case.query:
        if "as_of" in case.query:
            case.query.pop("as_of_seq", None)
            as_of = case.query["as_of"]
            if isinstance(as_of, str):
                try:
                    moment = datetime.datetime.fromisoformat(as_of.replace("Z", "+00:00").replace("z", "+00:00"))
                    if moment.tzinfo is not None and moment > datetime.datetime.now(datetime.timezone.utc):
                        case.query["as_of"] = "2000-01-01T00:00:00Z"
                except ValueError:
                    pass
        _split_within_bounds(case.query)
        _readable_range(case.operation.path, case.query)
        min_seq_max = int(os.environ.get("MOMENTUM_FUZZ_MIN_SEQ_MAX", "0"))
        for name in ("min_seq", "as_of_seq", "since_seq"):
            seq = case.query.get(name)
            if isinstance(seq, int) and not isinstance(seq, bool) and min_seq_max < seq <= _SEQ_MAX:
                case.query[name] = seq % (min_seq_max + 1)
            elif isinstance(seq, str) and seq.isascii() and seq.isdigit() and min_seq_max < int(seq) <= _SEQ_MAX:
                case.query[name] = str(int(seq) % (min_seq_max + 1))
    return case
