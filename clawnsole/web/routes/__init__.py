"""The route modules of the API: each defines `router` (a FastAPI APIRouter) and is found by `create_app`."""
