"""The HTTP API's client: the work-queue operations of `clawnsole serve`, returning the CLI's JSON objects."""

from __future__ import annotations

from clawnsole.client.api import ApiClient, ApiUnavailable

__all__ = ["ApiClient", "ApiUnavailable"]
