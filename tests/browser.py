"""A real headless Chromium for the tests, driven over WebDriver (selenium).

Chromium and its driver come from Debian's ``chromium`` and ``chromium-driver``
packages. When they are missing and the tests run as root with apt-get, they are
installed; otherwise the tests that need them are skipped, saying why. Nothing is
downloaded by selenium itself: the browser and driver paths are given.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from selenium.webdriver import Chrome

PACKAGES = ("chromium", "chromium-driver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)
_INSTALL_TIMEOUT = 600  # seconds; a cold apt cache downloads about 100 MB


def _binaries() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if Path(browser).exists() and Path(driver).exists():
        return browser, driver
    return None


def _install() -> str:
    """Install Debian's Chromium and its driver; return why they could not be, or ""."""
    if os.geteuid() != 0:
        return "not root, so apt-get cannot install them"
    if shutil.which("apt-get") is None:
        return "there is no apt-get on this machine"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    why = ""
    for prepare in ([], [["apt-get", "update"]]):  # the package lists as they are, then fresh
        try:
            for cmd in [*prepare, install]:
                done = subprocess.run(
                    cmd, env=env, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT
                )
        except subprocess.TimeoutExpired:
            return f"`{' '.join(install)}` took more than {_INSTALL_TIMEOUT}s"
        if done.returncode == 0:
            return ""
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return f"`{' '.join(install)}` failed: {why}"


def find_or_install() -> tuple[str, str] | str:
    """The browser's and the driver's paths, or why there are none."""
    found = _binaries()
    if found is None:
        why = _install()
        found = _binaries()
        if found is None:
            return f"Chromium and chromedriver are not installed and could not be: {why}"
    return found


@contextmanager
def chrome(browser: str, driver: str) -> Iterator[Chrome]:
    """A headless Chromium, quit (its processes ended) on leaving."""
    from selenium.webdriver import Chrome, ChromeOptions
    from selenium.webdriver.chrome.service import Service

    options = ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    session = Chrome(service=Service(executable_path=driver), options=options)
    try:
        yield session
    finally:
        session.quit()
