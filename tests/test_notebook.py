"""Execute notebooks/quickstart.ipynb end to end (a real, small benchmark run): slow."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quickstart_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kernel's tempfile.mkdtemp: inside tmp_path, removed after
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), "outputs stored"
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell's traceback, if any cell fails
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.get("output_type") == "error"]
    assert sum("image/png" in out.get("data", {}) for out in outputs) >= 4
    printed = "".join(out.get("text", "") for out in outputs if out.get("output_type") == "stream")
    assert "experiment nb: " in printed and "\ntotal: about " in printed  # the plan, before the run
    for use in ("storage", "write", "read", "balanced"):
        assert f"Recommended for {use}:" in printed
