"""Static visual encoding (SVE): a 2-D ResNet on the two central adjacent frames of a snippet."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet34
from torchvision.models.resnet import BasicBlock, ResNet

# torchvision's ImageNet normalisation, applied to frames given in [-1, 1]
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class SmallResNet(nn.Module):
    """A BasicBlock ResNet with configurable widths (the small config's SVE backbone)."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128), blocks: int = 1):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 7, 2, 3, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        layers, cin = [], widths[0]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            down = (
                None
                if stride == 1 and cin == w
                else nn.Sequential(nn.Conv2d(cin, w, 1, stride, bias=False), nn.BatchNorm2d(w))
            )
            layers.append(BasicBlock(cin, w, stride, down))
            layers += [BasicBlock(w, w) for _ in range(blocks - 1)]
            cin = w
        self.layers = nn.Sequential(*layers)
        self.out_dim = widths[-1]
        for m in self.modules():  # as torchvision's ResNets (see InceptionI3d on frozen BN)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x)).mean(dim=(2, 3))


def build_backbone(arch: str) -> tuple[nn.Module, int]:
    """``resnet34``: torchvision's architecture without ``fc`` (512-d); ``small``: SmallResNet."""
    if arch == "resnet34":
        net: ResNet = resnet34(weights=None)
        net.fc = nn.Identity()
        return net, 512
    if arch == "small":
        net = SmallResNet()
        return net, net.out_dim
    if arch == "small512":  # 2 x 512 = 1024 = the Kinetics I3D's Stage-4 width
        net = SmallResNet((32, 64, 128, 512))
        return net, net.out_dim
    raise ValueError(f"unknown SVE backbone {arch!r}")


class StaticVisualEncoder(nn.Module):
    """``X_i^V = Concat(V(X_i[T/2]), V(X_i[T/2 + 1]))`` for every snippet.

    Input snippets ``[B*N, 3, T, H, W]`` in [-1, 1]; output ``[B*N, 2 * d]``.
    """

    def __init__(self, arch: str = "resnet34"):
        super().__init__()
        self.backbone, self.frame_dim = build_backbone(arch)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def out_dim(self) -> int:
        return 2 * self.frame_dim

    @staticmethod
    def central_frames(snippets: torch.Tensor) -> torch.Tensor:
        """The two central adjacent frames ``(T/2, T/2 + 1)`` of ``[B*N, 3, T, H, W]``."""
        t = snippets.shape[2] // 2
        return snippets[:, :, t : t + 2]

    def forward(self, snippets: torch.Tensor) -> torch.Tensor:
        return self.forward_frames(self.central_frames(snippets))

    def forward_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B*N, 3, 2, H, W]`` central frames -> ``[B*N, 2 * d]``."""
        bn = frames.shape[0]
        x = frames.permute(0, 2, 1, 3, 4).reshape(bn * 2, *frames.shape[1:2], *frames.shape[3:])
        x = ((x + 1) / 2 - self.mean) / self.std
        f = self.backbone(x)  # [B*N*2, d]
        return f.view(bn, 2 * f.shape[-1])  # concat along channels
