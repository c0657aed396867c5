"""Dataset names and the module layout of `gbml_ext.data`: one canonical spelling per dataset,
aliases mapped onto it, and modules that import each other without cycles."""
import ast
from pathlib import Path

import pytest

import gbml_ext.data
from gbml_ext.data import build_task_sources, canonical_dataset_name, dataset_names
from vision_fixtures import write_bertinetto_splits, write_cifar100_tree

DATA_PACKAGE = Path(gbml_ext.data.__file__).parent


@pytest.mark.parametrize("alias, canonical", [
    ("cifarfs", "cifar-fs"), ("cifar_fs", "cifar-fs"), ("mini_imagenet", "mini-imagenet"),
    ("miniimagenet", "mini-imagenet"), ("omniglot", "omniglot"), ("fc100", "fc100"),
    ("cifar-fs", "cifar-fs"), ("mini-imagenet", "mini-imagenet")])
def test_aliases_map_to_one_canonical_name(alias, canonical):
    assert canonical_dataset_name(alias) == canonical
    assert canonical in dataset_names()


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'") as error:
        canonical_dataset_name("imagenet")
    assert all(name in str(error.value) for name in dataset_names())


def test_build_task_sources_accepts_an_alias(tmp_path):
    names = [f"class{i}" for i in range(6)]
    root = write_cifar100_tree(tmp_path / "data", names, images_per_class=3)
    write_bertinetto_splits(root, {"train": names[:2], "val": names[2:4], "test": names[4:]})
    sources = build_task_sources("cifar_fs", root, ways=2, shots=1, queries=1, seed=0,
                                 cache_dir=tmp_path / "cache")
    assert sources["test"].sample().support_x.shape == (2, 3, 32, 32)


def local_imports(module: Path) -> set[str]:
    """Names of the sibling modules `module` imports (`from .x import ...`)."""
    imported = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            imported.add(node.module or "")
    return imported


def test_data_modules_import_each_other_without_cycles_or_lazy_imports():
    modules = {path.stem: path for path in DATA_PACKAGE.glob("*.py") if path.stem != "__init__"}
    assert "vision" not in modules
    graph = {name: local_imports(path) & set(modules) for name, path in modules.items()}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        if name not in done:
            for imported in graph[name]:
                visit(imported, (*path, name))
            done.add(name)
    for name in graph:
        visit(name, ())
    assert not any("importlib" in path.read_text() for path in modules.values())


def test_public_names_are_importable_from_the_package():
    assert sorted(gbml_ext.data.__all__) == gbml_ext.data.__all__
    for name in gbml_ext.data.__all__:
        assert getattr(gbml_ext.data, name) is not None
