"""Index and model files are written whole and swapped in: a SIGKILL at any moment of a
save leaves the previous version (or the new one) loadable, never a mix of the two."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from shoplm.atomic import recover_dir, replace_dir, staged_dir
from shoplm.search.index import load_index
from shoplm.recommend.checkpoint import load_model

KILLS = 12

# Saves version 0, 1, 2, ... of an index and of a model into the same directories, forever.
# Version v has every vector equal to v and its ids named after v, so a reader can tell a
# complete version from a mix.
WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    import numpy as np
    import torch
    from shoplm.search.index import FaissIndex, ItemMeta
    from shoplm.recommend.checkpoint import save_model
    from shoplm.recommend.model import UserModel, UserModelConfig

    out = Path(sys.argv[1])
    n, dim = 2000, 32
    model = UserModel(UserModelConfig(n_items=n, text_dim=dim, dim=dim, use_text=False, cooc_path=False))
    version = 0
    while True:
        ids = [f"v{version}-{i}" for i in range(n)]
        index = FaissIndex(dim)
        index.add(ids, np.full((n, dim), float(version), dtype=np.float32), [ItemMeta(None, None, True)] * n)
        index.save(out / "index")
        with torch.no_grad():
            model.item_bias.fill_(float(version))
        save_model(model, ids, out / "model", {"version_tag": version})
        (out / "done").write_text(str(version))
        version += 1
""")


def _check_index(directory: Path) -> int:
    index = load_index(directory)
    version = int(index.ids[0].split("-")[0][1:])
    assert all(i.startswith(f"v{version}-") for i in index.ids)
    assert np.all(index.vectors == version)
    return version


def _check_model(directory: Path) -> int:
    model, item_ids, params = load_model(directory, "cpu")
    version = params["version_tag"]
    assert all(i.startswith(f"v{version}-") for i in item_ids)
    bias = model.item_bias.detach()
    assert float(bias.max()) == float(bias.min()) == float(version)
    return version


def test_sigkill_during_index_and_model_saves_leaves_a_loadable_version(tmp_path):
    rng = random.Random(7)
    versions = []
    for kill in range(KILLS):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.monotonic() + 120
        while not (tmp_path / "done").exists():  # the first complete save, then a random moment
            assert writer.poll() is None and time.monotonic() < deadline, "the writer died before its first save"
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        versions.append((_check_index(tmp_path / "index"), _check_model(tmp_path / "model")))
        (tmp_path / "done").unlink()
    # the kills landed at different points of the save loop: several versions were seen
    assert len({v for pair in versions for v in pair}) > 1, versions


def test_a_crash_between_the_two_renames_is_recovered(tmp_path):
    target = tmp_path / "index"
    with staged_dir(target) as tmp:
        (tmp / "params.json").write_text("old")
    # the state replace_dir leaves if killed after moving the old copy aside
    aside = tmp_path / ".index.old-crash"
    os.replace(target, aside)
    assert not target.exists()
    assert (recover_dir(target) / "params.json").read_text() == "old"
    assert not aside.exists()


def test_a_failed_save_leaves_the_old_directory_and_no_litter(tmp_path):
    target = tmp_path / "model"
    with staged_dir(target) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(RuntimeError):
        with staged_dir(target) as tmp:
            (tmp / "weights").write_text("half of v2")
            raise RuntimeError("disk full")
    assert (target / "weights").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_replace_dir_swaps_a_directory_in_for_another(tmp_path):
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "f").write_text("new")
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "f").write_text("old")
    replace_dir(tmp_path / "new", tmp_path / "target")
    assert (tmp_path / "target" / "f").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]
