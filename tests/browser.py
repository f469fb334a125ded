"""A real headless Chromium for the page tests, driven over the DevTools protocol on a pipe.

`--remote-debugging-pipe` makes Chromium read protocol commands from fd 3 and write answers
to fd 4, each a JSON text ended by a NUL byte: no driver binary, no websocket library and no
browser download, only Debian's `chromium` (or `GATEKEEPER_TEST_CHROMIUM`, a Chrome/Chromium
binary). The browser gets a fresh profile per instance and reaches loopback only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers import tail

CHROMIUM_VARIABLE = "GATEKEEPER_TEST_CHROMIUM"


class ChromiumMissing(Exception):
    pass


def chromium_binary() -> str:
    """The browser to run, or ChromiumMissing saying how to get one."""
    configured = os.environ.get(CHROMIUM_VARIABLE)
    candidates = [configured] if configured else ["chromium", "chromium-browser", "google-chrome"]
    for name in candidates:
        found = shutil.which(name)
        if found:
            return found
    raise ChromiumMissing(
        f"the page tests drive a real browser and found none ({', '.join(candidates)} not on "
        f"PATH): install Debian's `chromium` (`apt-get install -y chromium`; `make test` does "
        f"it when run as root) or set {CHROMIUM_VARIABLE} to a Chrome or Chromium binary"
    )


class Chromium:
    """One headless browser with one tab. `navigate`, `evaluate`, `click`, `type_text` and
    `cookies` are what a person does and sees; everything else stays in here."""

    def __init__(self, profile_dir: Path, timeout: float = 30) -> None:
        self.timeout = timeout
        self.log = profile_dir.with_name(profile_dir.name + "-chromium.log")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # the browser wants the pipe on fds 3 and 4: bash puts them there (dash refuses fd
        # numbers above 9), then execs the browser in its place
        command = [
            "/bin/bash",
            "-c",
            f'exec "$@" 3<&{to_browser_r} 4>&{from_browser_w}',
            "bash",
            chromium_binary(),
            "--headless",
            "--no-sandbox",  # as root there is no other way; the browser visits only loopback
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            f"--user-data-dir={profile_dir}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self.process = subprocess.Popen(
            command,
            pass_fds=(to_browser_r, from_browser_w),
            stdin=subprocess.DEVNULL,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next_id = 0
        self._answers: dict[int, dict[str, Any]] = {}
        self._arrived = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})
        self._session = attached["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")

    # -- the protocol -------------------------------------------------------------------

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message:
                    with self._arrived:
                        self._answers[message["id"]] = message
                        self._arrived.notify_all()
        with self._arrived:
            self._closed = True
            self._arrived.notify_all()

    def _call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        self._next_id += 1
        request: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            request["sessionId"] = session
        try:
            os.write(self._to_browser, json.dumps(request).encode() + b"\0")
        except OSError as exc:
            raise AssertionError(f"chromium is gone ({exc}):\n{tail(self.log)}") from exc
        deadline = time.monotonic() + self.timeout
        with self._arrived:
            while self._next_id not in self._answers:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    why = "exited" if self._closed else f"did not answer {method} in time"
                    raise AssertionError(f"chromium {why}:\n{tail(self.log)}")
                self._arrived.wait(left)
            answer = self._answers.pop(self._next_id)
        if "error" in answer:
            raise AssertionError(f"{method} failed: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A protocol command in the tab."""
        return self._call(method, params, self._session)

    # -- what a person does -------------------------------------------------------------

    def navigate(self, url: str) -> None:
        """Type `url` into the address bar and wait until the page it lands on has loaded."""
        self._mark_document()
        self.call("Page.navigate", {"url": url})
        self.wait_for_load(lambda _href: True)

    def _mark_document(self) -> None:
        """Tag the document shown now, so a wait can tell the next one from it even at the
        same URL (the sign-in form is answered at the URL of the page it stands in for)."""
        self.evaluate("window.__left_by_the_test = true")

    def wait_for_load(self, arrived: Callable[[str], bool], what: str = "the page") -> str:
        """Wait until the tab shows a new, loaded document whose URL satisfies `arrived`."""
        deadline = time.monotonic() + self.timeout
        href = ""
        while time.monotonic() < deadline:
            try:
                state = self.evaluate(
                    "[document.readyState, location.href, window.__left_by_the_test === true]"
                )
            except AssertionError:  # the document went away mid-navigation: ask again
                state = None
            if state:
                ready, href, old = state
                if ready == "complete" and not old and arrived(href):
                    return str(href)
            time.sleep(0.1)
        raise AssertionError(f"{what} did not load in {self.timeout}s (tab at {href!r})")

    def evaluate(self, expression: str) -> Any:
        """A script's value in the page, as the page itself would compute it."""
        answer = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in answer:
            raise AssertionError(f"{expression!r} threw: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def text(self) -> str:
        """What the page shows (its rendered text)."""
        return str(self.evaluate("document.body ? document.body.innerText : ''"))

    def html(self) -> str:
        return str(self.evaluate("document.documentElement.outerHTML"))

    def click(self, selector: str) -> None:
        """A mouse click in the middle of the element, as a person clicks. A click that
        navigates is followed by `wait_for_load`."""
        self._mark_document()
        box = self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1},
            )

    def type_text(self, selector: str, text: str) -> None:
        """Focus the field and type into it (as a paste from the keyboard would)."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", {"text": text})

    def cookies(self) -> list[dict[str, Any]]:
        """Every cookie the browser holds, with its flags (httpOnly, sameSite, secure)."""
        cookies: list[dict[str, Any]] = self._call("Storage.getCookies")["cookies"]
        return cookies

    def close(self) -> None:
        try:
            self._call("Browser.close")
        except AssertionError:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        os.close(self._to_browser)
        self._reader.join(timeout=5)
        os.close(self._from_browser)
