"""An SSE client for the tests of `GET /api/v1/events`: `stream(api, secret, ...)` opens one, `Stream.next()`
reads its next event (ids as the text the server sent)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.web.conftest import Api


class Stream:
    """The events of one open SSE response, parsed as they arrive."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.iter_lines()

    def next(self) -> dict[str, Any]:
        """The next event (pings skipped): its id (text), event name and decoded data."""
        fields: dict[str, str] = {}
        for line in self._lines:
            if line.startswith(":"):
                continue
            if line == "":
                if "data" in fields:
                    return {"id": fields["id"], "event": fields["event"], "data": json.loads(fields["data"])}
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        raise AssertionError("the stream ended")

    def take(self, count: int) -> list[dict[str, Any]]:
        return [self.next() for _ in range(count)]


@contextmanager
def stream(
    api: Api, secret: str, *, last_event_id: str | int | None = None, kinds: str | None = None
) -> Iterator[Stream]:
    headers = {"Authorization": f"Bearer {secret}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    params = {} if kinds is None else {"kinds": kinds}
    # The read timeout bounds every wait for an event: a missing one fails the test instead of hanging it.
    with (
        httpx.Client(base_url=api.url, timeout=httpx.Timeout(10, read=10)) as http,
        http.stream("GET", "/api/v1/events", headers=headers, params=params) as response,
    ):
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Stream(response)
