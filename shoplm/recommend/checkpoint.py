"""A trained user model on disk: `model.safetensors` + `item_ids.npy` + `params.json`
(plus `blend.json` and `train_log.json`), saved aside and swapped in whole.

Serving reads models through this module and `shoplm.recommend.model` only, never the trainer.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from shoplm.atomic import recover_dir, staged_dir
from shoplm.device import pick_device
from shoplm.errors import RecommendModelError
from shoplm.recommend.model import UserModel, UserModelConfig

FORMAT_VERSION = 3  # 2: new items borrow their text neighbours' ID vector and popularity; 3: id_weight, new_item_shift


def save_model(model: UserModel, item_ids: list[str], out: Path, extra: dict,
               files: dict[str, str] | None = None) -> None:
    """`out/model.safetensors` (weights and buffers), `out/item_ids.npy`, `out/params.json`
    and any extra text `files` (name -> content), written aside and swapped in whole, so a
    crash or a reload during the save sees the previous model or this one, never a mix."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    params = {"version": FORMAT_VERSION, "model": asdict(model.cfg), **extra}
    with staged_dir(out) as tmp:
        save_file(state, str(tmp / "model.safetensors"))
        np.save(tmp / "item_ids.npy", np.array(item_ids, dtype=str), allow_pickle=False)
        (tmp / "params.json").write_text(json.dumps(params, indent=2))
        for name, text in (files or {}).items():
            (tmp / name).write_text(text)


def load_model(directory: Path, device: str | None = None) -> tuple[UserModel, list[str], dict]:
    """(model, item_ids, params) saved by `save_model`."""
    from safetensors.torch import load_file

    directory = recover_dir(directory)
    files = [directory / name for name in ("model.safetensors", "item_ids.npy", "params.json")]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise RecommendModelError(
            f"{directory}: missing {', '.join(missing)}; expected a directory written by "
            "`shoplm train recommend --out DIR`, train one first"
        )
    params = json.loads(files[2].read_text())
    if params.get("version") != FORMAT_VERSION:
        raise RecommendModelError(f"{directory}: model format version {params.get('version')}, this shoplm reads "
                                  f"version {FORMAT_VERSION}; retrain with `shoplm train recommend`")
    model = UserModel(UserModelConfig(**params["model"]))
    model.load_state_dict(load_file(str(files[0])))
    model.to(pick_device(device)).eval()
    item_ids = [str(i) for i in np.load(files[1], allow_pickle=False)]
    return model, item_ids, params


def check_same_catalog(model_items: list[str], item_ids: list[str], directory: Path) -> None:
    """A saved model scores items by position: it must be used on the catalog it was trained on."""
    if model_items != item_ids:
        raise RecommendModelError(
            f"{directory} was trained on a catalog of {len(model_items)} items that differs from --items "
            f"({len(item_ids)} items); evaluate with the files it was trained on, or retrain"
        )
