"""The model picker: recommendation, cards from the registry, override written to the project."""

from __future__ import annotations

import html

import pytest

from tango_core import events as ev
from tango_core.errors import ConfigError, UnknownNameError
from tango_core.models import list_models, model_info
from tango_core.project import Project
from tango_core.selection import recommend
from tango_widgets import ModelPicker

pytestmark = pytest.mark.unit


def _card_button(picker, name):
    return picker._buttons[name]


def test_recommendation_reason_and_cards_from_registry(frontend, project_factory):
    project = project_factory(task="classification", target="x86-cpu", classes=["a", "b", "c"])
    picker = ModelPicker(project)
    rec = recommend("classification", 3, target="x86-cpu")
    assert picker.recommendation == rec and picker.value == rec.model
    assert rec.reason in html.unescape(picker._header.value)
    assert list(picker._cards) == [rec.model, *rec.alternatives]
    info = model_info(rec.model)
    card = picker._cards[rec.model].value
    assert "★ recommended" in card and "2px solid" in card  # the selected card is highlighted
    assert f"{round(info['params'] / 1000)}k parameters" in card
    assert f"at {info['input_size']}×{info['input_size']}" in card


def test_override_by_clicking_a_card_is_saved_to_the_project(frontend, project_factory):
    project = project_factory(task="classification", target="x86-cpu", classes=["a", "b", "c"])
    seen = []
    project.events.subscribe(ev.STAGE_STATUS, seen.append)
    picker = ModelPicker(project)
    confirmed = []
    picker.on_apply(confirmed.append)
    other = picker.recommendation.alternatives[1]
    frontend.click(_card_button(picker, other))
    assert picker.value == other
    assert "2px solid" in picker._cards[other].value and "2px solid" not in picker._cards[picker.recommendation.model].value
    assert picker._use.description == f"Use {other}"
    frontend.click(picker._use)
    assert project.config.model == other
    reopened = Project.open(project.root)
    assert reopened.config.model == other
    st = reopened.stages["model_selection"]
    assert st.status == "completed" and st.info["recommended"] == picker.recommendation.model
    assert st.info["reason"].startswith(f"chosen by the user instead of {picker.recommendation.model}")
    assert confirmed[0].model == other and confirmed[0].overridden_from == picker.recommendation.model
    assert [(e["stage"], e["status"]) for e in seen] == [("model_selection", "completed")]
    assert "saved" in picker._status.value


def test_accepting_the_recommendation_keeps_its_reason(frontend, project_factory):
    project = project_factory(task="classification", target="x86-cpu", classes=["a", "b"])
    picker = ModelPicker(project)
    frontend.click(picker._use)
    assert project.config.model == picker.recommendation.model
    assert project.stages["model_selection"].info["reason"] == picker.recommendation.reason


def test_other_registered_models_from_the_dropdown(frontend, project_factory, monkeypatch):
    # a model the user registered themselves is not in the rule table, but can be picked
    from tango_core.models import _registry

    monkeypatch.setitem(_registry._MODELS._entries, "my-net", lambda **kw: None)
    monkeypatch.setitem(_registry._MODELS._meta, "my-net", dict(
        task="classification", family="mine", size=1, input_size=32, num_classes=10, params=1234, flops=5678,
        source="a test"))
    project = project_factory(task="classification", target="x86-cpu", classes=[f"c{i}" for i in range(20)])
    picker = ModelPicker(project)
    options = [o for _, o in picker._other.options if o]
    assert options and set(options) == set(list_models(task="classification")) - set(picker._cards)
    frontend.set(picker._other, index=1)  # the browser picks the first real entry
    assert picker.value == options[0]
    assert options == ["my-net"]
    frontend.click(picker._use)
    assert project.config.model == "my-net"
    assert project.stages["model_selection"].info["reason"].startswith("chosen by the user")


def test_reopened_picker_shows_the_saved_choice(frontend, project_factory):
    project = project_factory(task="classification", target="x86-cpu", classes=["a", "b"])
    picker = ModelPicker(project)
    choice = picker.recommendation.alternatives[0]
    picker.select(choice)
    picker.apply()
    again = ModelPicker(Project.open(project.root))
    assert again.value == choice


def test_unregistered_models_cannot_be_selected(frontend):
    picker = ModelPicker(task="detection", num_classes=3, target="jetson-nano")
    registered = set(list_models())
    for name, button in picker._buttons.items():
        assert button.disabled == (name not in registered)
        if name not in registered:
            assert "not available" in picker._cards[name].value
    with pytest.raises(UnknownNameError, match="unknown model 'resnet-cifar21'"):
        picker.select("resnet-cifar21")


def test_no_classes_is_an_actionable_error(project_factory):
    project = project_factory(task="classification")
    with pytest.raises(ConfigError, match="project.classes.*no classes yet.*label the data first"):
        ModelPicker(project)


def test_static_html_lists_the_cards(frontend, project_factory):
    project = project_factory(task="classification", target="x86-cpu", classes=["a", "b"])
    picker = ModelPicker(project)
    picker.apply()
    bundle = picker._repr_mimebundle_()
    page = bundle["text/html"]
    assert "application/vnd.jupyter.widget-view+json" in bundle
    for name in picker._cards:
        assert name in page
    assert f"Chosen: <b>{picker.recommendation.model}</b>" in page
