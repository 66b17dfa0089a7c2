"""Sample models addressable by name: ``sample:resnet-fashion``, ``sample:resnet50``, ...

``resnet-fashion`` is a real ResNet trained on Fashion-MNIST, shipped in ``sample_models/`` with
its labeled test set and a calibration subset. The ImageNet-shaped ResNets are synthetic (random
weights, latency only), generated locally on first use into the cache folder; nothing is
downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelLoadError
from .paths import atomic_write, cache_dir, samples_dir

__all__ = ["Sample", "SAMPLES", "get_sample", "sample_path"]

_SYNTHETIC_VERSION = 1  # bump when build_resnet changes, so cached copies are rebuilt


@dataclass(frozen=True)
class Sample:
    """A named sample model and the data that comes with it."""

    name: str
    description: str
    latency_only: bool
    file: str | None = None  # inside sample_models/
    test_data: str | None = None  # labeled evaluation set inside sample_models/
    calib_data: str | None = None  # calibration subset inside sample_models/
    depth: int | None = None  # synthetic ResNet depth

    @property
    def test_data_path(self) -> Path | None:
        return samples_dir() / self.test_data if self.test_data else None

    @property
    def calib_data_path(self) -> Path | None:
        return samples_dir() / self.calib_data if self.calib_data else None


SAMPLES: dict[str, Sample] = {
    s.name: s
    for s in [
        Sample("resnet-fashion",
               "ResNet-18 layout for 28x28 grayscale, trained on Fashion-MNIST (10 classes); "
               "labeled test set (10,000) and calibration set (2,000) included",
               latency_only=False, file="resnet_fashion.onnx",
               test_data="fashion_mnist_test.npz", calib_data="fashion_mnist_calib.npz"),
        Sample("resnet50", "synthetic ImageNet-shaped ResNet-50, 224x224, random weights: "
               "latency only, its accuracy means nothing", latency_only=True, depth=50),
        Sample("resnet18", "synthetic ImageNet-shaped ResNet-18, 224x224, random weights: "
               "latency only, its accuracy means nothing", latency_only=True, depth=18),
    ]
}


def get_sample(name: str) -> Sample:
    key = name.removeprefix("sample:")
    if key not in SAMPLES:
        raise ModelLoadError(f"no sample named {key!r}",
                             f"samples are: {', '.join('sample:' + n for n in SAMPLES)}")
    return SAMPLES[key]


def sample_origin(source: str) -> Sample | None:
    """The sample a model is, or was built from (``sample:NAME+recipe``), else None."""
    if not source.startswith("sample:"):
        return None
    return SAMPLES.get(source.removeprefix("sample:").split("+", 1)[0])


def sample_path(name: str) -> Path:
    """The file of a sample, generating a synthetic one into the cache on first use."""
    s = get_sample(name)
    if s.file:
        path = samples_dir() / s.file
        if not path.is_file():
            raise ModelLoadError(f"the bundled sample file {path} is missing",
                                 "restore it from the repository (git checkout sample_models/)")
        return path
    path = cache_dir() / "samples" / f"resnet{s.depth}-synthetic-v{_SYNTHETIC_VERSION}.onnx"
    if not path.is_file():
        from .synthetic import build_resnet  # noqa: PLC0415

        atomic_write(path, build_resnet(s.depth or 50).SerializeToString())
    return path
