"""Installs tfwd; the model zoo and the tuner install as tfwd.models and tfwd.tuning."""
from setuptools import find_packages, setup

setup(
    name="tfwd",
    version="0.1.0",
    description=(
        "Decoupled weight decay, K-FAC and curvature noise for TensorFlow 2 / Keras 3"
    ),
    python_requires=">=3.10",
    packages=find_packages(include=["tfwd", "tfwd.*"]) + ["tfwd.models", "tfwd.tuning"],
    package_dir={"tfwd.models": "models", "tfwd.tuning": "tuning"},
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<4",
        "keras-tuner>=1.4.8,<1.5",
        "tensorflow-datasets>=4.9.10,<4.10",
        # TFDS 4.9.10 with etils 1.15 imports it without declaring it.
        "importlib_resources",
        "absl-py>=2.1",
        "numpy>=1.26",
        "matplotlib>=3.8",
        # keras-tuner imports it in every trial; TensorFlow 2.21 no longer pulls it in.
        "tensorboard>=2.21,<2.22",
    ],
    extras_require={"test": ["pytest>=8", "pytest-xdist>=3"]},
)
