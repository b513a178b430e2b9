"""Sign-in with an API key, the session cookie, scopes and CSRF, against a real server."""

from __future__ import annotations

import re

from tests.support import run_cli
from tests.support.queue_helpers import Api, make_key
from tests.support.web import Browser


def test_a_bad_key_gets_a_message_and_no_session(api: Api) -> None:
    with Browser(api.url) as browser:
        # Pages need a session: they send the browser to the sign-in form.
        first = browser.get("/?status=failed")
        assert first.status_code == 303
        assert first.headers["location"] == "/login?next=%2F%3Fstatus%3Dfailed"
        wrong = "olk_000000000000_" + "A" * 43
        refused = browser.sign_in(wrong)
        assert refused.status_code == 401
        assert 'class="flash"' in refused.text and "invalid or revoked API key" in refused.text
        assert "omnilab_session" not in refused.headers.get("set-cookie", "")
        assert "omnilab_session" not in browser.http.cookies
        assert wrong not in refused.text  # the key typed is never shown back
        assert browser.get("/").status_code == 303


def test_a_good_key_gets_a_strict_httponly_session(api: Api) -> None:
    key = make_key("read")
    with Browser(api.url) as browser:
        signed = browser.sign_in(key, "/workers")
        assert signed.status_code == 303 and signed.headers["location"] == "/workers"
        cookie = next(
            c for c in signed.headers.get_list("set-cookie") if c.startswith("omnilab_session=")
        )
        flags = [part.strip().lower() for part in cookie.split(";")]
        assert "httponly" in flags and "samesite=strict" in flags
        assert any(f.startswith("max-age=") and int(f.split("=")[1]) > 0 for f in flags)
        assert key.split("_", 2)[2] not in cookie  # the cookie names the key, never holds it
        page = browser.get("/")
        assert page.status_code == 200 and 'id="runs"' in page.text
        # Signing out ends it.
        out = browser.post("/logout", {"_csrf": browser.csrf()})
        assert out.status_code == 303
        assert browser.get("/").status_code == 303


def test_a_forged_cookie_a_foreign_next_and_a_revoked_key_get_no_page(api: Api) -> None:
    key = make_key("read")
    with Browser(api.url) as browser:
        assert browser.sign_in(key).status_code == 303
        value = browser.http.cookies["omnilab_session"]
        forged = value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB")
        browser.http.cookies.set("omnilab_session", forged)
        assert browser.get("/").status_code == 303
    with Browser(api.url) as browser:
        # Sign-in never sends anyone to another site.
        assert browser.sign_in(key, "//evil.example/x").headers["location"] == "/"
        assert browser.get("/").status_code == 200
        assert run_cli("api-key", "revoke", key.split("_")[1]).returncode == 0
        assert browser.get("/").status_code == 303  # revoked: its sessions end at once
    with Browser(api.url) as browser:
        # The sign-in form itself needs its token.
        browser.get("/login")
        refused = browser.post("/login", {"key": make_key("read")})
        assert refused.status_code == 403 and "omnilab_session" not in browser.http.cookies


def test_a_read_only_key_sees_but_is_offered_no_action_and_cannot_act(api: Api) -> None:
    run_id = api.queue("Quick", {"n": 1})  # stays queued: no worker
    with Browser(api.url) as browser:
        assert browser.sign_in(make_key("read")).status_code == 303
        page = browser.get(f"/runs/{run_id}")
        assert page.status_code == 200, api.service.output[-3000:]
        assert re.search(r'id="run-status"[^>]*>queued<', page.text)
        assert 'id="cancel"' not in page.text and 'id="promote"' not in page.text
        form = browser.get("/experiments/Quick")
        assert form.status_code == 200 and 'id="queue-form"' not in form.text
        token = browser.csrf()
        for path, data in (
            ("/experiments/Quick/queue", {"n": "2"}),
            (f"/runs/{run_id}/cancel", {}),
            (f"/runs/{run_id}/promote", {"on_conflict": "fail"}),
            ("/promotions/abcd1234/rollback", {}),
        ):
            refused = browser.post(path, {**data, "_csrf": token})
            assert refused.status_code == 403, (path, refused.text)
            assert "lacks the" in refused.text and 'class="flash' in refused.text
        assert browser.get(f"/runs/{run_id}/promote").status_code == 403
    assert api.run(run_id)["status"] == "queued"


def test_every_form_that_changes_something_needs_the_sessions_token(api: Api) -> None:
    run_id = api.queue("Quick", {"n": 1})
    with Browser(api.url) as browser:
        assert browser.sign_in(make_key("read", "run", "promote")).status_code == 303
        page = browser.get(f"/runs/{run_id}")
        assert 'id="cancel"' in page.text
        # Not finished: nothing to promote; the plan page says why instead of failing.
        plan = browser.get(f"/runs/{run_id}/promote")
        assert plan.status_code == 409 and 'class="flash"' in plan.text
        assert 'id="promote-confirm"' not in plan.text
        good = browser.csrf()
        for token in (None, "", "x" * 43, good[:-2] + "zz"):
            data = {} if token is None else {"_csrf": token}
            for path in ("/experiments/Quick/queue", f"/runs/{run_id}/cancel", "/logout"):
                refused = browser.post(path, data)
                assert refused.status_code == 403, (path, token)
                assert "security token" in refused.text
        # Another session's token is wrong here too.
        with Browser(api.url) as other:
            other.sign_in(make_key("read", "run"))
            theirs = other.csrf()
        assert browser.post(f"/runs/{run_id}/cancel", {"_csrf": theirs}).status_code == 403
        assert api.run(run_id)["status"] == "queued"
        with api.client("read") as client:
            assert len(client.get("/v1/runs").json()["runs"]) == 1  # nothing queued
        # The right token: cancelled, through the API's own code path.
        done = browser.post(f"/runs/{run_id}/cancel", {"_csrf": good})
        assert done.status_code == 303 and done.headers["location"].endswith("?done=cancelled")
    assert api.run(run_id)["status"] == "cancelled"
