"""A headless Streamlit client: one browser tab's conversation with ``streamlit run``, without rendering.

Streamlit 1.67's frontend asks ``/_stcore/health`` and ``/_stcore/host-config`` and then talks to the
server over one websocket, ``ws://HOST:PORT/_stcore/stream`` (Starlette server,
``streamlit/web/server/starlette/starlette_websocket.py``):

* the handshake offers the subprotocol ``streamlit`` (the header's later, optional entries carry an
  XSRF token and a session id to resume; a fresh tab sends neither) with a same-origin ``Origin``;
* every frame is binary protobuf: the client sends ``BackMsg``, the server ``ForwardMsg`` (one per
  frame, ``runtime_util.serialize_forward_msg``);
* a page load and every interaction is a ``BackMsg.rerun_script`` carrying a ``ClientState``: the
  page's query string, the widget states (``WidgetStates``: id plus one typed value — a button press
  is ``trigger_value``, a selectbox the chosen option's formatted text as ``string_value``, the
  stateful ``st.tabs`` the open tab's label as ``string_value``), the page's script hash and
  ``cached_message_hashes``;
* the server answers with ``new_session`` (a new ``script_run_id`` in the metadata), deltas placed by
  ``metadata.delta_path`` (``new_element`` / ``add_block`` / ``new_transient``), ``page_info_changed``
  when ``st.query_params`` changed the URL, and ``script_finished`` (0 success, 1 compile error, 2
  stopped early for a rerun, 3 fragment run).

Like the frontend (``ForwardMessageCache``), the client keeps the messages the server marks
``cacheable`` (``new_element`` deltas of at least ``global.minCachedMessageSize``), reports their
hashes in every ``ClientState.cached_message_hashes``, resolves the server's ``ref_hash`` references
from them, and expires an entry once more than ``NewSession.config.max_cached_message_age`` runs have
finished (any status but "early for rerun") since it was last used; ``use_cache=False`` claims no
cache, so every message comes in full. Widgets the client does not touch are not re-sent (the server
keeps their last values); a browser re-sends every widget's value. Images are fetched over HTTP from
their ``/media/...`` URLs once per session, like a browser with a cache.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
import urllib.parse
from dataclasses import dataclass, field

from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

__all__ = ["ProtocolError", "RunResult", "StreamlitClient", "button_press", "card_names", "string_choice"]

FINISHED_SUCCESSFULLY = ForwardMsg.FINISHED_SUCCESSFULLY
FINISHED_EARLY_FOR_RERUN = ForwardMsg.FINISHED_EARLY_FOR_RERUN
_CARD = re.compile(r'<span class="apinet-tag apinet-([ab])">[AB]</span>\s*\*\*(.*?)\*\*\s*$', re.S)


class ProtocolError(RuntimeError):
    """The server closed the socket or sent something this client does not understand."""


def _unmarkdown(text: str) -> str:
    """Undo ``app.text.md``: backslash escapes, HTML entities, the word joiner in bare URLs."""
    return html.unescape(re.sub(r"\\(.)", r"\1", text)).replace("\u2060", "")


def card_names(markdown_bodies: list[str]) -> dict[str, str]:
    """The class name on each image card (``{"a": ..., "b": ...}``) among the given Markdown bodies."""
    names = {}
    for body in markdown_bodies:
        match = _CARD.search(body)
        if match:
            names[match.group(1)] = _unmarkdown(match.group(2))
    return names


def button_press(widget_id: str) -> WidgetState:
    return WidgetState(id=widget_id, trigger_value=True)


def string_choice(widget_id: str, value: str) -> WidgetState:
    """A selectbox option (its formatted text) or the label of a stateful ``st.tabs``."""
    return WidgetState(id=widget_id, string_value=value)


@dataclass
class RunResult:
    """One script run as the client saw it."""

    seconds: float  # send to script_finished
    status: int
    exceptions: list[str] = field(default_factory=list)  # Element.exception: tracebacks on the page
    error_alerts: list[str] = field(default_factory=list)  # st.error boxes (the app's own messages)
    markdown: list[str] = field(default_factory=list)  # Markdown bodies drawn by this run
    messages: int = 0
    bytes: int = 0


class StreamlitClient:
    """One session: ``await connect()``, ``await rerun(...)`` per interaction, ``await close()``.

    After each run the client knows the widgets drawn (:meth:`widget_id` by user key, :meth:`element`),
    the tab labels, the page's query string (``query``) as the browser's address bar would hold it.
    """

    def __init__(self, base_url: str, query_string: str = "", *, fetch_media: bool = True, use_cache: bool = True):
        self.base_url = base_url.rstrip("/")
        self.query_string = query_string.lstrip("?")
        self.fetch_media = fetch_media
        self.use_cache = use_cache
        self.cache: dict[str, list] = {}  # hash -> [serialized ForwardMsg, run count when last used]
        self.cache_hits = 0
        self._runs_finished = 0
        self._max_cache_age = 2  # NewSession.config.max_cached_message_age replaces it
        self.page_script_hash = ""
        self.elements: dict[tuple[int, ...], tuple[str, object]] = {}  # delta path -> (type, proto)
        self.tab_labels: list[str] = []
        self.media_fetched: set[str] = set()
        self.media_bytes = 0
        self.media_failures = 0
        self._ws = None
        self._inbox: asyncio.Queue = asyncio.Queue()
        self._reader: asyncio.Task | None = None
        self._pending_media: list[str] = []  # image URLs drawn by the current run
        self._touched: set[tuple[int, ...]] | None = None  # delta paths drawn by the current run

    # -- connection -------------------------------------------------------------------------------

    async def connect(self, timeout: float = 30.0) -> None:
        from websockets.asyncio.client import connect

        for path in ("/_stcore/health", "/_stcore/host-config"):  # what the frontend asks before the socket
            await asyncio.wait_for(_http_get_size(self.base_url, path), timeout)
        ws_url = "ws" + self.base_url[len("http"):] + "/_stcore/stream"
        self._ws = await connect(ws_url, subprotocols=["streamlit"], origin=self.base_url, max_size=None,
                                 open_timeout=timeout, ping_interval=None, proxy=None)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for frame in self._ws:
                await self._inbox.put(frame)
        except Exception as exc:  # a closed or broken socket reaches the waiting run
            await self._inbox.put(exc)
        else:
            await self._inbox.put(ProtocolError("server closed the websocket"))

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass

    # -- state ------------------------------------------------------------------------------------

    def widget_id(self, key: str) -> str | None:
        """The element id of the widget with user key ``key`` (Streamlit ids end in ``-<key>``)."""
        for kind, proto in self.elements.values():
            wid = getattr(proto, "id", "")
            if wid and wid.endswith("-" + key):
                return wid
        return None

    def element(self, key: str):
        wid = self.widget_id(key)
        return next((p for _, p in self.elements.values() if getattr(p, "id", "") == wid), None) if wid else None

    def query(self, key: str) -> str | None:
        values = urllib.parse.parse_qs(self.query_string).get(key)
        return values[0] if values else None

    def client_state_msg(self, widgets: list[WidgetState] = ()) -> BackMsg:
        msg = BackMsg()
        state = msg.rerun_script
        state.query_string = self.query_string
        state.page_script_hash = self.page_script_hash
        state.cached_message_hashes.extend(self.cache)
        state.widget_states.widgets.extend(widgets)
        info = state.context_info
        info.timezone, info.timezone_offset, info.locale = "UTC", 0, "en-US"
        info.url = self.base_url + "/" + (f"?{self.query_string}" if self.query_string else "")
        info.is_embedded, info.color_scheme = False, "light"
        return msg

    def apply(self, msg: ForwardMsg, result: RunResult) -> None:
        """Fold one ForwardMsg into the page model and the current run's result."""
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            self.page_script_hash = msg.new_session.page_script_hash or self.page_script_hash
            if msg.new_session.HasField("config"):
                self._max_cache_age = msg.new_session.config.max_cached_message_age
        elif kind == "page_info_changed":
            self.query_string = msg.page_info_changed.query_string
        elif kind == "script_finished" and msg.script_finished != FINISHED_EARLY_FOR_RERUN:
            self._runs_finished += 1
            self.cache = {h: e for h, e in self.cache.items() if self._runs_finished - e[1] <= self._max_cache_age}
        elif kind == "delta":
            delta, path = msg.delta, tuple(msg.metadata.delta_path)
            which = delta.WhichOneof("type")
            if which == "new_element":
                etype = delta.new_element.WhichOneof("type")
                proto = getattr(delta.new_element, etype) if etype else None
                self.elements[path] = (etype, proto)
                if etype == "exception":
                    result.exceptions.append(f"{proto.type}: {proto.message}"[:300])
                elif etype == "alert" and proto.format == Alert.ERROR:
                    result.error_alerts.append(proto.body[:300])
                elif etype == "markdown":
                    result.markdown.append(proto.body)
                elif etype == "imgs" and self.fetch_media:
                    self._pending_media.extend(i.url for i in proto.imgs if i.url.startswith("/media/"))
            elif which == "add_block":
                btype = delta.add_block.WhichOneof("type")
                proto = getattr(delta.add_block, btype) if btype else None
                self.elements[path] = (btype, proto)
                if btype == "tab_container":
                    self.tab_labels = []
                elif btype == "tab":
                    self.tab_labels.append(proto.label)

    # -- one interaction --------------------------------------------------------------------------

    async def rerun(self, widgets: list[WidgetState] = (), timeout: float = 90.0) -> RunResult:
        """Send a rerun (a page load when ``widgets`` is empty) and read until its script finishes.

        Raises ``TimeoutError`` when no run finished within ``timeout`` seconds and
        :class:`ProtocolError` when the socket closed."""
        while not self._inbox.empty():  # anything left from before (late messages of an old run)
            self._fold(self._inbox.get_nowait(), RunResult(0.0, -1))
        self._pending_media = []
        result = RunResult(0.0, -1)
        t0 = time.monotonic()
        await self._ws.send(self.client_state_msg(widgets).SerializeToString())
        run_id = None
        deadline = t0 + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no script_finished within {timeout:.0f} s")
            try:
                frame = await asyncio.wait_for(self._inbox.get(), left)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no script_finished within {timeout:.0f} s") from None
            msg = self._fold(frame, result)
            kind = msg.WhichOneof("type")
            if kind == "new_session":
                run_id = msg.metadata.run.script_run_id
                result = RunResult(0.0, -1, messages=result.messages, bytes=result.bytes)  # this run only
            elif kind == "script_finished" and run_id is not None:
                finished_id = msg.metadata.run.script_run_id
                if (not finished_id or finished_id == run_id) and msg.script_finished != FINISHED_EARLY_FOR_RERUN:
                    result.seconds, result.status = time.monotonic() - t0, msg.script_finished
                    break
        if result.status == FINISHED_SUCCESSFULLY:
            self._drop_stale()
        if self.fetch_media and self._pending_media:
            await self._fetch_media(self._pending_media)
        return result

    def _fold(self, frame, result: RunResult) -> ForwardMsg:
        if isinstance(frame, BaseException):
            raise ProtocolError(f"websocket: {type(frame).__name__}: {frame}") from frame
        msg = ForwardMsg()
        msg.ParseFromString(frame)
        result.messages += 1
        result.bytes += len(frame)
        if msg.WhichOneof("type") == "ref_hash":  # a message this client said it holds
            entry = self.cache.get(msg.ref_hash)
            if entry is None:
                raise ProtocolError(f"server referred to uncached message {msg.ref_hash}")
            entry[1] = self._runs_finished
            self.cache_hits += 1
            cached = ForwardMsg()
            cached.ParseFromString(entry[0])
            cached.metadata.CopyFrom(msg.metadata)
            msg = cached
        elif self.use_cache and msg.metadata.cacheable and msg.hash:
            if msg.hash in self.cache:
                self.cache[msg.hash][1] = self._runs_finished
            else:
                self.cache[msg.hash] = [frame, self._runs_finished]
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            self._touched = set()
        elif kind == "delta" and self._touched is not None:
            self._touched.add(tuple(msg.metadata.delta_path))
        self.apply(msg, result)
        return msg

    def _drop_stale(self) -> None:
        """What the frontend does at the end of a successful run: elements this run did not draw go."""
        if self._touched is not None:
            self.elements = {p: e for p, e in self.elements.items() if p in self._touched}

    async def _fetch_media(self, urls: list[str]) -> None:
        new = [u for u in dict.fromkeys(urls) if u not in self.media_fetched]
        self.media_fetched.update(new)
        slots = asyncio.Semaphore(6)  # a browser opens at most 6 HTTP/1.1 connections per host

        async def get(url: str) -> int:
            async with slots:
                return await _http_get_size(self.base_url, url)

        sizes = await asyncio.gather(*(get(u) for u in new), return_exceptions=True)
        self.media_bytes += sum(s for s in sizes if isinstance(s, int))
        self.media_failures += sum(1 for s in sizes if not isinstance(s, int))


async def _http_get_size(base_url: str, path: str) -> int:
    """GET ``path`` (HTTP/1.1, connection closed after) and return the response's length in bytes;
    :class:`ProtocolError` unless the status is 200."""
    parsed = urllib.parse.urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {parsed.netloc}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        response = await reader.read()
        status = response.split(b"\r\n", 1)[0]
        if b" 200 " not in status + b" ":
            raise ProtocolError(f"GET {path}: {status.decode(errors='replace')}")
        return len(response)
    finally:
        writer.close()
