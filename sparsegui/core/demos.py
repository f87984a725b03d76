"""Built-in demo models, made in code (no downloads).

``lenet`` is exactly the network of the PyTorch pruning tutorial; ``resnet`` is a small CNN with BatchNorm and
residual blocks; ``transformer`` is a small encoder with embeddings, multi-head attention and LayerNorm.
Each factory is importable as ``sparsegui.core.demos:NAME`` so it also serves as an ``--arch`` for exports.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class LeNet(nn.Module):
    """The tutorial's LeNet: conv1 1→6 3×3, conv2 6→16 3×3, fc1 400→120, fc2 120→84, fc3 84→10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3)
        self.conv2 = nn.Conv2d(6, 16, 3)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)  # the tutorial's x.view(-1, x.nelement() // x.shape[0])
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class BasicBlock(nn.Module):
    """A ResNet basic block: two 3×3 convolutions with BatchNorm and an identity or 1×1 shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class TinyResNet(nn.Module):
    """A small ResNet for 32×32 RGB images (CIFAR-sized), ~0.7M parameters."""

    def __init__(self, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = nn.Sequential(BasicBlock(width, width), BasicBlock(width, width))
        self.layer2 = nn.Sequential(BasicBlock(width, 2 * width, 2), BasicBlock(2 * width, 2 * width))
        self.layer3 = nn.Sequential(BasicBlock(2 * width, 4 * width, 2), BasicBlock(4 * width, 4 * width))
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


class TinyTransformer(nn.Module):
    """A small text encoder: token + position embeddings, encoder layers, LayerNorm and a classifier head."""

    def __init__(
        self, vocab: int = 1000, d_model: int = 64, heads: int = 4, layers: int = 2, max_len: int = 128
    ) -> None:
        super().__init__()
        self.tok_embed = nn.Embedding(vocab, d_model)
        self.pos_embed = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, dim_feedforward=4 * d_model, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.tok_embed(tokens) + self.pos_embed(pos)
        x = self.norm(self.encoder(x))
        return self.head(x.mean(dim=1))


def lenet() -> nn.Module:
    return LeNet()


def resnet() -> nn.Module:
    return TinyResNet()


def transformer() -> nn.Module:
    return TinyTransformer()


DEMOS: dict[str, Callable[[], nn.Module]] = {"lenet": lenet, "resnet": resnet, "transformer": transformer}
DEFAULT_DEMO = "lenet"


def demo_example_input(name: str) -> torch.Tensor:
    """A batch the demo's forward accepts (used to compare outputs before and after export)."""
    gen = torch.Generator().manual_seed(0)
    if name == "lenet":
        return torch.randn(2, 1, 28, 28, generator=gen)
    if name == "resnet":
        return torch.randn(2, 3, 32, 32, generator=gen)
    if name == "transformer":
        return torch.randint(0, 1000, (2, 16), generator=gen)
    raise KeyError(name)


def build_demo(name: str, seed: int = 0) -> nn.Module:
    """Build demo ``name`` with weights drawn from a fixed seed, in eval mode."""
    if name not in DEMOS:
        from sparsegui.core.errors import LoadError

        raise LoadError(f"unknown demo model {name!r}; choose one of: {', '.join(DEMOS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DEMOS[name]()
    return model.eval()
