"""Report pages need a viewer (issue 20, point 11).

The attack: `/`, `/runs/{id}` and `/runs/{id}/reports/{gate}` showed every run's findings,
dataset sources and metrics to anyone who could reach the gatekeeper, while `/api/v1` asked
the same data of a viewer. Here it is tried against a real `gatekeeper serve` (and a real
MLflow server and a real run), over plain HTTP as a script would and in a real headless
Chromium as a person following the `gatekeeper.report_url` tag would.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient
from sqlalchemy import update

from demo.models import log_malicious_model
from service.store.db import transaction
from service.store.tables import ApiToken, utcnow
from tests.browser import Chromium, ChromiumMissing
from tests.helpers import VENV_BIN, GatekeeperProcess, MlflowServer, unique_name, wait_for

SIGN_IN_FORM = "<form method=post action='/signin'>"
SESSION_COOKIE = "gatekeeper_session"


def cookie_header(value: str, name: str = SESSION_COOKIE) -> dict[str, str]:
    """The header a browser sends back with the session cookie."""
    return {"Cookie": f"{name}={value}"}


@dataclass
class Site:
    """One gatekeeper with one decided run of a malicious model and its data."""

    gk: GatekeeperProcess
    database_url: str
    model: str
    run: dict[str, Any]
    report_url: str
    dataset_file: str
    viewer: str

    @property
    def run_id(self) -> str:
        return str(self.run["id"])

    def secrets_of_the_run(self) -> list[str]:
        """What the run's page shows that an anonymous visitor must not learn."""
        return [
            self.model,
            str(self.run["artifact_digest"]),
            "SEC-PICKLE-001",
            "os.system",
            self.dataset_file,
        ]

    def anonymous(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(f"{self.gk.url}{path}", timeout=30, **kwargs)

    def new_token(self, name: str, role: str = "viewer") -> str:
        """`gatekeeper token create`, as an administrator runs it."""
        made = subprocess.run(
            [str(VENV_BIN / "gatekeeper"), "token", "create", "--name", name, "--role", role],
            env=self.gk.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert made.returncode == 0, made.stderr
        return made.stdout.strip().splitlines()[-1]

    def revoke(self, name: str) -> None:
        """What revoking a token does to its row (`revoked_at`)."""
        with transaction(self.database_url) as session:
            session.execute(
                update(ApiToken).where(ApiToken.name == name).values(revoked_at=utcnow())
            )

    def sign_in(self, token: str, next_path: str = "/", **headers: str) -> httpx.Response:
        return httpx.post(
            f"{self.gk.url}/signin",
            data={"token": token, "next": next_path},
            headers=headers,
            timeout=30,
        )


@pytest.fixture(scope="module")
def site(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("pages-auth")
    # a training set whose location is itself something only a viewer may see
    dataset = root / f"customer-churn-{uuid.uuid4().hex[:8]}.csv"
    dataset.write_text(
        "tenure,plan,churned\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(60))
    )
    name = unique_name("pages-auth")
    policy = root / "policy.yaml"
    policy.write_text(
        f'models:\n  - match: "{name}"\n    data:\n      training: {{uri: "file://{dataset}"}}\n'
    )
    database_url = f"sqlite:///{root / 'gatekeeper.db'}"
    gk = GatekeeperProcess(
        data_dir=root / "gk", database_url=database_url, tracking_uri=mlflow_server.url,
        models=name, env={"GATEKEEPER_POLICY_PATH": str(policy)},
    )  # fmt: skip
    gk.start()
    try:
        version = log_malicious_model(mlflow_server.url, name, root / "payload-ran")
        run = gk.run_version(name, version)
        client = MlflowClient(mlflow_server.url)
        report_url = wait_for(
            lambda: client.get_model_version(name, str(version)).tags.get("gatekeeper.report_url"),
            30,
            "the report_url tag",
        )
        site = Site(gk, database_url, name, run, report_url, dataset.name, viewer="")
        site.viewer = site.new_token("pages-viewer")
        yield site
    finally:
        gk.stop()


def test_a_viewer_sees_the_runs_data_that_the_other_tests_keep_from_strangers(site: Site) -> None:
    """The premise: the page does carry the run's findings and data source, for a viewer."""
    assert site.report_url == f"{site.gk.url}/runs/{site.run_id}"
    page = site.anonymous(
        f"/runs/{site.run_id}", headers={"Authorization": f"Bearer {site.viewer}"}
    )
    assert page.status_code == 200
    for secret in site.secrets_of_the_run():
        assert secret in page.text, secret
    index = site.anonymous("/", headers={"Authorization": f"Bearer {site.viewer}"})
    assert index.status_code == 200 and site.model in index.text and site.run_id[:8] in index.text


def test_an_anonymous_visitor_sees_the_sign_in_page_and_no_run_data(site: Site) -> None:
    unknown = str(uuid.uuid4())
    for path in ("/", f"/runs/{site.run_id}", f"/runs/{site.run_id}/reports/security"):
        answer = site.anonymous(path)
        assert answer.status_code == 401, path
        assert answer.headers["content-type"].startswith("text/html"), path
        assert SIGN_IN_FORM in answer.text, path
        assert "set-cookie" not in answer.headers, path
        assert answer.headers["cache-control"] == "no-store", path
        for secret in site.secrets_of_the_run():
            assert secret not in answer.text, (path, secret)
        # the run id only where the visitor typed it: the path the form returns to
        assert answer.text.count(site.run_id) == path.count(site.run_id), path
        # the answer is made of the URL alone: a run that does not exist gets the same bytes,
        # so not even the run's existence is told
        twin = site.anonymous(path.replace(site.run_id, unknown))
        assert (twin.status_code, twin.text.replace(unknown, site.run_id)) == (401, answer.text)


def test_a_script_with_a_viewer_token_in_the_authorization_header_gets_the_page(
    site: Site,
) -> None:
    bearer = {"Authorization": f"Bearer {site.viewer}"}
    page = site.anonymous(f"/runs/{site.run_id}", headers=bearer)
    assert page.status_code == 200 and "SEC-PICKLE-001" in page.text
    assert "signed in as pages-viewer (viewer)" in page.text
    # the report route checks who asks before it looks for the report (this gate has none)
    assert (
        site.anonymous(f"/runs/{site.run_id}/reports/security", headers=bearer).status_code == 404
    )
    # and the admin token the other tests use still works as it did
    assert site.gk.api("GET", f"/runs/{site.run_id}").status_code == 200


def test_a_wrong_bearer_token_gets_the_sign_in_page_not_the_run(site: Site) -> None:
    answer = site.anonymous(
        f"/runs/{site.run_id}", headers={"Authorization": "Bearer gk_not-a-token-of-this-site"}
    )
    assert answer.status_code == 401 and SIGN_IN_FORM in answer.text
    assert "not accepted" in answer.text
    assert site.model not in answer.text and "gk_not-a-token" not in answer.text


def test_a_token_pasted_into_the_url_does_not_sign_anyone_in(site: Site) -> None:
    pasted = site.new_token("pasted-into-a-url")
    for path in (f"/runs/{site.run_id}?token={pasted}", f"/?token={pasted}"):
        answer = site.anonymous(path)
        assert answer.status_code == 401 and SIGN_IN_FORM in answer.text, path
        assert site.model not in answer.text, path
        assert pasted not in answer.text, "the form echoed the token from the URL"
    # nor does the sign-in page take it from its query
    form = site.anonymous(f"/signin?token={pasted}&next=/runs/{site.run_id}")
    assert "set-cookie" not in form.headers and pasted not in form.text


def test_signing_in_with_a_viewer_token_sets_an_httponly_samesite_cookie_and_returns_to_the_report(
    site: Site,
) -> None:
    answer = site.sign_in(site.viewer, f"/runs/{site.run_id}")
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/runs/{site.run_id}"
    set_cookie = answer.headers["set-cookie"]
    flags = [part.strip().lower() for part in set_cookie.split(";")]
    assert flags[0].startswith(f"{SESSION_COOKIE}=")
    assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags
    assert "max-age=43200" in flags  # 12 hours
    assert "secure" not in flags  # this gatekeeper's public URL is http://
    cookie = answer.cookies[SESSION_COOKIE]
    assert site.viewer not in set_cookie and site.viewer[3:20] not in cookie
    page = httpx.get(f"{site.gk.url}/runs/{site.run_id}", headers=cookie_header(cookie))
    assert page.status_code == 200
    for secret in site.secrets_of_the_run():
        assert secret in page.text, secret
    # the token was in a POST body only: never in the gatekeeper's log
    assert site.viewer not in site.gk.log.read_text(errors="replace")


def test_the_page_cookie_does_not_open_the_json_api(site: Site) -> None:
    """The cookie is for read-only pages; /api/v1 stays bearer-only, as before (a browser
    sends cookies with cross-site requests, bearer headers it never adds by itself)."""
    cookie = site.sign_in(site.viewer).cookies[SESSION_COOKIE]
    answer = httpx.get(f"{site.gk.url}/api/v1/runs/{site.run_id}", headers=cookie_header(cookie))
    assert answer.status_code == 401
    assert answer.json()["error"] == "Unauthorized"


def test_a_wrong_token_on_the_form_gets_the_form_again_with_a_plain_error_and_nothing_else(
    site: Site,
) -> None:
    guess = "gk_" + uuid.uuid4().hex * 2
    answer = site.sign_in(guess, f"/runs/{site.run_id}")
    assert answer.status_code == 401
    assert SIGN_IN_FORM in answer.text and "That token was not accepted." in answer.text
    assert "set-cookie" not in answer.headers
    assert guess not in answer.text, "the form echoed the token"
    for secret in site.secrets_of_the_run():
        assert secret not in answer.text, secret
    assert guess not in site.gk.log.read_text(errors="replace")
    empty = site.sign_in("", "/")
    assert empty.status_code == 401 and "set-cookie" not in empty.headers


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/runs/x",
        "https://evil.example/",
        "/\\evil.example",
        "/\t/evil.example",
        "javascript:alert(1)",
        "/runs/x?token=gk_abc",
        "/signin",
    ],
)
def test_the_sign_in_form_never_sends_a_person_off_site(site: Site, target: str) -> None:
    answer = site.sign_in(site.viewer, target)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"


def test_a_revoked_tokens_cookie_stops_working(site: Site) -> None:
    token = site.new_token("leaves-the-team")
    cookie = site.sign_in(token, "/").cookies[SESSION_COOKIE]
    jar = cookie_header(cookie)
    assert httpx.get(f"{site.gk.url}/runs/{site.run_id}", headers=jar).status_code == 200
    site.revoke("leaves-the-team")
    answer = httpx.get(f"{site.gk.url}/runs/{site.run_id}", headers=jar)
    assert answer.status_code == 401 and SIGN_IN_FORM in answer.text
    assert site.model not in answer.text
    assert "not accepted" in answer.text
    assert f'{SESSION_COOKIE}=""' in answer.headers["set-cookie"]  # and the browser drops it
    assert site.sign_in(token, "/").status_code == 401  # nor can it sign in again


def test_a_forged_or_edited_cookie_is_refused(site: Site) -> None:
    cookie = site.sign_in(site.viewer, "/").cookies[SESSION_COOKIE]
    version, subject, issued, expires, mac = cookie.split(".")
    other = site.sign_in(site.new_token("another-viewer"), "/").cookies[SESSION_COOKIE]
    other_subject = other.split(".")[1]
    assert other_subject != subject
    longer = str(int(expires) + 86400)
    forgeries = {
        "the bootstrap admin instead": ".".join([version, "admin", issued, expires, mac]),
        "another token's row": ".".join([version, other_subject, issued, expires, mac]),
        "a later expiry": ".".join([version, subject, issued, longer, mac]),
        "both times moved": ".".join([version, subject, str(int(issued) + 86400), longer, mac]),
        "a made-up signature": ".".join([version, subject, issued, expires, "A" * 43]),
        "garbage": "v1.<script>",
    }
    for what, forged in forgeries.items():
        answer = httpx.get(f"{site.gk.url}/runs/{site.run_id}", headers=cookie_header(forged))
        assert answer.status_code == 401, what
        assert site.model not in answer.text, what


def test_signing_out_clears_the_cookie(site: Site) -> None:
    with httpx.Client(base_url=site.gk.url, timeout=30) as browser_like:
        signed_in = browser_like.post(
            "/signin", data={"token": site.viewer, "next": "/"}, follow_redirects=True
        )
        assert signed_in.status_code == 200 and site.model in signed_in.text  # followed to /
        signed_out = browser_like.post("/signout", follow_redirects=False)
        assert signed_out.status_code == 303 and signed_out.headers["location"] == "/signin"
        assert "max-age=0" in signed_out.headers["set-cookie"].lower()
        assert SESSION_COOKIE not in browser_like.cookies
        again = browser_like.get(f"/runs/{site.run_id}")
        assert again.status_code == 401 and site.model not in again.text


def test_another_site_cannot_sign_a_browser_in_with_its_own_token(site: Site) -> None:
    """Login CSRF: a page elsewhere posting its owner's token to our form would sign the
    victim in as the attacker. Browsers mark such a post `Sec-Fetch-Site: cross-site`."""
    answer = site.sign_in(site.viewer, "/", **{"Sec-Fetch-Site": "cross-site"})
    assert answer.status_code == 403 and "set-cookie" not in answer.headers
    assert site.sign_in(site.viewer, "/", **{"Sec-Fetch-Site": "same-origin"}).status_code == 303


def test_with_pages_public_anyone_sees_the_pages(
    site: Site, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    """GATEKEEPER_PAGES_PUBLIC=true is the operator's explicit choice to open the pages; a
    second gatekeeper on the same database (no worker) serves them to anyone."""
    public = GatekeeperProcess(
        data_dir=tmp_path / "public", database_url=site.database_url,
        tracking_uri=mlflow_server.url, models=site.model,
        extra_args=("--no-worker", "--no-poller"), env={"GATEKEEPER_PAGES_PUBLIC": "true"},
    )  # fmt: skip
    public.start()
    try:
        page = httpx.get(f"{public.url}/runs/{site.run_id}", timeout=30)
        assert page.status_code == 200 and "SEC-PICKLE-001" in page.text
        index = httpx.get(f"{public.url}/", timeout=30)
        assert index.status_code == 200 and site.model in index.text
        # the JSON API is not opened with them
        assert httpx.get(f"{public.url}/api/v1/runs/{site.run_id}").status_code == 401
    finally:
        public.stop()


def test_behind_https_the_cookie_is_secure_and_rotating_the_admin_token_ends_admin_sessions(
    mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    env = {"GATEKEEPER_PUBLIC_URL": "https://gatekeeper.example.internal"}
    gk = GatekeeperProcess(
        data_dir=tmp_path / "gk", database_url=f"sqlite:///{tmp_path / 'gk.db'}",
        tracking_uri=mlflow_server.url, models="none-of-these-*",
        extra_args=("--no-worker", "--no-poller"), env=env,
    )  # fmt: skip
    gk.start()
    try:
        admin = gk.env["GATEKEEPER_ADMIN_TOKEN"]
        answer = httpx.post(f"{gk.url}/signin", data={"token": admin, "next": "/"}, timeout=30)
        assert answer.status_code == 303
        flags = [part.strip().lower() for part in answer.headers["set-cookie"].split(";")]
        # __Host-: only a Secure, Path=/ cookie of this very host, never a subdomain's
        assert flags[0].startswith("__host-gatekeeper_session=")
        assert "secure" in flags and "httponly" in flags and "samesite=lax" in flags
        value = answer.headers["set-cookie"].split(";")[0].split("=", 1)[1]
        jar = cookie_header(value, "__Host-gatekeeper_session")
        assert httpx.get(f"{gk.url}/", headers=jar, timeout=30).status_code == 200
    finally:
        gk.stop()
    gk.env["GATEKEEPER_ADMIN_TOKEN"] = "a-new-admin-token-after-rotation-0123"
    gk.start()
    try:
        answer = httpx.get(f"{gk.url}/", headers=jar, timeout=30)
        assert answer.status_code == 401 and SIGN_IN_FORM in answer.text
    finally:
        gk.stop()


# -- a person, in a real browser ------------------------------------------------------------


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Chromium]:
    try:
        chromium = Chromium(tmp_path / "profile")
    except ChromiumMissing as exc:
        pytest.fail(str(exc))
    yield chromium
    chromium.close()


def test_a_browser_following_the_report_url_gets_the_sign_in_form_and_not_the_run(
    site: Site, browser: Chromium
) -> None:
    browser.navigate(site.report_url)
    shown = browser.text()
    assert "Sign in" in shown and "API token" in shown
    for secret in site.secrets_of_the_run():
        assert secret not in browser.html(), secret
    assert browser.cookies() == []


def test_a_person_signs_in_in_the_browser_and_lands_on_the_report_they_asked_for(
    site: Site, browser: Chromium
) -> None:
    browser.navigate(site.report_url)
    assert site.model not in browser.text()
    browser.type_text("#token", site.viewer)
    browser.click("button[type=submit]")
    browser.wait_for_load(lambda href: href == site.report_url, "the report after signing in")
    shown = browser.text()
    assert site.model in shown and "SEC-PICKLE-001" in shown
    assert "signed in as pages-viewer" in shown
    [cookie] = browser.cookies()
    assert cookie["name"] == SESSION_COOKIE
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax" and cookie["path"] == "/"
    assert browser.evaluate("document.cookie") == "", "a script on the page can read the cookie"
    # the token never entered the address bar or the history
    history = browser.call("Page.getNavigationHistory")["entries"]
    assert all(site.viewer not in entry["url"] for entry in history), history
    # the other pages open too, without signing in again
    browser.navigate(f"{site.gk.url}/")
    assert site.run_id[:8] in browser.text()

    browser.click("nav button[type=submit]")  # Sign out
    browser.wait_for_load(lambda href: href.endswith("/signin"), "the sign-in page")
    assert browser.cookies() == []
    browser.navigate(site.report_url)
    assert "Sign in" in browser.text() and site.model not in browser.text()
