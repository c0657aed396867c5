"""Omniglot for the GPU check's training step and for `gpu_headline.py`: the wheelhouse's
archive (or, in a dry run without it, a random-stroke stand-in in Omniglot's layout), the
overrides that point a runner config at it, and a background job that decodes it into the
runner's cache while the GPU steps before training run.
"""
from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path
from typing import List, Optional, Tuple

__all__ = ["Data", "characters_in", "fake_omniglot", "omniglot_archive", "warm_omniglot_cache"]


def fake_omniglot(folder: Path, characters: int = 12, drawings: int = 4) -> Path:
    """A tiny stand-in in Omniglot's layout (random strokes), for dry runs without the data."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    tree = folder / "omniglot-py"
    for index in range(characters):
        subset = "images_background" if index < characters // 2 else "images_evaluation"
        character = tree / subset / f"Fake{index % 3}" / f"character{index + 1:02d}"
        character.mkdir(parents=True)
        for drawing in range(drawings):
            ink = rng.random((105, 105)) < 0.1
            Image.fromarray(~ink).convert("1").save(character / f"{index:04d}_{drawing:02d}.png")
    archive = folder / "omniglot-py.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="omniglot-py")
    return archive


def characters_in(archive: Path) -> int:
    """How many character folders (with drawings) an Omniglot archive holds."""
    with tarfile.open(archive) as tar:
        return len({m.name.rsplit("/", 1)[0] for m in tar.getmembers()
                    if m.isfile() and m.name.endswith(".png")})


def omniglot_archive(wheelhouse: Path, work: Path, dry_run: bool
                     ) -> Tuple[Optional[Path], str, List[str]]:
    """(archive or None, where it came from, data overrides): the wheelhouse's Omniglot, or in a
    dry run without it a random-stroke stand-in; None with the reason when it is absent."""
    archive = wheelhouse / "omniglot" / "omniglot-py.tar.gz"
    source = "the wheelhouse's Omniglot"
    if not archive.is_file():
        absent = wheelhouse / "omniglot" / "ABSENT.txt"
        why = absent.read_text().strip() if absent.is_file() else f"{archive} is missing"
        if not dry_run:
            return None, f"Omniglot ABSENT: {why}", []
        archive = fake_omniglot(work / "fake-omniglot")
        source = f"a random-stroke stand-in in Omniglot's layout (dry run; {why})"
    characters = characters_in(archive)
    overrides = [f"data.root={archive}", f"data.options.cache_dir={work / 'cache'}"]
    if characters < 1623:  # a stand-in or a subset: cut it 60/20/20 instead of 1100/100/423
        held_out = max(2, round(characters * 0.2))
        overrides.append(f"data.options.split_sizes=[{characters - 2 * held_out}, "
                         f"{held_out}, {held_out}]")
    return archive, f"{characters} characters from {source}", overrides


Data = Tuple[Optional[Path], str, List[str]]
_WARM = ("import sys; from gbml_ext.runner.config import load_config; "
         "from gbml_ext.runner.build import build_sources; "
         "config = load_config(sys.argv[1], sys.argv[2:]); build_sources(config.data, config.seed)")


def warm_omniglot_cache(repo: Path, work: Path, data: Data) -> Optional[subprocess.Popen]:
    """Starts decoding Omniglot's 32,460 drawings into the runner's cache in the background (a
    CPU job that overlaps the GPU steps before training); None without data. The cache is
    written atomically, so a training run that starts first only decodes again."""
    archive, _, overrides = data
    if archive is None:
        return None
    log = open(work / "warm-cache.log", "w")
    return subprocess.Popen([sys.executable, "-c", _WARM,
                             "experiments/configs/omniglot/5w1s/maml.toml", *overrides],
                            cwd=repo, stdout=log, stderr=subprocess.STDOUT)
