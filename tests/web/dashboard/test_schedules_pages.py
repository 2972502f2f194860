"""The schedules pages in a real browser: the list (timing in words, next runs in the zone and in UTC, last
run), the form's live preview as you type, a bad cron refused beside its field with nothing saved, pause /
resume / run now / delete, and a read-only token that sees no buttons and whose forged POST is refused."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from clawnsole.errors import NotFound
from clawnsole.queue import WorkQueue
from clawnsole.schedules.api import Schedules
from clawnsole.tokens.api import Audit
from tests.web.conftest import Api, TokenMaker
from tests.web.dashboard.conftest import SignIn

SECRET_PLAN = "Review every open pull request and post a summary in #dev"


def _add(wq: WorkQueue, name: str, queue: str, **options: Any) -> str:
    defaults: dict[str, Any] = {"title": "Review open PRs", "cron": "0 * * * *", "instructions": SECRET_PLAN}
    Schedules(wq).add(name, queue=queue, **(defaults | options))
    return name


def _upcoming(page: Any) -> list[str]:
    return [t.strip() for t in page.locator("table.sched-upcoming tbody tr td:nth-child(2)").all_inner_texts()]


def test_the_list_shows_each_timing_in_words_its_next_runs_and_its_last_run(
    sign_in: SignIn, token: TokenMaker, web_wq: WorkQueue, queue: str, shot: Any
) -> None:
    schedules = Schedules(web_wq)
    # Names a person would give (this is the module's first test, and the screenshot of the list).
    _add(web_wq, "standup-notes", queue, title="Prepare the stand-up notes", cron="0 9 * * 1-5",
         timezone="Europe/Berlin")  # fmt: skip
    _add(web_wq, "issue-triage", queue, title="Triage new issues", cron=None, every="15m")
    _add(web_wq, "weekly-digest", queue, title="Weekly digest", cron="30 17 * * 5", timezone="America/New_York",
         paused=True)  # fmt: skip
    made = schedules.run_now("issue-triage").item.id
    page = sign_in(token("sched-list", ["operate"]))
    page.goto("/schedules")
    standup = page.locator("tr[data-schedule='standup-notes']")
    expect(standup).to_contain_text("At 09:00, Monday through Friday")
    expect(standup).to_contain_text("0 9 * * 1-5 · Europe/Berlin")
    # The next run on the schedule's wall clock, then in UTC (Berlin is UTC+1 or +2: 07:00 or 08:00 UTC).
    expect(standup.locator("td.sched-next")).to_contain_text(re.compile(r"09:00 CES?T"))
    expect(standup.locator("td.sched-next")).to_contain_text(re.compile(r"0[78]:00 UTC"))
    expect(standup).to_contain_text("never")
    triage = page.locator("tr[data-schedule='issue-triage']")
    expect(triage).to_contain_text("Every 15 minutes")
    expect(triage.locator(".status-run_now")).to_have_text("run now")
    expect(triage.locator(f"a[href='/items/{made}']")).to_be_visible()
    expect(triage.locator(".status-pending")).to_be_visible()
    digest = page.locator("tr[data-schedule='weekly-digest']")
    expect(digest.locator(".state-paused")).to_be_visible()
    expect(digest.locator("button", has_text="Resume")).to_be_visible()
    expect(page.locator("a", has_text="New schedule")).to_be_visible()
    shot(page, "schedules")
    # The status filter.
    page.goto("/schedules?status=paused")
    expect(page.locator("tr[data-schedule='weekly-digest']")).to_be_visible()
    expect(page.locator("tr[data-schedule='standup-notes']")).to_have_count(0)


def test_editing_the_cron_previews_it_as_you_type_a_bad_one_saves_nothing_and_a_good_one_changes_the_next_runs(
    sign_in: SignIn, token: TokenMaker, web_wq: WorkQueue, queue: str, shot: Any
) -> None:
    name = _add(web_wq, f"{queue}-edit", queue, kind="review", payload={"repo": "clawnsole"})
    stored = Schedules(web_wq).get(name)
    page = sign_in(token("sched-editor", ["operate"]))
    page.goto(f"/schedules/{name}")
    before = _upcoming(page)
    assert len(before) == 5 and all(t.endswith(":00 UTC") for t in before)
    page.click("a:has-text('Edit')")
    expect(page.locator("h1")).to_have_text(f"Edit {name}")
    preview = page.locator("#sched-preview")
    expect(preview).to_contain_text("Every hour")

    # A bad cron on submit: the form again (400), the error beside the field, what was typed kept, nothing saved.
    page.fill("input[name=cron]", "every monday")
    page.fill("input[name=title]", "Review open PRs and issues")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.click("button:has-text('Save')")
    assert posted.value.status == 400
    expect(page.locator("#error-cron")).to_contain_text("must have exactly five fields")
    expect(page.locator("input[name=cron]")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("input[name=cron]")).to_have_value("every monday")
    expect(page.locator("input[name=title]")).to_have_value("Review open PRs and issues")
    expect(page.locator(".flash.error")).to_contain_text("Not saved")
    assert Schedules(web_wq).get(name) == stored

    # The preview follows the typing: the words, the next runs on the zone's wall clock and in UTC.
    page.fill("input[name=cron]", "30 9 * * 1-5")
    expect(preview).to_contain_text("At 09:30, Monday through Friday")
    page.fill("input[name=timezone]", "America/New_York")
    # New York is UTC-5 or -4.
    expect(preview.locator("tbody tr")).to_have_count(5)
    expect(preview.locator("tbody tr").first).to_contain_text(re.compile(r"09:30 E[SD]T"))
    expect(preview.locator("tbody tr").first).to_contain_text(re.compile(r"1[34]:30 UTC"))
    shot(page, "schedule-edit")
    page.fill("input[name=cron]", "61 9 * * 1-5")
    expect(preview.locator(".field-error")).to_contain_text("not a valid cron expression")
    page.fill("input[name=cron]", "30 9 * * 1-5")
    expect(preview).to_contain_text("At 09:30, Monday through Friday")

    page.click("button:has-text('Save')")
    expect(page.locator(".flash")).to_contain_text(f"Saved schedule {name}: next run")
    expect(page).to_have_url(re.compile(f"/schedules/{name}$"))
    after = _upcoming(page)
    assert after != before and len(after) == 5
    assert all(re.search(r"09:30 E[SD]T$", t) for t in after), after
    saved = Schedules(web_wq).get(name)
    assert (saved.cron, saved.timezone, saved.title) == (
        "30 9 * * 1-5",
        "America/New_York",
        "Review open PRs and issues",
    )
    assert saved.next_run_at != stored.next_run_at
    # Fields not touched stay, the instructions (never shown) among them.
    assert (saved.kind, saved.payload, saved.instructions) == ("review", {"repo": "clawnsole"}, SECRET_PLAN)


def test_create_pause_resume_run_now_and_delete_from_the_pages(
    sign_in: SignIn, token: TokenMaker, web_wq: WorkQueue, queue: str, shot: Any
) -> None:
    name = "rotate-logs"
    page = sign_in(token("sched-operator", ["operate"]))
    operator = page.locator("header .who span").inner_text()
    page.goto("/schedules")
    page.click("a:has-text('New schedule')")
    page.fill("input[name=name]", name)
    page.fill("input[name=queue]", queue)
    page.fill("input[name=title]", "Rotate the logs")
    page.fill("input[name=cron]", "15 3 * * *")
    page.fill("textarea[name=instructions]", SECRET_PLAN)
    # A bad time zone: refused beside its field, nothing created, the form as typed.
    page.fill("input[name=timezone]", "Mars/Olympus_Mons")
    expect(page.locator("#sched-preview .field-error")).to_contain_text("not a known IANA time zone")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.click("button:has-text('Create schedule')")
    assert posted.value.status == 400
    expect(page.locator("#error-timezone")).to_contain_text("not a known IANA time zone")
    expect(page.locator("textarea[name=instructions]")).to_have_value(SECRET_PLAN)
    with pytest.raises(NotFound):
        Schedules(web_wq).get(name)
    page.fill("input[name=timezone]", "Europe/Berlin")
    expect(page.locator("#sched-preview")).to_contain_text("At 03:15")
    page.click("button:has-text('Create schedule')")
    expect(page.locator(".flash")).to_contain_text(f"Created schedule {name}: next run")
    expect(page.locator("h1")).to_contain_text(name)
    assert Schedules(web_wq).get(name).timezone == "Europe/Berlin"
    assert re.search(r"03:15 CES?T$", _upcoming(page)[0]), _upcoming(page)
    # Instructions: not in the page until revealed by a click.
    assert SECRET_PLAN not in page.content()
    page.click("summary:has-text('Show instructions')")
    expect(page.locator(".instructions")).to_have_text(SECRET_PLAN)

    page.click("button:has-text('Pause')")
    expect(page.locator(".flash")).to_contain_text(f"Paused schedule {name}")
    expect(page.locator(".sched-head .state-paused")).to_be_visible()
    expect(page.locator("main")).to_contain_text("Paused: it fires no more.")
    assert Schedules(web_wq).get(name).status == "paused"
    page.click("button:has-text('Resume')")
    expect(page.locator(".flash")).to_contain_text(f"Resumed schedule {name}: next run")
    expect(page.locator(".sched-head .state-active")).to_be_visible()
    assert Schedules(web_wq).get(name).status == "active"

    page.click("button:has-text('Run now')")
    expect(page.locator(".flash")).to_contain_text("enqueued")
    item_id = int(re.findall(r"#(\d+)", page.locator(".flash").inner_text())[0])
    item = web_wq.get(item_id)
    assert (item.queue, item.title, item.status) == (queue, "Rotate the logs", "pending")
    run = page.locator("table.sched-runs tbody tr").first
    expect(run.locator(".status-run_now")).to_be_visible()
    expect(run).to_contain_text(f"run now by {operator}")
    shot(page, "schedule")
    run.locator(f"a[href='/items/{item_id}']").click()
    expect(page).to_have_url(re.compile(f"/items/{item_id}$"))

    page.goto(f"/schedules/{name}")
    page.click("button:has-text('Delete…')")
    expect(page.locator("h1")).to_have_text(f"Delete the schedule {name}?")
    expect(page.locator(".confirm")).to_contain_text(f"the 1 item it enqueued stays in {queue}")
    assert Schedules(web_wq).get(name).name == name, "nothing is deleted before the confirmation"
    page.click(f"button:has-text('Delete {name} for good')")
    expect(page.locator(".flash")).to_contain_text(f"Deleted schedule {name}")
    expect(page).to_have_url(re.compile("/schedules$"))
    with pytest.raises(NotFound):
        Schedules(web_wq).get(name)
    assert web_wq.get(item_id).status == "pending", "the items it made stay"
    actions = [(e.action, e.outcome) for e in Audit(web_wq).list(token=operator) if e.target == name]
    assert set(actions) >= {
        ("schedule.create", "ok"),
        ("schedule.pause", "ok"),
        ("schedule.resume", "ok"),
        ("schedule.run_now", "ok"),
        ("schedule.remove", "ok"),
    }


def test_a_read_only_token_sees_no_buttons_and_no_instructions(
    sign_in: SignIn, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    name = _add(web_wq, f"{queue}-ro", queue)
    page = sign_in(token("sched-reader", ["read"]))
    page.goto("/schedules")
    row = page.locator(f"tr[data-schedule='{name}']")
    expect(row).to_contain_text("Every hour")
    expect(row.locator("button")).to_have_count(0)
    expect(page.locator("a", has_text="New schedule")).to_have_count(0)
    page.goto(f"/schedules/{name}")
    expect(page.locator("h1")).to_contain_text(name)
    expect(page.locator("main button")).to_have_count(0)
    expect(page.locator("main a", has_text="Edit")).to_have_count(0)
    expect(page.locator("main")).to_contain_text("hidden from this token")
    assert SECRET_PLAN not in page.content()
    page.goto(f"/schedules/{name}/edit")
    expect(page.locator("h1")).to_contain_text("Not allowed")


# --- plain HTTP: forged posts, the preview fragment, the API's reads ----------------------------------------


Session = Callable[[str], tuple[httpx.Client, str]]


@pytest.fixture
def session(api: Api) -> Iterator[Session]:
    """`session(secret) -> (client, csrf)`: an httpx client signed in with the token by the sign-in form, and
    the session's CSRF token as the pages carry it (the clients are closed after the test)."""
    made: list[httpx.Client] = []

    def make(secret: str) -> tuple[httpx.Client, str]:
        http = httpx.Client(base_url=api.url, timeout=30)
        made.append(http)
        signed = http.post("/sign-in", data={"token": secret, "next": "/schedules"})
        assert signed.status_code == 303, signed.text
        found = re.search(r'name="csrf" value="([^"]+)"', http.get("/schedules").text)
        assert found, "no CSRF token on the page"
        return http, found.group(1)

    yield make
    for http in made:
        http.close()


