from superposition import paths, tables


def test_markdown_table():
    table = tables.markdown(["a", "b"], [[1, "x|y"], [2.5, None]]).data
    assert table.splitlines() == ["| a | b |", "| --- | --- |", "| 1 | x\\|y |", "| 2.5 | None |"]


def test_weights_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(paths.ENV_FOLDER, raising=False)
    assert paths.weights_folder().name == "weights"
    monkeypatch.setenv(paths.ENV_FOLDER, str(tmp_path))
    assert paths.weights_folder() == tmp_path
