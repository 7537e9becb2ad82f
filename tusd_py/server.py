"""uvicorn's httptools protocol, changed in one way: bytes that arrived are never dropped.

When a client disconnects, uvicorn answers the app's next `receive()` with
`http.disconnect` and throws away body bytes it had read from the socket but not yet
handed over. For an upload server those bytes are the point: this protocol hands them
to the app first (as a body message with `more_body`), then reports the disconnect.
Pass it to uvicorn as `http=TusHttpToolsProtocol` (or the import string
"tusd_py.server:TusHttpToolsProtocol") when serving the tus app yourself.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


class _KeepBodyCycle(RequestResponseCycle):
    async def receive(self) -> Any:
        if not (self.disconnected and self.body):
            message = await super().receive()
            if message["type"] != "http.disconnect" or not self.body:
                return message
        if self.response_complete:
            return {"type": "http.disconnect"}
        body = bytes(self.body)
        self.body = type(self.body)()
        return {"type": "http.request", "body": body, "more_body": True}


class TusHttpToolsProtocol(HttpToolsProtocol):
    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        # The cycle's task is created but has not run yet, so this takes effect from the
        # app's first receive(). Same fields, one overridden method.
        if type(self.cycle) is RequestResponseCycle:
            self.cycle.__class__ = _KeepBodyCycle
