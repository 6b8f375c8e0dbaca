from shoplm.report import Section, markdown_table, write_report


def test_markdown_table_bolds_the_best_of_each_column():
    table = markdown_table({"a": {"x": 0.5, "y": 0.1}, "b": {"x": 0.25, "y": 0.2}})
    assert "| a | **0.5000** | 0.1000 |" in table and "| b | 0.2500 | **0.2000** |" in table


def test_write_report_writes_markdown_and_png(tmp_path):
    path = write_report(tmp_path, "T", [Section("S", {"m": {"ndcg@10": 0.3}}, chart="s.png")])
    assert "![S](s.png)" in path.read_text()
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
