"""The HTTP API served by `clawnsole serve` (extra `[web]`): `app.create_app` builds it; `auth` decides who a
request acts as; `errors` gives every failure one JSON shape; `routes/` holds the thin route modules.

Imported only by `clawnsole serve` and the tests: no other command pays for FastAPI.
"""
