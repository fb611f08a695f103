"""CLIPO's contrastive head (docs/algorithms.md#clipo): a bias-free projection with L2-normalised output."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

HEAD_KINDS = ("linear", "mlp")
_CONFIG_NAME = "head_config.json"
_WEIGHTS_NAME = "head.safetensors"


@dataclass(frozen=True)
class HeadConfig:
    """What is needed to rebuild a :class:`ContrastiveHead`; saved beside its weights."""

    hidden_size: int
    output_size: int = 512
    kind: str = "linear"


class ContrastiveHead(nn.Module):
    """Projects pooled trajectory embeddings ``h [N, H]`` to unit vectors ``z [N, D]``.

    ::

        linear (default): z = normalize(W h),            W ∈ R^{D×H}
        mlp            : z = normalize(W2 ReLU(W1 h)),   W1 ∈ R^{H×H}, W2 ∈ R^{D×H}

    Both layers are bias-free; ``normalize`` is ``F.normalize(p=2, dim=1, eps=1e-12)``. PyTorch's default
    init, as the official code. The paper uses ``D = 512`` (GSM8K) or ``2048`` (MATH).
    """

    def __init__(self, hidden_size: int, output_size: int = 512, kind: str = "linear"):
        super().__init__()
        if kind not in HEAD_KINDS:
            raise ValueError(f"ContrastiveHead: kind must be one of {HEAD_KINDS}, got {kind!r}")
        if hidden_size <= 0 or output_size <= 0:
            raise ValueError(f"ContrastiveHead: sizes must be positive, got hidden={hidden_size}, output={output_size}")
        self.config = HeadConfig(hidden_size=hidden_size, output_size=output_size, kind=kind)
        if kind == "linear":
            self.projection = nn.Linear(hidden_size, output_size, bias=False)
        else:
            self.projection = nn.Sequential(
                nn.Linear(hidden_size, hidden_size, bias=False),
                nn.ReLU(),
                nn.Linear(hidden_size, output_size, bias=False),
            )

    def forward(self, hidden: Tensor) -> Tensor:
        """``hidden [N, H]`` (any float dtype, cast to the head's) → ``z [N, D]`` with ``‖z_i‖ = 1``."""
        weight_dtype = next(self.parameters()).dtype
        return F.normalize(self.projection(hidden.to(weight_dtype)), p=2, dim=1, eps=1e-12)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``head_config.json`` and ``head.safetensors`` into ``directory`` (created if needed)."""
        from safetensors.torch import save_file

        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / _CONFIG_NAME).write_text(json.dumps(asdict(self.config), indent=2))
        state = {name: tensor.detach().contiguous().cpu() for name, tensor in self.state_dict().items()}
        save_file(state, str(path / _WEIGHTS_NAME))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device | None = None) -> "ContrastiveHead":
        """Rebuild a head saved by :meth:`save_pretrained`."""
        from safetensors.torch import load_file

        path = Path(directory)
        config_file, weights_file = path / _CONFIG_NAME, path / _WEIGHTS_NAME
        for required in (config_file, weights_file):
            if not required.is_file():
                raise FileNotFoundError(
                    f"ContrastiveHead.from_pretrained: {required} is missing; point to a folder written by "
                    "ContrastiveHead.save_pretrained (it holds head_config.json and head.safetensors)"
                )
        config = HeadConfig(**json.loads(config_file.read_text()))
        head = cls(config.hidden_size, config.output_size, config.kind)
        head.load_state_dict(load_file(str(weights_file)))
        return head.to(device) if device is not None else head
