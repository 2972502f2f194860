"""Signing in to the dashboard: a token in, a session cookie out; sessions end with their token."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.sync_api import expect

from tests.web.conftest import Api, TokenMaker
from tests.web.dashboard.conftest import SignIn


def test_sign_in_sets_an_httponly_strict_cookie_and_shows_the_overview(
    sign_in: SignIn, token: TokenMaker, shot: Any
) -> None:
    page = sign_in(token("dash-reader", ["read"]))
    expect(page.locator("h1")).to_have_text("Overview")
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["clawnsole_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert session["value"].startswith("cls_")
    assert not any(c["value"].startswith("cln_") for c in cookies.values()), "the token itself is not kept"
    shot(page, "sign-in-overview")


def test_a_wrong_token_is_refused_with_a_message(api: Api, browser: Any) -> None:
    context = browser.new_context(base_url=api.url)
    try:
        page = context.new_page()
        page.goto("/sign-in")
        page.fill("input[name=token]", "cln_not-a-real-token")
        page.click("button:has-text('Sign in')")
        expect(page.locator(".flash.error")).to_contain_text("unknown bearer token")
        assert not context.cookies()
    finally:
        context.close()


def test_pages_redirect_to_sign_in_and_back(api: Api) -> None:
    with httpx.Client(base_url=api.url) as http:
        response = http.get("/?queue=ops")
    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in?next=/%3Fqueue%3Dops"


def test_revoking_the_token_ends_its_sessions(api: Api, sign_in: SignIn, token: TokenMaker, web_wq: Any) -> None:
    from clawnsole.tokens.api import Tokens

    page = sign_in(token("dash-revoked", ["read"]))
    name = page.locator("header .who span").inner_text()
    context = page.context
    # The open page's own live refresh may already be sent to sign in (HX-Redirect) and would abort a
    # navigation of ours: close it and ask again from a fresh page with the same session cookie.
    page.close()
    Tokens(web_wq).revoke(name)
    fresh = context.new_page()
    fresh.goto("/")
    expect(fresh.locator("h1")).to_have_text("Sign in")


def test_every_page_has_a_strict_content_security_policy(api: Api) -> None:
    with httpx.Client(base_url=api.url) as http:
        response = http.get("/sign-in")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp


def test_sign_out_ends_the_session(sign_in: SignIn, token: TokenMaker) -> None:
    page = sign_in(token("dash-out", ["read"]))
    page.click("button:has-text('Sign out')")
    expect(page.locator("h1")).to_have_text("Sign in")
    page.goto("/")
    expect(page.locator("h1")).to_have_text("Sign in")