def test_a_forged_post_of_a_read_only_token_or_without_csrf_is_refused_and_changes_nothing(
    session: Session, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    name = _add(web_wq, f"{queue}-forged", queue)
    before = Schedules(web_wq).get(name)
    reader, csrf = session(token("sched-forger", ["read"]))
    for path, data in [
        (f"/schedules/{name}/pause", {"csrf": csrf}),
        (f"/schedules/{name}/run-now", {"csrf": csrf}),
        (f"/schedules/{name}/delete", {"csrf": csrf, "confirm": "1"}),
        (f"/schedules/{name}", {"csrf": csrf, "cron": "* * * * *", "queue": queue, "title": "x"}),
        ("/schedules", {"csrf": csrf, "name": f"{queue}-forged-new", "queue": queue, "title": "x"}),
    ]:
        assert reader.post(path, data=data).status_code == 403, path
    operator, _ = session(token("sched-no-csrf", ["operate"]))
    assert operator.post(f"/schedules/{name}/pause", data={}).status_code == 403
    assert operator.post(f"/schedules/{name}/pause", data={"csrf": "not-the-token"}).status_code == 403
    assert Schedules(web_wq).get(name) == before
    assert Schedules(web_wq).runs(name) == []
    with pytest.raises(NotFound):
        Schedules(web_wq).get(f"{queue}-forged-new")
    refused = [e for e in Audit(web_wq).list(limit=50) if e.target == name and e.outcome == "forbidden"]
    assert {e.action for e in refused} >= {"schedule.pause", "schedule.run_now", "schedule.remove", "schedule.update"}


def test_the_preview_fragment_gives_fire_times_in_the_zone_and_utc_or_the_field_in_error(
    session: Session, token: TokenMaker
) -> None:
    http, _ = session(token("sched-preview", ["read"]))
    ok = http.get("/schedules/preview", params={"cron": "*/5 * * * *", "timezone": "Asia/Kolkata"})
    assert ok.status_code == 200
    assert "Every 5 minutes" in ok.text and "<html" not in ok.text
    assert ok.text.count(" IST</td>") == 5 and ok.text.count(" UTC</td>") == 5
    every = http.get("/schedules/preview", params={"every": "2h"})
    assert "Every 2 hours" in every.text
    bad = http.get("/schedules/preview", params={"cron": "0 9 * *", "timezone": "UTC"})
    assert 'data-field="cron"' in bad.text and "exactly five fields" in bad.text
    zone = http.get("/schedules/preview", params={"cron": "0 9 * * *", "timezone": "Nowhere/Town"})
    assert 'data-field="timezone"' in zone.text
    both = http.get("/schedules/preview", params={"cron": "0 9 * * *", "every": "1h"})
    assert "not both" in both.text


def test_the_live_regions_refresh_alone(session: Session, token: TokenMaker, web_wq: WorkQueue, queue: str) -> None:
    name = _add(web_wq, f"{queue}-live", queue)
    http, _ = session(token("sched-live", ["operate"]))
    live = {"HX-Request": "true", "HX-Target": "live"}
    before = http.get(f"/schedules/{name}", headers=live)
    assert before.status_code == 200 and "<html" not in before.text and "It has not run yet." in before.text
    made = Schedules(web_wq).run_now(name).item.id
    after = http.get(f"/schedules/{name}", headers=live)
    assert f'href="/items/{made}"' in after.text and "Pause" in after.text
    listed = http.get("/schedules", headers=live)
    assert listed.status_code == 200 and f'data-schedule="{name}"' in listed.text and "<html" not in listed.text


def test_the_api_lists_a_schedules_runs_and_each_schedules_last_run(
    as_token: Any, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    name = _add(web_wq, f"{queue}-api", queue)
    made = Schedules(web_wq).run_now(name).item.id
    http = as_token(token("sched-api-reader", ["read"]))
    runs = http.get(f"/api/v1/schedules/{name}/runs/").json()["runs"]
    assert [(r["outcome"], r["item_id"], r["item_status"]) for r in runs] == [("run_now", made, "pending")]
    listed = {s["name"]: s for s in http.get("/api/v1/schedules/", params={"last_run": "true"}).json()["schedules"]}
    assert listed[name]["last_run"]["item_id"] == made
    assert "last_run" not in http.get("/api/v1/schedules/").json()["schedules"][0]
    other = as_token(token("sched-api-other", ["read"], queues=["somewhere-else"]))
    assert other.get(f"/api/v1/schedules/{name}/runs/").status_code == 404
