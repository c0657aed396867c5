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


def read_requirements(path: str) -> list:
    """The requirements in a requirements file, without comments and blank lines."""
    lines = (line.split("#", 1)[0].strip() for line in (HERE / path).read_text().splitlines())
    return [line for line in lines if line]


setup(
    name="gbml_ext",
    version=read_version(),
    description="Gradient-based meta-learning on learn2learn: MAML, FOMAML, ANIL, Meta-SGD, "
    "Reptile and Kronecker-factored meta-optimizers (Arnold, Iqbal & Sha, AISTATS 2021).",
    packages=find_packages(include=["gbml_ext", "gbml_ext.*"]),
    python_requires=">=3.11",
    # learn2learn is declared loosely so that a copy built by scripts/bootstrap.sh
    # satisfies it: pip must never try to rebuild it from the broken sdist.
    # torch and torchvision: the pins scripts/bootstrap.sh installs, from one file.
    install_requires=read_requirements("requirements/torch.txt") + [
        "learn2learn>=0.2.0",
        "numpy",
        "Pillow>=9.1",
        "tqdm",
        "matplotlib",
    ],
    extras_require={"test": ["pytest", "pytest-xdist"], "lint": ["ruff", "mypy"],
                    # The benchmark's optional peers (benchmarks/peers/), imported only if present.
                    "bench": ["higher==0.2.1", "torchopt==0.7.3"],
                    # --launcher slurm (gbml_ext.launch.slurm).
                    "cluster": ["submitit>=1.5"]},
    entry_points={"console_scripts": [
        "gbml-train=gbml_ext.runner.cli:main",
        "gbml-compare=gbml_ext.runner.compare:main",
        "gbml-eval=gbml_ext.runner.cli:eval_main",
    ]},
)
