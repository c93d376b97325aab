"""Shared fixtures. Claims tests use the weights `make figures` cached in this run; if a
file is missing or stale they train it once here (never skip), and every test shares it."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from superposition import experiments, store

HTML = Path(__file__).resolve().parents[1] / "_build" / "html"


@pytest.fixture(scope="session")
def trained():
    cache: dict[str, store.Weights] = {}

    def get(name: str) -> store.Weights:
        if name not in cache:
            experiment = experiments.get(name)
            try:
                cache[name] = store.load(experiment)
            except store.WeightsError:
                from superposition.starts import initial
                from superposition.train import train

                code_hash = store.content_hash(experiment)
                start = initial(experiment, get(experiment.parent)) if experiment.parent else None
                result = train(experiment, progress=False, start=start)
                store.save(experiment, result, code_hash=code_hash)
                cache[name] = store.load(experiment)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def every_model(trained):
    """Every registered experiment, cached (trained here once if missing or stale): for the
    chapters whose findings read all of them."""
    return [trained(name) for name in experiments.REGISTRY]


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Debian's Chromium, headless, for the browser tests (test_browser, test_explorer_browser)."""
    import site_check
    from playwright.sync_api import sync_playwright

    if not (HTML / "index.html").exists():
        pytest.fail(f"no site in {HTML}: run `make book` first")
    if not site_check.CHROMIUM.exists():
        reason = f"{site_check.CHROMIUM} not found: `apt-get install chromium`"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = site_check.launch(playwright)
        yield browser
        browser.close()
