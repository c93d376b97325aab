"""Static checks of the built site in _build/html (no browser): every internal link and
anchor resolves, every image has alt text or a caption, pages declare their language, and
the 404 page exists. Run after `make book`."""

import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from bs4 import BeautifulSoup

from superposition import experiments, store

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SKIP_DIRS = {"_static", "_sphinx_design_static"}


def pages(root: Path = HTML) -> list[Path]:
    if not (root / "index.html").exists():
        pytest.fail(f"no site in {root}: run `make book` first")
    found = root.rglob("*.html")
    return sorted(p for p in found if not SKIP_DIRS & set(p.relative_to(root).parts))


def soup(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


def anchors(path: Path) -> set[str]:
    page = soup(path)
    return {tag["id"] for tag in page.find_all(id=True)} | {
        tag["name"] for tag in page.find_all("a", attrs={"name": True})
    }


def broken_links(root: Path) -> list[str]:
    broken = []
    for page in pages(root):
        for tag in soup(page).find_all(["a", "link", "img", "script"]):
            url = tag.get("href") or tag.get("src")
            if not url or url.startswith(("mailto:", "javascript:", "data:")):
                continue
            parts = urlsplit(url)
            if parts.scheme or parts.netloc:
                continue  # external links are allowed to exist; the browser test blocks fetches
            path = unquote(parts.path)
            if path.startswith("/"):  # root-relative: the site is served from its root
                target = root / path.lstrip("/")
            else:
                target = (page.parent / path).resolve() if path else page
            if target.is_dir():
                target = target / "index.html"
            where = f"{page.relative_to(root)}: {url}"
            if not target.exists():
                broken.append(f"{where} (no such file)")
            elif (
                parts.fragment
                and target.suffix == ".html"
                and (unquote(parts.fragment) not in anchors(target))
            ):
                broken.append(f"{where} (no such anchor)")
    return broken


def test_every_internal_link_and_anchor_resolves():
    broken = broken_links(HTML)
    assert not broken, "\n".join(broken)


def test_the_link_check_catches_a_missing_page_and_anchor(tmp_path):
    copy = tmp_path / "html"
    shutil.copytree(HTML, copy)
    (copy / "book" / "setup.html").unlink()
    intro = copy / "book" / "intro.html"
    intro.write_text(intro.read_text().replace("</body>", '<a href="#nowhere">x</a></body>'))
    broken = "\n".join(broken_links(copy))
    assert "setup.html (no such file)" in broken and "#nowhere (no such anchor)" in broken


def test_every_image_has_alt_text_or_a_caption():
    missing = []
    for page in pages():
        for img in soup(page).find_all("img"):
            figure = img.find_parent("figure")
            caption = figure.find("figcaption") if figure else None
            if not (img.get("alt") or "").strip() and not (
                caption and caption.get_text(strip=True)
            ):
                missing.append(f"{page.relative_to(HTML)}: {img.get('src')}")
    assert not missing, "\n".join(missing)


def test_every_page_declares_its_language():
    for page in pages():
        html = soup(page).find("html")
        if html is None:  # a bare redirect page
            continue
        assert html.get("lang") == "en", page.relative_to(HTML)


def test_the_404_page_exists_and_links_home():
    page = HTML / "404.html"
    assert page.exists()
    assert soup(page).find("a", id="home")


def test_no_table_is_left_as_raw_markdown():
    """A Markdown table printed by a cell must render as a table, not as a paragraph of
    pipes (myst-nb renders cell Markdown as commonmark, without tables, unless told)."""
    raw = []
    for page in pages():
        for paragraph in soup(page).find_all("p"):
            text = paragraph.get_text(" ", strip=True)
            if text.startswith("|") and text.count("|") >= 4:
                raw.append(f"{page.relative_to(HTML)}: {text[:80]}")
    assert not raw, "\n".join(raw)


def test_the_provenance_tables_list_every_cached_experiment():
    """The reproducing page says what this copy was built from: one row per experiment of
    the registry, each with the start of its weight file's tensor SHA-256; the setup page's
    hardware table has one row per experiment too."""
    built_from = soup(HTML / "book" / "reproducing.html").select("table")[0]
    rows = {
        cells[1]: cells[-1]
        for tr in built_from.select("tbody tr")
        for cells in [[td.get_text(strip=True) for td in tr.select("td")]]
    }
    assert set(rows) == set(experiments.REGISTRY)
    for name, sha_start in rows.items():
        assert len(sha_start) >= 12 and store.load(name).tensor_sha256.startswith(sha_start)
    hardware = soup(HTML / "book" / "setup.html").select("table")[-1]
    named = [tr.select("td")[0].get_text(strip=True) for tr in hardware.select("tbody tr")]
    assert sorted(named) == sorted(f"{e.label}: {e.name}" for e in experiments.REGISTRY.values())
