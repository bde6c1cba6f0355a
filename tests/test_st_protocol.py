"""The headless Streamlit client of the load test (benchmarks/st_protocol.py).

Fast tests fold hand-made ForwardMsgs into the client's page model; one slow test speaks the protocol
to the real app (tiny checkpoints) and checks that the actions the load test times really act.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamlit.proto.BackMsg_pb2 import BackMsg  # noqa: E402
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg  # noqa: E402

from app.text import md  # noqa: E402
from benchmarks.st_protocol import (  # noqa: E402
    ProtocolError, RunResult, StreamlitClient, _http_get_size, button_press, card_names, string_choice)


def _delta(path, fill) -> ForwardMsg:
    msg = ForwardMsg()
    msg.metadata.delta_path.extend(path)
    fill(msg.delta)
    return msg


def _new_session(run_id: str) -> ForwardMsg:
    msg = ForwardMsg()
    msg.new_session.page_script_hash = "page-hash"
    msg.metadata.run.script_run_id = run_id
    return msg


def _card(tag: str, name: str) -> str:
    return f'<span class="apinet-tag apinet-{tag.lower()}">{tag}</span> **{md(name)}**'


def test_card_names_undo_the_apps_markdown_escaping():
    hostile = "Red-crowned Finch_[x](http://a.b) <b>&"
    bodies = ["# title", _card("A", hostile), _card("B", "Golden-crowned Finch"), "**not a card**"]
    assert card_names(bodies) == {"a": hostile, "b": "Golden-crowned Finch"}
    assert card_names(["plain text"]) == {}


def test_client_state_carries_query_string_page_hash_and_widgets():
    client = StreamlitClient("http://127.0.0.1:8501", "?a=x&cmap=magma")
    client.page_script_hash = "abc"
    msg = BackMsg()
    msg.ParseFromString(client.client_state_msg([button_press("$$ID-1-btn_random"),
                                                 string_choice("$$ID-2-cmap", "plasma")]).SerializeToString())
    state = msg.rerun_script
    assert msg.WhichOneof("type") == "rerun_script"
    assert (state.query_string, state.page_script_hash) == ("a=x&cmap=magma", "abc")
    assert list(state.cached_message_hashes) == []  # nothing cached yet
    widgets = {w.id: w for w in state.widget_states.widgets}
    assert widgets["$$ID-1-btn_random"].WhichOneof("value") == "trigger_value"
    assert widgets["$$ID-1-btn_random"].trigger_value is True
    assert widgets["$$ID-2-cmap"].string_value == "plasma"
    assert state.context_info.url == "http://127.0.0.1:8501/?a=x&cmap=magma"


def test_page_model_finds_widgets_tabs_cards_errors_and_drops_stale_elements():
    client = StreamlitClient("http://127.0.0.1:8501", fetch_media=False)
    result = RunResult(0.0, -1)
    msgs = [
        _new_session("run-1"),
        _delta([1, 6], lambda d: (setattr(d.new_element.selectbox, "id", "$$ID-9f-cmap"),
                                  d.new_element.selectbox.options.extend(["viridis", "magma"]))),
        _delta([0, 3, 2, 0, 1, 0], lambda d: setattr(d.new_element.button, "id", "$$ID-77-btn_random")),
        _delta([0, 3, 0, 1, 0], lambda d: setattr(d.new_element.markdown, "body", _card("A", "Spectacled Finch"))),
        _delta([0, 6], lambda d: (setattr(d.add_block.tab_container, "id", "$$ID-5-tab_label"),
                                  setattr(d.add_block.tab_container, "default_tab_index", 1))),
        _delta([0, 6, 0], lambda d: setattr(d.add_block.tab, "label", "Walk-through")),
        _delta([0, 6, 1], lambda d: setattr(d.add_block.tab, "label", "Grad-CAM")),
        _delta([0, 7], lambda d: (setattr(d.new_element.exception, "type", "KeyError"),
                                  setattr(d.new_element.exception, "message", "'a'"))),
        _delta([0, 8], lambda d: (setattr(d.new_element.alert, "body", "Could not explain"),
                                  setattr(d.new_element.alert, "format", 1))),
    ]
    page_info = ForwardMsg()
    page_info.page_info_changed.query_string = "a=test_0024&b=test_0021&cmap=magma"
    msgs.append(page_info)
    client.elements[(0, 99)] = ("markdown", None)  # drawn by an older run, not by this one
    for msg in msgs:
        client._fold(msg.SerializeToString(), result)
    client._drop_stale()

    assert client.page_script_hash == "page-hash"
    assert client.widget_id("cmap") == "$$ID-9f-cmap"
    assert client.widget_id("btn_random") == "$$ID-77-btn_random"
    assert client.widget_id("random") is None  # a key is matched whole, not as a suffix of another
    assert list(client.element("cmap").options) == ["viridis", "magma"]
    assert client.tab_labels == ["Walk-through", "Grad-CAM"]
    assert client.element("tab_label").default_tab_index == 1
    assert (client.query("a"), client.query("cmap"), client.query("k")) == ("test_0024", "magma", None)
    assert card_names(result.markdown) == {"a": "Spectacled Finch"}
    assert result.exceptions == ["KeyError: 'a'"]
    assert result.error_alerts == ["Could not explain"]
    assert result.messages == len(msgs)
    assert (0, 99) not in client.elements and (0, 6, 1) in client.elements


def _cacheable(path, body: str, run_id_hash: str) -> ForwardMsg:
    msg = _delta(path, lambda d: setattr(d.new_element.markdown, "body", body))
    msg.hash, msg.metadata.cacheable = run_id_hash, True
    return msg


def test_cache_like_the_frontend_reports_resolves_and_expires():
    client = StreamlitClient("http://127.0.0.1:1", fetch_media=False)
    client._max_cache_age = 1
    finished = ForwardMsg()
    finished.script_finished = ForwardMsg.FINISHED_SUCCESSFULLY
    client._fold(_cacheable([0, 1], "big chart", "h1").SerializeToString(), RunResult(0.0, -1))
    client._fold(_delta([0, 2], lambda d: setattr(d.new_element.markdown, "body", "small")).SerializeToString(),
                 RunResult(0.0, -1))
    assert list(client.client_state_msg().rerun_script.cached_message_hashes) == ["h1"]

    ref = ForwardMsg()
    ref.ref_hash = "h1"
    ref.metadata.delta_path.extend([0, 5])  # the same element drawn elsewhere this time
    result = RunResult(0.0, -1)
    msg = client._fold(ref.SerializeToString(), result)
    assert msg.delta.new_element.markdown.body == "big chart" and list(msg.metadata.delta_path) == [0, 5]
    assert result.markdown == ["big chart"] and client.elements[(0, 5)][0] == "markdown"
    assert client.cache_hits == 1

    for _ in range(2):  # unused for more than max_cached_message_age finished runs: expired
        client._fold(finished.SerializeToString(), RunResult(0.0, -1))
    assert client.cache == {}
    with pytest.raises(ProtocolError, match="uncached"):
        client._fold(ref.SerializeToString(), RunResult(0.0, -1))
    early = ForwardMsg()
    early.script_finished = ForwardMsg.FINISHED_EARLY_FOR_RERUN
    client._fold(_cacheable([0, 1], "big chart", "h1").SerializeToString(), RunResult(0.0, -1))
    for _ in range(3):  # runs stopped for a rerun do not age the cache (as in the frontend)
        client._fold(early.SerializeToString(), RunResult(0.0, -1))
    assert list(client.cache) == ["h1"]

    no_cache = StreamlitClient("http://127.0.0.1:1", fetch_media=False, use_cache=False)
    no_cache._fold(_cacheable([0, 1], "big chart", "h1").SerializeToString(), RunResult(0.0, -1))
    assert list(no_cache.client_state_msg().rerun_script.cached_message_hashes) == []


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from tests.app_checkpoints import make_app_assets
    from tests.e2e.server import serve_assets

    assets = make_app_assets(tmp_path_factory.mktemp("app-assets"))
    with pytest.MonkeyPatch.context() as mp:  # cache messages from 200 bytes: references come every run
        mp.setenv("STREAMLIT_GLOBAL_MIN_CACHED_MESSAGE_SIZE", "200")
        for url in serve_assets(tmp_path_factory, assets):
            yield url, assets["gallery"]


@pytest.mark.slow
def test_protocol_session_against_the_app(app_url):
    url, gallery_dir = app_url
    gallery = json.loads((gallery_dir / "gallery.json").read_text())
    labels = {Path(e["file"]).stem: gallery["classes"][e["label"]] for e in gallery["images"]}

    async def session():
        client = StreamlitClient(url)
        await client.connect()
        try:
            runs = [await client.rerun(timeout=120)]
            first = dict(a=client.query("a"), b=client.query("b"), cmap=client.query("cmap"))
            runs.append(await client.rerun([button_press(client.widget_id("btn_swap"))]))
            swapped = dict(a=client.query("a"), b=client.query("b"))
            other_tab = client.tab_labels[-1]
            runs.append(await client.rerun([string_choice(client.widget_id("tab_label"), other_tab)]))
            tab_index = client.element("tab_label").default_tab_index
            new_cmap = next(c for c in client.element("cmap").options if c != first["cmap"])
            hits = client.cache_hits
            runs.append(await client.rerun([string_choice(client.element("cmap").id, new_cmap)]))
            assert client.cache_hits > hits  # unchanged elements came as ref_hash and were resolved
            return client, runs, first, swapped, other_tab, tab_index, new_cmap
        finally:
            await client.close()

    client, runs, first, swapped, other_tab, tab_index, new_cmap = asyncio.run(session())
    assert [r.status for r in runs] == [0, 0, 0, 0]
    assert all(not r.exceptions and not r.error_alerts for r in runs)
    assert all(0 < r.seconds < 120 and r.messages > 10 for r in runs)
    assert first["a"] != first["b"] and (swapped["a"], swapped["b"]) == (first["b"], first["a"])
    assert card_names(runs[1].markdown) == {"a": labels[swapped["a"]], "b": labels[swapped["b"]]}
    assert card_names(runs[3].markdown) == card_names(runs[1].markdown)  # cards intact through the cache
    assert client.tab_labels[tab_index] == other_tab and tab_index > 0
    assert client.query("cmap") == new_cmap
    assert client.media_bytes > 1000 and client.media_failures == 0  # the images came from /media/
    with pytest.raises(ProtocolError, match="404"):  # a missing image is a failure, not bytes
        asyncio.run(_http_get_size(url, "/media/" + "0" * 56 + ".png"))
