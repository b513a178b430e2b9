"""A real omnilab site for the browser tests: ``omnilab serve`` and ``omnilab worker`` on
a tracking database and a Redis of their own, shared by the tests of a module (a server
and a worker take seconds to start; a test's runs take about one), and what the tests do
in a browser with it: sign in, queue from the form, wait for what the page shows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.support import API_EXPERIMENTS
from tests.support.queue_helpers import (
    FAST,
    Api,
    RedisServer,
    Service,
    make_key,
    new_database,
    spawn_worker,
    start_api,
)

T = TypeVar("T")


@dataclass
class Site:
    """A running server and worker, and keys for them (one per set of scopes)."""

    api: Api
    worker: Service
    env: dict[str, str]
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.api.url

    def key(self, *scopes: str) -> str:
        wanted = ",".join(sorted(scopes))
        if wanted not in self.keys:
            self.keys[wanted] = make_key(*scopes, name="browser", env=self.env)
        return self.keys[wanted]


def open_site(base: Path, tracking_url: str, experiments: Path = API_EXPERIMENTS) -> Iterator[Site]:
    """Start a site in ``base`` (its own database, Redis, state and TMPDIR) serving the
    experiments of the folder ``experiments``; yield it; stop it. Its processes'
    environment is given whole: a module's fixture runs outside any one test's (the
    autouse ``workdir``)."""
    work, tmp = base / "work", base / "tmp"
    work.mkdir(parents=True)
    tmp.mkdir()
    redis = RedisServer(base / "redis")
    redis.start()
    env = {
        **FAST,
        "REDIS_URL": redis.url,
        "OMNILAB_EXPERIMENTS_DIR": str(experiments),
        "OMNILAB_TRACKING_URL": new_database(tracking_url),
        "OMNILAB_STATE_DIR": str(work / "state"),
        "OMNILAB_RUNTIME": "local",
        "OMNILAB_READY_TIMEOUT": "60",
        "TMPDIR": str(tmp),
    }
    api: Api | None = None
    worker: Service | None = None
    try:
        api = start_api(work, env)
        worker = spawn_worker(work, env)
        yield Site(api, worker, env)
    finally:
        if worker is not None:
            worker.stop()
        if api is not None:
            api.service.stop()
        redis.stop()


# What the tests do in the browser.


def wait(driver: WebDriver, what: Callable[[WebDriver], T | None], timeout: float = 30) -> T:
    """``what(driver)`` once it is truthy; elements replaced meanwhile are looked up again."""
    return WebDriverWait(  # type: ignore[no-any-return]
        driver, timeout, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)
    ).until(what)


def text(driver: WebDriver, css: str) -> str:
    """The text content of the element ``css`` (including what scrolls out of view)."""
    return str(driver.find_element(By.CSS_SELECTOR, css).get_property("textContent") or "")


def sign_in(driver: WebDriver, url: str, key: str, next_path: str = "/") -> None:
    """Sign in through the sign-in form, as a person would; lands on ``next_path``."""
    driver.get(f"{url}/login?next={next_path}")
    driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.ID, "login-submit").click()
    wait(driver, lambda d: urlsplit(d.current_url).path == next_path)


def queue_from_form(driver: WebDriver, url: str, experiment: str, **params: Any) -> str:
    """Fill the experiment's queue form (``_run_name`` for the name), press Queue; the
    id of the run the server redirected to."""
    driver.get(f"{url}/experiments/{experiment}")
    form = driver.find_element(By.ID, "queue-form")
    for name, value in params.items():
        if name == "_run_name":
            form.find_element(By.TAG_NAME, "summary").click()  # the name is folded away
            field = form.find_element(By.ID, "run-name")
        else:
            field = form.find_element(By.ID, f"p-{name}")
        field.clear()
        field.send_keys(str(value))
    form.find_element(By.ID, "queue-submit").click()
    wait(driver, lambda d: urlsplit(d.current_url).path.startswith("/runs/"))
    run_id = urlsplit(driver.current_url).path.split("/")[2]
    assert len(run_id) == 32, driver.current_url
    return run_id
