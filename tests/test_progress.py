"""lmcore.progress: one progress bar for long chapter runs, off in the tests and the HTML build."""
import pytest

import lmcore
from lmcore.runtime import progress_enabled


def test_progress_is_off_where_the_environment_says_so(monkeypatch):
    monkeypatch.setenv("LMCORE_PROGRESS", "0")
    assert not progress_enabled()
    bar = lmcore.progress(range(3), desc="sweep")
    assert bar.disable and list(bar) == [0, 1, 2]       # disabled bars still iterate


@pytest.mark.parametrize("value", [None, "1", "yes"])
def test_progress_is_on_by_default_with_an_eta(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("LMCORE_PROGRESS", raising=False)
    else:
        monkeypatch.setenv("LMCORE_PROGRESS", value)
    assert progress_enabled()
    bar = lmcore.progress(total=5, desc="sweep")
    assert not bar.disable and bar.total == 5
    bar.update(2)
    assert "2/5" in str(bar)
    bar.close()
    assert lmcore.progress(range(2), disable=True).disable       # a caller can still turn its bar off


def test_the_make_targets_that_store_outputs_turn_progress_off():
    import pathlib
    text = (pathlib.Path(__file__).parents[1] / "Makefile").read_text()
    line = next(ln for ln in text.splitlines() if "LMCORE_PROGRESS" in ln and ":" in ln and "export" in ln)
    assert all(t in line.split(":")[0].split() for t in ("book", "test", "test-portable"))
