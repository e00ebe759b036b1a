"""The HPO / NAS view, driven by trial events."""

from __future__ import annotations

import base64

import pytest

from tango_core import events as ev
from tango_core.errors import ConfigError
from tango_widgets import StudyView
from tango_widgets._study import pareto_front

pytestmark = pytest.mark.unit


def test_pareto_front_mixed_directions():
    # maximise accuracy, minimise latency
    pts = [(0.90, 10.0), (0.85, 5.0), (0.80, 6.0), (0.95, 20.0), (0.90, 12.0), (0.85, 5.0)]
    assert pareto_front(pts, ["maximize", "minimize"]) == [0, 1, 3, 5]
    assert pareto_front(pts, ["minimize", "maximize"]) == [2, 3, 4]
    assert pareto_front([(1.0,), (3.0,), (2.0,)], ["maximize"]) == [1]


def _single_objective_study(bus):
    lrs = [0.1, 0.01, 0.3, 0.05]
    scores = [0.6, 0.8, 0.4, 0.7]
    for n, (lr, score) in enumerate(zip(lrs, scores, strict=False)):
        params = {"lr0": lr, "optimizer": "sgd" if n % 2 else "adam"}
        bus.emit(ev.TRIAL_START, study="hpo", trial=n, params=params)
        for step in range(3):
            bus.emit(ev.TRIAL_REPORT, study="hpo", trial=n, step=step, value=score * (step + 1) / 3)
            if n == 2 and step == 1:
                bus.emit(ev.TRIAL_PRUNED, study="hpo", trial=n, step=step)
                break
        else:
            bus.emit(ev.TRIAL_COMPLETE, study="hpo", trial=n, values=[score], params=params, state="COMPLETE")
    bus.emit(ev.STUDY_END, study="hpo", best={"trial": 1, "values": [0.8]})


def test_single_objective_trials_best_and_parallel_coordinates(frontend):
    bus = ev.EventBus()
    view = StudyView(bus, directions=["maximize"], objectives=["top1"])
    _single_objective_study(bus)
    h = view.history
    assert [t["state"] for _, t in sorted(h.trials.items())] == ["complete", "complete", "pruned", "complete"]
    assert h.best_trials() == [1]
    assert h.best_so_far() == ([0, 1, 3], [0.6, 0.8, 0.8])
    d = view.figure.data
    assert list(d[0].x) == [0, 1, 3] and list(d[1].y) == [0.6, 0.8, 0.8]
    par = d[view._par_index]
    labels = [dim.label for dim in par.dimensions]
    assert labels == ["lr0", "optimizer", "top1"]
    assert list(par.dimensions[1].ticktext) == ["adam", "sgd"]
    assert list(par.dimensions[2].values) == [0.6, 0.8, 0.7]
    # one intermediate-values line per trial; the pruned one is dotted and stops early
    lines = d[view._par_index + 1:]
    assert [tr.name for tr in lines] == ["trial 0", "trial 1", "trial 2", "trial 3"]
    assert len(lines[2].x) == 2 and lines[2].line.dash == "dot"
    assert "best: trial 1 (top1 0.8)" in view._header.value and "1 pruned" in view._header.value
    assert view._table.value.count("<tr") == 5


def test_two_objectives_show_the_pareto_front(frontend):
    bus = ev.EventBus()
    view = StudyView(bus, directions=["maximize", "minimize"], objectives=["mAP", "latency_ms"])
    pts = [(0.90, 10.0), (0.85, 5.0), (0.80, 6.0), (0.95, 20.0)]
    for n, (acc, lat) in enumerate(pts):
        params = {"depth": n + 1}
        bus.emit(ev.TRIAL_START, study="nas", trial=n, params=params)
        bus.emit(ev.TRIAL_COMPLETE, study="nas", trial=n, values=[acc, lat], params=params, state="complete")
    assert view.history.best_trials() == [0, 1, 3]
    front = view.figure.data[3]
    assert list(front.x) == [0.85, 0.90, 0.95] and list(front.y) == [5.0, 10.0, 20.0]
    assert view.figure.layout.yaxis2.title.text == "latency_ms"
    assert "Pareto front: trials 0, 1, 3" in view._header.value


def test_bad_direction_is_a_config_error():
    with pytest.raises(ConfigError, match="directions\\[0\\].*'maximise' is not a direction"):
        StudyView(directions=["maximise"])
    with pytest.raises(ConfigError, match="objectives"):
        StudyView(directions=["maximize", "minimize"], objectives=["only one"])


def test_replay_and_static_form(frontend):
    bus = ev.EventBus()
    rec = ev.Recorder(bus)
    _single_objective_study(bus)
    view = StudyView.from_events(rec.events, directions=["maximize"], objectives=["top1"])
    assert view.history.best_trials() == [1]
    bundle = view._repr_mimebundle_()
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")
    assert "<img" in bundle["text/html"] and "tango-study-table" in bundle["text/html"]
    assert len(view.figure._widget_data) == len(view.figure.data)
