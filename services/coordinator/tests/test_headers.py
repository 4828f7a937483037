"""The message helpers the servicers build answers with."""

from __future__ import annotations

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from marquee_coordinator.headers import duration, seconds, timestamp


@pytest.mark.parametrize("value", [0.0, 1e-9, 0.25, 1.5, 2.0, 59.999999999, 3600.125, -0.5, -2.25])
def test_duration_matches_protobufs_own_conversion(value: float) -> None:
    expected = Duration()
    expected.FromNanoseconds(round(value * 1e9))
    assert duration(value) == expected
    assert seconds(duration(value)) == pytest.approx(value, abs=1e-9)


@pytest.mark.parametrize("value", [0.0, 1.5, 1_796_454_013.832933, -0.25, -86_400.5])
def test_timestamp_matches_protobufs_own_conversion(value: float) -> None:
    expected = Timestamp()
    expected.FromNanoseconds(round(value * 1e9))
    assert timestamp(value) == expected
