"""The PartField network as plain `nn.Module`s.

Module names match the released checkpoint's state_dict keys (see
shared/partfield_reference/state_dict_manifest.json), quirks included, so
`model_objaverse.ckpt` loads strictly. Shapes in comments are for batch B, N input
points, R = plane resolution, C = channels. The released configuration is
`PartFieldConfig.released()`; smaller members of the family run on the same code.

Inference skips the work whose output is discarded: PVConv blocks 1-3, the SDF
decoder and the SDF output channels are kept only as parameters.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import PartFieldConfig

# ---------------------------------------------------------------------------
# Point encoder (PVConv)
# ---------------------------------------------------------------------------


class SharedMLP(nn.Module):
    """Per-point Conv1d(k1) -> InstanceNorm1d -> ReLU. Keys: `layers.0`."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv1d(in_channels, out_channels, 1),
            nn.InstanceNorm1d(out_channels, eps=1e-5),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, N) -> (B, C_out, N)
        return self.layers(x)


class PVConv(nn.Module):
    """Point-voxel convolution: a voxel branch on an R^3 grid plus a per-point branch."""

    def __init__(self, in_channels: int, out_channels: int, resolution: int):
        super().__init__()
        self.resolution = resolution
        self.voxel_layers = nn.Sequential(
            nn.Conv3d(in_channels, out_channels, 3, padding=1),
            nn.InstanceNorm3d(out_channels, eps=1e-4),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv3d(out_channels, out_channels, 3, padding=1),
            nn.InstanceNorm3d(out_channels, eps=1e-4),
            nn.LeakyReLU(0.1, inplace=True),
        )
        self.point_features = SharedMLP(in_channels, out_channels)

    def voxelize(self, features: torch.Tensor, coords: torch.Tensor):
        """Mean of point features per voxel.

        features (B, C, N), coords (B, N, 3) in [-1, 1] -> volume (B, C, R, R, R) laid out
        (D, H, W) = (x, y, z), and the clamped unrounded grid coordinates (B, N, 3).
        """
        r = self.resolution
        b, c, n = features.shape
        grid = ((coords + 1.0) * 0.5 * r).clamp(0, r - 1)  # (B, N, 3)
        idx = torch.round(grid).long()
        flat = (idx[..., 0] * r + idx[..., 1]) * r + idx[..., 2]  # (B, N)
        flat = flat + (torch.arange(b, device=coords.device) * r**3)[:, None]
        flat = flat.reshape(-1)
        src = features.permute(0, 2, 1).reshape(b * n, c)  # (B*N, C)
        sums = src.new_zeros(b * r**3, c).index_add_(0, flat, src)
        counts = src.new_zeros(b * r**3).index_add_(0, flat, src.new_ones(b * n))
        means = sums / counts.clamp(min=1).unsqueeze(1)
        volume = means.reshape(b, r, r, r, c).permute(0, 4, 1, 2, 3)
        return volume.contiguous(), grid

    def devoxelize(self, volume: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """Trilinear read-back of (B, C, R, R, R) at the points -> (B, C, N).

        Quirk kept from the release: the sampling grid's last axis is given in (x, y, z)
        order, which grid_sample reads as (W, H, D); each point reads the volume at (z, y, x).
        """
        r = self.resolution
        g = (grid * 2.0 + 1.0) / r - 1.0  # (B, N, 3)
        out = F.grid_sample(
            volume, g[:, :, None, None, :], mode="bilinear", padding_mode="border", align_corners=False
        )  # (B, C, N, 1, 1)
        return out[:, :, :, 0, 0]

    def forward(self, features: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        # features (B, C_in, N), coords (B, N, 3) -> (B, C_out, N)
        volume, grid = self.voxelize(features, coords)
        volume = self.voxel_layers(volume)
        return self.devoxelize(volume, grid) + self.point_features(features)


class PointEncoder(nn.Module):
    """`pvcnn.pc_encoder`: PVConv block 0 is used; blocks 1-3 exist only as released weights."""

    def __init__(self, cfg: PartFieldConfig):
        super().__init__()
        blocks = [PVConv(cfg.point_in_channels, cfg.pvconv_channels, cfg.voxel_resolution)]
        if cfg.dead_modules:
            # Computed by the original but discarded; never run here.
            c = cfg.pvconv_channels
            for cin, cout, res in ((c, 128, 16), (128, 128, 16), (128, c, 8)):
                blocks.append(PVConv(cin, cout, res))
        self.encoder = nn.ModuleList(blocks)
        self.point_normals = cfg.point_normals

    def forward(self, points: torch.Tensor, normals: torch.Tensor | None = None) -> torch.Tensor:
        # points (B, N, 3) [, unit normals (B, N, 3)] -> per-point features (B, C, N)
        if self.point_normals:
            if normals is None or normals.shape != points.shape:
                raise ValueError("this network reads a normal per input point; pass normals shaped like the points")
            nx, ny, nz = normals.to(points.dtype).unbind(-1)
            feats = torch.cat([points, torch.stack([nx * nx, ny * ny, nz * nz, nx * ny, ny * nz, nx * nz], -1)], -1)
        else:
            feats = torch.cat([points, 2.0 * points, torch.zeros_like(points[..., :2])], dim=-1)
        return self.encoder[0](feats.transpose(1, 2).contiguous(), points)


# ---------------------------------------------------------------------------
# Triplane UNet
# ---------------------------------------------------------------------------


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=min(channels, 32), num_channels=channels, eps=1e-6, affine=True)


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def split_planes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, C, 3H, W) stacked image -> three (B, C, H, W) planes."""
    return x.chunk(3, dim=2)


class PlaneMixing3D(nn.Module):
    """`conv_3daware`: each plane sees the row/column means of the other two planes."""

    def __init__(self, channels: int):
        super().__init__()
        self.plane_convs = nn.ModuleList([nn.Conv2d(3 * channels, channels, 1) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, 3H, W) -> same
        p0, p1, p2 = split_planes(x)
        planes = [p0, p1, p2.transpose(-1, -2)]  # xz -> zx
        h, w = planes[0].shape[-2:]
        out = []
        for i in range(3):
            nxt = planes[(i + 1) % 3].mean(dim=-1, keepdim=True).transpose(-1, -2)  # (B, C, 1, H)
            nxt2 = planes[(i + 2) % 3].mean(dim=-2, keepdim=True).transpose(-1, -2)  # (B, C, W, 1)
            mixed = torch.cat([planes[i], nxt.expand(-1, -1, h, w), nxt2.expand(-1, -1, h, w)], dim=1)
            out.append(self.plane_convs[i](mixed))
        out[2] = out[2].transpose(-1, -2)  # zx -> xz
        return torch.cat(out, dim=2)


class ResnetBlock3DAware(nn.Module):
    """GN-swish-conv3x3, GN-swish-3D mixing, GN-swish-conv3x3, plus a 1x1 shortcut."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm_mid = group_norm(out_channels)
        self.conv_3daware = PlaneMixing3D(out_channels)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, 3H, W) -> (B, C_out, 3H, W)
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv_3daware(swish(self.norm_mid(h)))
        h = self.conv2(swish(self.norm2(h)))
        return self.nin_shortcut(x) + h


class DownConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, pool: bool):
        super().__init__()
        self.block = ResnetBlock3DAware(in_channels, out_channels)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.block(x)
        # Pool per plane: 2x2 windows never straddle planes because H is even.
        return (F.avg_pool2d(skip, 2) if self.pool else skip), skip


class UpConv(nn.Module):
    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = group_norm(in_channels + skip_channels)
        self.block = ResnetBlock3DAware(in_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.block(self.norm1(torch.cat([x, skip], dim=1)))


class TriplaneUNet(nn.Module):
    """`pvcnn.unet_encoder`: UNet on the three planes stacked vertically."""

    def __init__(self, cfg: PartFieldConfig):
        super().__init__()
        c0, depth = cfg.unet_channels, cfg.unet_depth
        widths = [c0 * 2**i for i in range(depth)]
        ins = [cfg.pvconv_channels] + widths[:-1]
        self.down_convs = nn.ModuleList(
            [DownConv(ins[i], widths[i], pool=i < depth - 1) for i in range(depth)]
        )
        self.up_convs = nn.ModuleList(
            [UpConv(widths[i + 1], widths[i], widths[i]) for i in reversed(range(depth - 1))]
        )
        self.norm_out = group_norm(c0)
        self.conv_final = nn.Conv2d(c0, cfg.pvconv_channels, 1)

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        # planes (B, 3, C, R, R) -> (B, 3, C, R, R)
        b, _, c, r, _ = planes.shape
        x = planes.permute(0, 2, 1, 3, 4).reshape(b, c, 3 * r, r)  # stacked (B, C, 3R, R)
        skips = []
        for down in self.down_convs:
            x, skip = down(x)
            skips.append(skip)
        for up, skip in zip(self.up_convs, reversed(skips[:-1])):
            x = up(x, skip)
        x = self.conv_final(swish(self.norm_out(x)))
        c_out = x.shape[1]
        return x.reshape(b, c_out, 3, r, r).permute(0, 2, 1, 3, 4)


class PVCNN(nn.Module):
    """`pvcnn`: point encoder + triplane splat + triplane UNet."""

    def __init__(self, cfg: PartFieldConfig):
        super().__init__()
        self.plane_resolution = cfg.plane_resolution
        self.pc_encoder = PointEncoder(cfg)
        self.unet_encoder = TriplaneUNet(cfg)

    def splat(self, features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Average point features into xy, yz, xz planes: (B, C, N), (B, N, 3) -> (B, 3, C, R, R)."""
        r = self.plane_resolution
        b, c, n = features.shape
        u = (points * 0.5) / (1 + 1e-5) + 0.5
        cell = torch.floor(u.clamp(0, 1 - 1e-5) * r).long()  # (B, N, 3)
        x, y, z = cell.unbind(-1)
        # (plane, H, W): xy -> (y, x), yz -> (z, y), xz -> (z, x)
        flat = torch.stack([y * r + x, r * r + z * r + y, 2 * r * r + z * r + x], dim=1)  # (B, 3, N)
        flat = flat + (torch.arange(b, device=points.device) * 3 * r * r)[:, None, None]
        flat = flat.reshape(-1)
        src = features.permute(0, 2, 1).unsqueeze(1).expand(b, 3, n, c).reshape(-1, c)
        sums = src.new_zeros(b * 3 * r * r, c).index_add_(0, flat, src)
        counts = src.new_zeros(b * 3 * r * r).index_add_(0, flat, src.new_ones(flat.shape[0]))
        means = sums / counts.clamp(min=1).unsqueeze(1)
        return means.reshape(b, 3, r, r, c).permute(0, 1, 4, 2, 3).contiguous()

    def forward(self, points: torch.Tensor, normals: torch.Tensor | None = None) -> torch.Tensor:
        # points (B, N, 3) [, normals (B, N, 3)] -> UNet planes (B, 3, C, R, R)
        feats = self.pc_encoder(points, normals)
        return self.unet_encoder(self.splat(feats, points))


# ---------------------------------------------------------------------------
# Triplane transformer
# ---------------------------------------------------------------------------


def _on_meta(t: torch.Tensor) -> bool:
    """True for tensors built under `torch.device("meta")` (weights about to be loaded):
    random init there is useless, and `nn.init` on a meta tensor imports torch._dynamo (~1 s)."""
    return t.device.type == "meta"


class SelfAttention(nn.Module):
    """Multi-head self-attention without biases. Keys: `in_proj_weight`, `out_proj.weight`."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.out_proj = nn.Linear(width, width, bias=False)
        if not _on_meta(self.in_proj_weight):
            nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, W) -> (B, T, W)
        b, t, w = x.shape
        qkv = F.linear(x, self.in_proj_weight).reshape(b, t, 3, self.heads, w // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, T, W/heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, w))


class TransformerBlock(nn.Module):
    """Pre-norm block: x += MHA(LN1(x)); x += MLP(LN2(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.self_attn = SelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_ratio * width),
            nn.GELU(),
            nn.Identity(),  # dropout slot in the release (index 2)
            nn.Linear(mlp_ratio * width, width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, depth: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.layers = nn.ModuleList([TransformerBlock(width, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(width, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class TriplaneTransformer(nn.Module):
    """`triplane_transformer`: conv downsampler -> tokens -> transformer -> upsampler + skip MLP."""

    def __init__(self, cfg: PartFieldConfig):
        super().__init__()
        w, c_in, c_out = cfg.transformer_width, cfg.pvconv_channels, cfg.out_channels
        self.sdf_channels = cfg.sdf_channels
        self.downsampler = nn.Sequential(
            nn.Conv2d(c_in, w, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(w, w, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_tokens, w))
        if not _on_meta(self.pos_embed):
            nn.init.normal_(self.pos_embed, std=0.02)
        self.transformer = Transformer(w, cfg.transformer_depth, cfg.transformer_heads, cfg.transformer_mlp_ratio)
        self.upsampler = nn.ConvTranspose2d(w, c_out, 4, stride=4)
        self.mlp = nn.Sequential(nn.Linear(c_in, c_out), nn.ReLU(inplace=True), nn.Linear(c_out, c_out))

    def forward(self, planes: torch.Tensor, field_only: bool = True) -> torch.Tensor:
        # planes (B, 3, C, R, R) -> (B, 3, F, R, R); F = out - sdf when field_only, else out
        b, _, c, r, _ = planes.shape
        x = self.downsampler(planes.reshape(b * 3, c, r, r))  # (3B, W, r/4, r/4)
        w, t = x.shape[1], x.shape[-1]
        tokens = x.reshape(b, 3, w, t * t).permute(0, 1, 3, 2).reshape(b, 3 * t * t, w)
        tokens = self.transformer(tokens + self.pos_embed.to(tokens.dtype))
        x = tokens.reshape(b, 3, t, t, w).permute(0, 1, 4, 2, 3).reshape(b * 3, w, t, t)

        start = self.sdf_channels if field_only else 0
        # Only the kept output channels are computed: slice the weights, not the output.
        up_w = self.upsampler.weight[:, start:]
        up_b = self.upsampler.bias[start:]
        up = F.conv_transpose2d(x, up_w, up_b, stride=4)  # (3B, F, R, R)
        skip = self.mlp[1](self.mlp[0](planes.permute(0, 1, 3, 4, 2)))  # (B, 3, R, R, out)
        skip = F.linear(skip, self.mlp[2].weight[start:], self.mlp[2].bias[start:])  # (B, 3, R, R, F)
        return up.reshape(b, 3, -1, r, r) + skip.permute(0, 1, 4, 2, 3)


class SDFDecoder(nn.Module):
    """`sdf_decoder`: training-only head of the release. Kept for strict loading, never run."""

    def __init__(self, channels: int = 64):
        super().__init__()
        layers = []
        for _ in range(6):
            layers += [nn.Linear(channels, channels, bias=False), nn.ReLU()]
        layers.append(nn.Linear(channels, 1, bias=False))
        self.layers = nn.Sequential(*layers)


# ---------------------------------------------------------------------------
# The whole network
# ---------------------------------------------------------------------------


class PartFieldNet(nn.Module):
    """Points -> triplanes (once) -> features at any query points."""

    def __init__(self, cfg: PartFieldConfig | None = None):
        super().__init__()
        cfg = cfg or PartFieldConfig.released()
        cfg.validate()
        self.config = cfg
        # Registration order follows the release's state_dict order.
        if cfg.dead_modules:
            self.logit_scale = nn.Parameter(torch.tensor([math.log(1 / 0.07)]))
        self.triplane_transformer = TriplaneTransformer(cfg)
        if cfg.dead_modules:
            self.sdf_decoder = SDFDecoder(cfg.sdf_channels)
        self.pvcnn = PVCNN(cfg)

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    def encode(self, points: torch.Tensor, normals: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised points (B, N, 3) -> part-field triplanes (B, 3, F, R, R).

        `normals` (B, N, 3), unit surface normals at the points: required when the config
        has `point_normals`, ignored otherwise."""
        return self.triplane_transformer(self.pvcnn(points, normals), field_only=True)

    @staticmethod
    def decode(planes: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """Bilinear triplane lookup: planes (B, 3, F, R, R), queries (B, Q, 3) -> (B, Q, F).

        Plane 0 is read at (x, y), plane 1 at (y, z), plane 2 at (x, z), grid given as (W, H),
        align_corners=True, border padding; the three reads are summed.
        """
        b, _, f, r, _ = planes.shape
        x, y, z = queries.to(planes.dtype).unbind(-1)
        grids = torch.stack(
            [torch.stack([x, y], -1), torch.stack([y, z], -1), torch.stack([x, z], -1)], dim=1
        )  # (B, 3, Q, 2)
        out = F.grid_sample(
            planes.reshape(b * 3, f, r, r),
            grids.reshape(b * 3, 1, -1, 2),
            mode="bilinear",
            padding_mode="border",
            align_corners=True,
        )  # (3B, F, 1, Q)
        return out.reshape(b, 3, f, -1).sum(dim=1).transpose(1, 2)

    def forward(self, points: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(points), queries)


# ---------------------------------------------------------------------------
# Fast inference decoding: the same bilinear lookup as `PartFieldNet.decode`, as a
# weighted sum of 12 rows of a channels-last texel table (one fused embedding_bag call).
# ---------------------------------------------------------------------------


def triplane_table(planes: torch.Tensor) -> torch.Tensor:
    """Planes (1, 3, F, R, R) -> texel table (3 * R * R, F), row = plane * R^2 + h * R + w."""
    _, _, f, r, _ = planes.shape
    return planes[0].permute(0, 2, 3, 1).reshape(3 * r * r, f).contiguous()


def bilinear_corners(queries: torch.Tensor, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries (Q, 3) -> table rows (Q, 12) and weights (Q, 12), matching grid_sample with
    align_corners=True and border padding on planes xy, yz, xz."""
    r = resolution
    x, y, z = queries.unbind(-1)
    rows, weights = [], []
    for plane, (u, v) in enumerate(((x, y), (y, z), (x, z))):
        fu = ((u + 1) * 0.5 * (r - 1)).clamp(0, r - 1)  # W coordinate in texels
        fv = ((v + 1) * 0.5 * (r - 1)).clamp(0, r - 1)  # H coordinate in texels
        u0 = fu.floor().clamp(max=r - 2)
        v0 = fv.floor().clamp(max=r - 2)
        au, av = fu - u0, fv - v0
        base = plane * r * r + v0.long() * r + u0.long()
        rows += [base, base + 1, base + r, base + r + 1]
        weights += [(1 - au) * (1 - av), au * (1 - av), (1 - au) * av, au * av]
    return torch.stack(rows, -1), torch.stack(weights, -1)


def decode_from_table(table: torch.Tensor, resolution: int, queries: torch.Tensor) -> torch.Tensor:
    """Texel table (3R^2, F), queries (Q, 3) -> features (Q, F)."""
    rows, weights = bilinear_corners(queries.to(torch.float32), resolution)
    return F.embedding_bag(rows, table, per_sample_weights=weights.to(table.dtype), mode="sum")
