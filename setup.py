from setuptools import find_packages, setup

setup(
    name="gbml_ext",
    version="0.1.0",
    description="Gradient-based meta-learning on learn2learn: MAML, FOMAML, ANIL, Meta-SGD, "
    "Reptile and Kronecker-factored meta-optimizers (Arnold, Iqbal & Sha, AISTATS 2021).",
    packages=find_packages(include=["gbml_ext", "gbml_ext.*"]),
    python_requires=">=3.11",
    # learn2learn is declared loosely so that a copy built by scripts/bootstrap.sh
    # satisfies it: pip must never try to rebuild it from the broken sdist.
    install_requires=[
        "torch>=2.0",
        "torchvision",
        "learn2learn>=0.2.0",
        "numpy",
        "tqdm",
        "matplotlib",
    ],
    extras_require={"test": ["pytest"]},
    entry_points={"console_scripts": [
        "gbml-train=gbml_ext.runner.cli:main",
        "gbml-compare=gbml_ext.runner.compare:main",
        "gbml-eval=gbml_ext.runner.cli:eval_main",
    ]},
)
