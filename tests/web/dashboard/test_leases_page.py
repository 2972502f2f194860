"""The leases and workers page: who holds what, for how long, with its progress; force-release (operate)
puts the item back to pending; workers alive and stopped, from real `worker-loop` processes."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from clawnsole.incidents.api import Incidents
from clawnsole.queue import WorkQueue
from clawnsole.tokens.api import Audit
from tests.web.conftest import Api, TokenMaker
from tests.web.dashboard.conftest import SignIn
from tests.web.dashboard.helpers import hold, signed_in_client, worker_loop
from tests.worker.helpers import wait_for


def test_force_releasing_a_held_lease_puts_the_item_back_to_pending(
    api: Api, sign_in: SignIn, token: TokenMaker, web_wq: WorkQueue, queue: str, shot: Any
) -> None:
    render = f"render-{queue[2:6]}"
    busy, lease = hold(web_wq, render, "invoice batch 2026-11", "render-host-3:4121")
    web_wq.progress(busy, agent="render-host-3:4121", lease_token=lease, note="page 12 of 40", percent=30)
    stuck, _ = hold(web_wq, render, "quarterly report", "render-host-9:88", lease="1s")
    incidents = Incidents(web_wq)
    mail = f"mail-{queue[2:6]}"
    with (
        worker_loop(api.db_url, mail, "mail-worker-1"),
        worker_loop(api.db_url, mail, "mail-worker-old", "--max-runtime", "0.5") as leaving,
    ):
        wait_for(lambda: leaving.poll() is not None, timeout=30, what="the short-lived worker to stop")
        assert leaving.returncode == 0
        states = lambda: {w.agent: w.gone for w in incidents.workers(include_stopped=True)}  # noqa: E731
        wait_for(lambda: states().get("mail-worker-1", "?") is None, timeout=30, what="the worker to register")
        assert states()["mail-worker-old"] == "stopped"
        wait_for(
            lambda: any(x.id == stuck and x.lease_left_seconds < 0 for x in incidents.leases()),
            what="the short lease to expire",
        )

        page = sign_in(token("lease-operator", ["operate"]))
        page.goto("/leases")
        row = page.locator(f"#lease-{busy}")
        expect(row).to_contain_text("render-host-3:4121")
        expect(row).to_contain_text("page 12 of 40")
        expect(row.locator("progress")).to_have_attribute("value", "30")
        expect(page.locator(f"#lease-{stuck}")).to_contain_text("expired")
        expect(page.locator("#worker-mail-worker-1")).to_contain_text("alive")
        expect(page.locator("#worker-mail-worker-old")).to_contain_text("stopped")
        expect(page.locator("#worker-mail-worker-1")).to_contain_text(mail)
        shot(page, "leases")

    row.locator("button:has-text('Force release')").click()
    expect(page.locator(".flash")).to_contain_text(f"took the lease on item {busy} from render-host-3:4121 back")
    expect(page.locator(f"#lease-{busy}")).to_have_count(0)
    item = web_wq.get(busy)
    assert (item.status, item.claimed_by, item.attempts) == ("pending", None, 0)
    [released] = [e for e in web_wq.history(busy) if e.event == "released"]
    assert released.agent == "lease-operator"


def test_a_read_only_token_sees_no_release_button_and_its_forged_release_is_refused(
    api: Api, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    held, _ = hold(web_wq, queue, "nightly export", "export-host:7")
    with signed_in_client(api, token("lease-reader", ["read"])) as (http, csrf):
        shown = http.get("/leases")
        live = http.get("/leases", headers={"HX-Request": "true", "HX-Target": "live"})
        forged = http.post(f"/leases/{held}/release", data={"csrf": csrf})
    assert f'id="lease-{held}"' in shown.text and "Force release" not in shown.text
    assert f'id="lease-{held}"' in live.text and "<html" not in live.text, "the live region refreshes by itself"
    assert forged.status_code == 403
    assert web_wq.get(held).status == "claimed"
    [row] = [r for r in Audit(web_wq).list(token="lease-reader") if r.action == "lease.release"]
    assert (row.outcome, row.target) == ("forbidden", f"item {held}")


def test_a_release_without_the_csrf_token_is_refused_and_the_lease_stays(
    api: Api, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    held, _ = hold(web_wq, queue, "nightly export", "export-host:8")
    with signed_in_client(api, token("lease-no-csrf", ["operate"])) as (http, _):
        refused = http.post(f"/leases/{held}/release", data={})
    assert refused.status_code == 403 and "CSRF" in refused.text
    assert web_wq.get(held).status == "claimed"
