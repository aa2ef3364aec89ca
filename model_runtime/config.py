"""Network configuration: every width, resolution and depth of the PartField network.

`PartFieldConfig.released()` is NVIDIA's released model (model_objaverse.ckpt);
`PartFieldConfig.small()` is the family member we train and bundle ourselves.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# Sane range of every integer field (inclusive). A config read from a file's metadata is
# checked against these before any module is built, so a tampered file cannot ask for a
# network that takes minutes to build or gigabytes to hold. The released model sits well
# inside every range.
FIELD_RANGES = {
    "point_in_channels": (8, 9),
    "pvconv_channels": (1, 2048),
    "voxel_resolution": (2, 256),
    "plane_resolution": (4, 1024),
    "unet_channels": (1, 1024),
    "unet_depth": (1, 8),
    "transformer_width": (1, 8192),
    "transformer_depth": (0, 64),
    "transformer_heads": (1, 256),
    "transformer_mlp_ratio": (1, 16),
    "out_channels": (1, 4096),
    "sdf_channels": (0, 4095),
    "num_points": (1, 100_000_000),
}
NAME_MAX = 200


@dataclass(frozen=True)
class PartFieldConfig:
    name: str = "partfield-objaverse"
    # Point encoder (PVConv block 0): 8 input channels (x, y, z, 2x, 2y, 2z, 0, 0).
    point_in_channels: int = 8
    # Our own models may also read the surface normal at each input point, as its six
    # sign-free products (nx^2, ny^2, nz^2, nx ny, ny nz, nx nz): 9 channels (x, y, z, those six),
    # so flipped or inconsistent face winding gives the same input.
    point_normals: bool = False
    pvconv_channels: int = 256
    voxel_resolution: int = 32
    # Keep the released model's unused modules (PVConv blocks 1-3, sdf_decoder, logit_scale)
    # so its state_dict loads strictly. They are never run.
    dead_modules: bool = True
    # Triplanes.
    plane_resolution: int = 128
    # Triplane UNet: start channels, depth (channels double per level).
    unet_channels: int = 32
    unet_depth: int = 3
    # Triplane transformer over (plane_resolution / 4)^2 * 3 tokens.
    transformer_width: int = 1024
    transformer_depth: int = 6
    transformer_heads: int = 8
    transformer_mlp_ratio: int = 4
    # Output planes: the first `sdf_channels` are a training-only SDF head, the rest is the field.
    out_channels: int = 512
    sdf_channels: int = 64
    # Input point count the model was trained with.
    num_points: int = 100_000

    @property
    def feature_dim(self) -> int:
        return self.out_channels - self.sdf_channels

    @property
    def token_resolution(self) -> int:
        return self.plane_resolution // 4

    @property
    def num_tokens(self) -> int:
        return 3 * self.token_resolution**2

    @classmethod
    def released(cls) -> "PartFieldConfig":
        """NVIDIA's released PartField network (model_objaverse.ckpt)."""
        return cls()

    @classmethod
    def small(cls) -> "PartFieldConfig":
        """Our own small model: same architecture family, a few MB of weights."""
        return cls(
            name="partfield-small",
            pvconv_channels=32,
            voxel_resolution=32,
            dead_modules=False,
            plane_resolution=64,
            unet_channels=32,
            unet_depth=3,
            transformer_width=128,
            transformer_depth=2,
            transformer_heads=4,
            transformer_mlp_ratio=4,
            out_channels=64,
            sdf_channels=0,
            num_points=16_384,
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def small_normals(cls) -> "PartFieldConfig":
        """`small` that also reads the surface normal at each input point (`point_normals`)."""
        return dataclasses.replace(cls.small(), name="partfield-small-normals", point_in_channels=9,
                                   point_normals=True)

    @classmethod
    def from_dict(cls, data: dict) -> "PartFieldConfig":
        """A validated config from a plain dict (e.g. file metadata); ValueError when it is not one."""
        if not isinstance(data, dict):
            raise ValueError(f"a network config must be a JSON object, not {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in set(data) - known)
        if unknown:
            raise ValueError(f"unknown PartFieldConfig fields: {', '.join(unknown[:5])}")
        cfg = cls(**data)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """ValueError unless every field has its type and lies in its range (`FIELD_RANGES`)."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "name":
                if not isinstance(value, str) or len(value) > NAME_MAX:
                    raise ValueError(f"name must be a string of at most {NAME_MAX} characters")
            elif f.name in ("point_normals", "dead_modules"):
                if not isinstance(value, bool):
                    raise ValueError(f"{f.name} must be true or false, got {value!r:.40}")
            else:
                lo, hi = FIELD_RANGES[f.name]
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{f.name} must be an integer, got {value!r:.40}")
                if not lo <= value <= hi:
                    raise ValueError(f"{f.name} = {value} is outside the supported range {lo}..{hi}")
        want = 9 if self.point_normals else 8
        if self.point_in_channels != want:
            raise ValueError(f"point_in_channels must be {want} when point_normals is {self.point_normals}")
        if self.plane_resolution % 4:
            raise ValueError("plane_resolution must be a multiple of 4")
        if self.plane_resolution % (2 ** (self.unet_depth - 1)):
            raise ValueError("plane_resolution must be divisible by 2**(unet_depth-1)")
        if self.transformer_width % self.transformer_heads:
            raise ValueError("transformer_width must be divisible by transformer_heads")
        if not 0 <= self.sdf_channels < self.out_channels:
            raise ValueError("sdf_channels must be in [0, out_channels)")
