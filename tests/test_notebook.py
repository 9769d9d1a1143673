"""The quickstart notebook runs end to end (at a tiny size)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_executes(monkeypatch):
    monkeypatch.setenv("EVOSIM_NOTEBOOK_SMALL", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 6  # tree, AE losses, MAE curve, tanglegram, latent space, scatter
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "decoded AE MSE" in text and "generated between species 1 and 2: (100, " in text


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
