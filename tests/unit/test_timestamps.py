"""set_time is Timestamp.FromDatetime and iso is strftime, faster: the same results for every datetime."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from gateway.graphjson import iso
from services.common.timestamps import set_time


@given(st.datetimes(timezones=st.sampled_from([None, timezone.utc, timezone(timedelta(hours=-7, minutes=-30)),
                                               timezone(timedelta(hours=13))])))
def test_set_time_matches_from_datetime(value):
    ours, theirs = Timestamp(), Timestamp()
    set_time(ours, value)
    theirs.FromDatetime(value)
    assert (ours.seconds, ours.nanos) == (theirs.seconds, theirs.nanos)


@given(st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
def test_iso_writes_what_datetime_writes(value):
    stamp = Timestamp()
    set_time(stamp, value)
    expected = value.isoformat(timespec="microseconds" if value.microsecond else "seconds") + "Z"
    assert iso(stamp.seconds, stamp.nanos) == expected
