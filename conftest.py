"""Repository-wide test fixtures (every test path: tests/, gperc_plugins/*/tests, bench/tests).

The converted-samples cache (`gperc_core.data.cache`) of every test is a fresh temporary folder
(``GPERC_DATA_CACHE``), so tests never read or fill the user's ``~/.cache/gperc/converted``, and
conversion runs in this process (``GPERC_NUM_PROC=1``: forking workers costs more than tiny splits
take). ``GPERC_CACHE`` itself is left alone: the audio plugin synthesises spoken-digits there and the
text plugin keeps its trained tokenizers there, which would otherwise be rebuilt in every test.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _gperc_data_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GPERC_DATA_CACHE", str(tmp_path_factory.mktemp("gperc-data-cache")))
    monkeypatch.setenv("GPERC_NUM_PROC", "1")
    yield
