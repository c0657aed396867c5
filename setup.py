import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def read_version() -> str:
    """The version in gbml_ext/_version.py, read without importing the package."""
    text = (HERE / "gbml_ext" / "_version.py").read_text()
    match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, flags=re.M)
    if match is None:
        raise RuntimeError("gbml_ext/_version.py does not set __version__")
    return match.group(1)


TEST = ["pytest", "pytest-xdist", "selenium>=4.10"]
LINT = ["ruff", "mypy"]
EXTRAS = {
    "test": TEST,
    "lint": LINT,
    # Everything a contributor needs: the tests, the lint and `make dist`'s builder.
    "dev": TEST + LINT + ["build"],
    # `make docs`: the site and its API reference.
    "docs": ["mkdocs>=1.5", "mkdocs-material>=9", "mkdocstrings[python]>=0.24"],
    # Submitting runs to a Slurm cluster.
    "cluster": ["submitit>=1.5"],
    # gbml-tune: hyperparameter search with Optuna.
    "tune": ["optuna>=3.4"],
    # The benchmark's optional peers (benchmarks/peers/), imported only if present.
    "bench": ["higher==0.2.1", "torchopt==0.7.3"],
    "jax": ["jax"],
    # Logging backends (logging.backends), each imported only when a run names it.
    "tensorboard": ["tensorboard>=2.14"],
    "mlflow": ["mlflow>=2.10"],
    "wandb": ["wandb>=0.17"],
}


setup(
    name="gbml_ext",
    version=read_version(),
    description="Gradient-based meta-learning on learn2learn: MAML, FOMAML, ANIL, Meta-SGD, "
    "Reptile and Kronecker-factored meta-optimizers (Arnold, Iqbal & Sha, AISTATS 2021).",
    # The experiment configs ship as package data: experiments/configs/ (where a clone keeps
    # them) becomes gbml_ext/configs/ in the wheel, found by gbml_ext.runner.shipped.
    packages=find_packages(include=["gbml_ext", "gbml_ext.*"]) + ["gbml_ext.configs"],
    package_dir={"gbml_ext.configs": "experiments/configs"},
    package_data={"gbml_ext.configs": ["**/*.toml"]},
    python_requires=">=3.11",
    # learn2learn is declared loosely so that a copy built by scripts/build_learn2learn.sh
    # (`make dist` or scripts/bootstrap.sh) satisfies it: pip must never try to rebuild it
    # from the sdist, which does not build on Python 3.11.
    # torch and torchvision are ranges, so that installing gbml_ext keeps the torch an
    # environment already has. Tested: torch 2.14.1 with torchvision 0.29.1 only (the pins in
    # requirements/torch.txt, which scripts/bootstrap.sh installs); older versions in the
    # range are untested.
    install_requires=[
        "torch>=2.1,<3",
        "torchvision>=0.16,<1",
        "learn2learn>=0.2.0",
        "numpy",
        "Pillow>=9.1",
        "tqdm",
        "matplotlib",
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": [
        "gbml-train=gbml_ext.runner.cli:main",
        "gbml-compare=gbml_ext.compare:main",
        "gbml-eval=gbml_ext.runner.cli:eval_main",
        "gbml-tune=gbml_ext.tune.cli:main",
    ]},
)
