from superposition import paths, tables


def test_markdown_table():
    table = tables.markdown(["a", "b"], [[1, "x|y"], [2.5, None]]).data
    assert table.splitlines() == ["| a | b |", "| --- | --- |", "| 1 | x\\|y |", "| 2\\.5 | None |"]


def _rendered(table: str) -> str:
    """The table as MyST renders it (markdown-it, as myst-parser uses it, raw HTML allowed)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable("table").render(table)


HOSTILE = '<img src=x onerror="alert(1)"> [link](javascript:alert(1)) **bold** $x$ `code` a_b_c'


def test_a_cell_shows_its_text_exactly_and_never_as_markup():
    """A weight file's metadata reaches tables as text: whatever it holds, the page shows
    those characters and no element (today's code let the <img> through)."""
    from bs4 import BeautifulSoup

    html = _rendered(tables.markdown(["processor"], [[HOSTILE], ["x\x1b[31m|y"]]).data)
    cells = BeautifulSoup(html, "html.parser").select("td")
    assert [c.get_text() for c in cells] == [HOSTILE, "x\\x1b[31m|y"]
    assert all(not c.find() for c in cells)  # no tag inside a cell: text only


def test_markup_cells_keep_their_html_and_escape_what_they_are_given():
    from bs4 import BeautifulSoup

    cell = tables.html('<a href="../weights/{}" download>{}</a>', 'a"b.bin', "<i>x</i>")
    html = _rendered(tables.markdown(["file"], [[cell]]).data)
    (link,) = BeautifulSoup(html, "html.parser").select("td a")
    assert link["href"] == '../weights/a"b.bin' and link.get_text() == "<i>x</i>"
    assert not link.find()


def test_weights_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(paths.ENV_FOLDER, raising=False)
    assert paths.weights_folder().name == "weights"
    monkeypatch.setenv(paths.ENV_FOLDER, str(tmp_path))
    assert paths.weights_folder() == tmp_path
