"""Headless widget testing: a comm that records what the kernel sends, and a fake front-end
that sends what a browser would (state updates, button clicks, custom messages), the way
ipywidgets' own tests do."""

from __future__ import annotations

from typing import Any

import comm
import pytest
from comm.base_comm import BaseComm


class RecordingComm(BaseComm):
    """A comm whose messages to the front-end are kept in ``sent`` instead of going to a kernel."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.sent: list[tuple[str, dict, list]] = []
        super().__init__(*args, **kwargs)

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        self.sent.append((msg_type, data or {}, list(buffers or [])))


class FakeFrontend:
    """Messages a browser would send to a widget, and what the kernel sent back."""

    @staticmethod
    def set(widget, **state: Any) -> None:
        """The browser changed synced traits (a slider moved, a text was typed)."""
        widget._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}},
                            "buffers": []})

    @staticmethod
    def click(button) -> None:
        widget = button
        widget._handle_msg({"content": {"data": {"method": "custom", "content": {"event": "click"}}}, "buffers": []})

    @staticmethod
    def send(widget, content: dict, buffers: list | None = None) -> None:
        """A custom message from the widget's front-end code (``model.send(content)``)."""
        widget._handle_msg({"content": {"data": {"method": "custom", "content": content}},
                            "buffers": list(buffers or [])})

    @staticmethod
    def sent(widget) -> list[tuple[str, dict, list]]:
        return widget.comm.sent

    @staticmethod
    def updates(widget) -> list[dict]:
        """State updates the kernel pushed for this widget (``method == 'update'``)."""
        return [d["state"] for kind, d, _ in widget.comm.sent if kind == "comm_msg" and d.get("method") == "update"]

    @staticmethod
    def customs(widget) -> list[dict]:
        return [d["content"] for kind, d, _ in widget.comm.sent if kind == "comm_msg" and d.get("method") == "custom"]


@pytest.fixture
def frontend(monkeypatch) -> FakeFrontend:
    monkeypatch.setattr(comm, "create_comm", lambda *a, **kw: RecordingComm(*a, **kw))
    return FakeFrontend()
