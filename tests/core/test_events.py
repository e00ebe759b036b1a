import pytest

from tango_core import events as ev
from tango_core.errors import UnknownNameError


def test_every_event_constant_is_documented():
    names = {v for k, v in vars(ev).items() if k.isupper() and isinstance(v, str) and k != "EVENT_FIELDS"}
    assert names == set(ev.EVENT_FIELDS)


def test_emit_checks_documented_fields_and_delivers():
    bus = ev.EventBus()
    rec = ev.Recorder(bus)
    only = ev.Recorder(bus, ev.CHECKPOINT)
    bus.emit(ev.CHECKPOINT, path="x.pt", kind="last", epoch=1)
    with pytest.raises(ValueError, match="epoch"):
        bus.emit(ev.CHECKPOINT, path="x.pt", kind="last")
    with pytest.raises(UnknownNameError):
        bus.emit("checkpiont", path="x")
    assert rec.names() == [ev.CHECKPOINT] and len(only.events) == 1


def test_unsubscribe_and_throttle():
    bus = ev.EventBus()
    seen = []
    thr = ev.Throttle(seen.append, rate_hz=1e-6)
    off = bus.subscribe(ev.TRAIN_ERROR, thr)
    for i in range(5):
        bus.emit(ev.TRAIN_ERROR, error=str(i))
    assert [e["error"] for e in seen] == ["0"]
    thr.flush()
    assert [e["error"] for e in seen] == ["0", "4"]
    off()
    bus.emit(ev.TRAIN_ERROR, error="x")
    assert len(seen) == 2
