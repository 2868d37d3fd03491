"""uvicorn's httptools protocol, with a hang-up reaching every request of the connection.

uvicorn marks only the last request it has read as disconnected when the client hangs up.
With pipelined requests that is not the one being answered: that one's response is then
written to the closed transport, which uvloop refuses with a RuntimeError ("Exception in
ASGI application", a traceback). Here every request of the connection not yet answered is
marked, as uvicorn marks the last: its response is dropped quietly, and its scope says the
client went away (server.app.RequestLog logs it as 499).
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from server.endpoint import CLIENT_GONE


class HangUpAwareHttpToolsProtocol(HttpToolsProtocol):
    unanswered: tuple[RequestResponseCycle, ...] = ()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.cycle is not None and self.cycle not in self.unanswered:
            self.unanswered = (*(c for c in self.unanswered if not c.response_complete), self.cycle)

    def connection_lost(self, exc: Exception | None) -> None:
        for cycle in self.unanswered:
            if not cycle.response_complete:
                cycle.scope[CLIENT_GONE] = True  # type: ignore[literal-required]  # our key; uvicorn types its own
                cycle.disconnected = True
                cycle.message_event.set()
        self.unanswered = ()
        super().connection_lost(exc)
