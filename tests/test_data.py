"""ImageDataModule sources: image folder, Hugging Face datasets (map-style and streaming) and webdataset
tars built from the shipped sample photos: shapes, seeded order, disjoint ranks, exact resume, bad config."""
import hashlib
import io
import random
import tarfile

import pytest
import torch

from vtok import assets
from vtok.train import data as data_mod
from vtok.train import image_sources
from vtok.train.data import ImageDataModule

pytest.importorskip("datasets")
pytest.importorskip("webdataset")

SIZE, BATCH, PER_PHOTO = 16, 4, 4  # 6 photos x 4 crops = 24 images


@pytest.fixture(scope="module")
def crops():
    """(name, encoded bytes, format) for random crops of the sample photos, in jpg, png and webp."""
    from PIL import Image

    rng = random.Random(0)
    out = []
    for i, path in enumerate(assets.sample_image_paths()):
        with Image.open(path) as im:
            im = im.convert("RGB")
            for j in range(PER_PHOTO):
                side = rng.randint(48, 256)
                left, top = rng.randint(0, 256 - side), rng.randint(0, 256 - side)
                crop = im.crop((left, top, left + side, top + side)).resize((40, 40))
                fmt = ("jpeg", "png", "webp")[(i + j) % 3]
                buffer = io.BytesIO()
                crop.save(buffer, format=fmt)
                out.append((f"{path.stem}_{j}", buffer.getvalue(), fmt))
    return out


@pytest.fixture(scope="module")
def sources(tmp_path_factory, crops):
    """Paths of the same images as an image folder, a save_to_disk dataset and three webdataset tars."""
    import datasets

    root = tmp_path_factory.mktemp("sources")
    folder = root / "folder" / "nested"
    folder.mkdir(parents=True)
    for name, data, fmt in crops:
        (folder / f"{name}.{'jpg' if fmt == 'jpeg' else fmt}").write_bytes(data)
    ds = datasets.Dataset.from_dict({"image": [{"bytes": d, "path": None} for _, d, _ in crops],
                                     "label": list(range(len(crops)))})
    ds = ds.cast_column("image", datasets.Image())
    datasets.DatasetDict({"train": ds, "validation": ds.select(range(6))}).save_to_disk(str(root / "hf"))
    for shard in range(3):
        with tarfile.open(root / f"shard-{shard:04d}.tar", "w") as tar:
            for name, data, fmt in crops[shard::3]:
                for suffix, payload in ((("jpg" if fmt == "jpeg" else fmt), data), ("cls", str(shard).encode())):
                    info = tarfile.TarInfo(f"{name}.{suffix}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    return {"folder": root / "folder", "hf": root / "hf", "wds": str(root / "shard-{0000..0002}.tar")}


def module(sources, kind, **kw):
    """A set-up ImageDataModule over source `kind` (folder | hf | hf-stream | wds)."""
    args = dict(image_size=SIZE, batch_size=BATCH, shuffle_buffer=8)
    if kind == "folder":
        args.update(train_dir=str(sources["folder"]), val_dir=str(sources["folder"]))
    elif kind == "wds":
        args.update(wds_urls=sources["wds"], wds_val_urls=sources["wds"], val_samples=6)
    else:
        args.update(hf_dataset=str(sources["hf"]), hf_val_split="validation", streaming=kind == "hf-stream",
                    samples_per_epoch=24 if kind == "hf-stream" else None)
    dm = ImageDataModule(**{**args, **kw})
    dm.setup("fit")
    return dm


def one_pass(loader, epoch):
    """The batches of one epoch (map-style: Lightning's set_epoch; streams count their passes)."""
    if isinstance(loader.sampler, data_mod.ResumableSampler):
        loader.sampler.set_epoch(epoch)
    return list(loader)


def epochs(loader, n):
    """The batches of epochs 0..n-1."""
    return [one_pass(loader, e) for e in range(n)]


def digest(x):
    """A hash of one image, the same for its mirror image."""
    return min(hashlib.sha1(x.numpy().tobytes()).hexdigest(), hashlib.sha1(x.flip(-1).numpy().tobytes()).hexdigest())


def as_rank(monkeypatch, rank, world):
    """Make the data code see this process as `rank` of `world`."""
    monkeypatch.setattr(image_sources, "world", lambda: (rank, world))
    monkeypatch.setattr(data_mod, "world", lambda: (rank, world))
    monkeypatch.setattr(data_mod.ResumableSampler, "_rank", lambda self: (rank, world))


KINDS = ["folder", "hf", "hf-stream", "wds"]


@pytest.mark.parametrize("kind", KINDS)
def test_batches_are_images_in_a_seeded_order(sources, kind):
    dm = module(sources, kind)
    loader = dm.train_dataloader()
    first = epochs(loader, 2)
    assert len(first[0]) == len(loader) == 24 // BATCH
    x = first[0][0]
    assert x.shape == (BATCH, 3, SIZE, SIZE) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.05
    assert {digest(x) for b in first[0] for x in b} == {digest(x) for b in first[1] for x in b}  # one pass each
    again = epochs(module(sources, kind).train_dataloader(), 2)
    assert all(torch.equal(a, b) for e, f in zip(first, again) for a, b in zip(e, f))
    assert not all(torch.equal(a, b) for a, b in zip(first[0], first[1]))  # a new order per epoch
    other = list(module(sources, kind, seed=1).train_dataloader())
    assert not all(torch.equal(a, b) for a, b in zip(first[0], other))
    val = list(dm.val_dataloader())
    assert val and val[0].shape[1:] == (3, SIZE, SIZE)


@pytest.mark.parametrize("kind", KINDS)
def test_ranks_get_disjoint_samples(sources, kind, monkeypatch):
    seen = []
    for rank in range(2):
        as_rank(monkeypatch, rank, 2)
        batches = list(module(sources, kind, flip=False).train_dataloader())
        assert len(batches) == 24 // 2 // BATCH
        seen.append([digest(x) for b in batches for x in b])
    assert len(set(seen[0])) == len(seen[0]) and not set(seen[0]) & set(seen[1])


def test_fewer_shards_than_ranks_and_workers_split_samples(sources, monkeypatch):
    one = sources["wds"].replace("{0000..0002}", "0001")  # 8 samples
    seen = []
    for rank in range(2):
        as_rank(monkeypatch, rank, 2)
        batches = list(module(sources, "wds", wds_urls=one, flip=False, num_workers=2, batch_size=2).train_dataloader())
        assert len(batches) == 8 // 2 // 2
        seen.append([digest(x) for b in batches for x in b])
    assert len(set(seen[0] + seen[1])) == 8


@pytest.mark.parametrize("kind,workers", [("folder", 0), ("hf", 0), ("hf-stream", 0), ("hf-stream", 2), ("wds", 0),
                                          ("wds", 2)])
def test_resume_at_continues_the_uninterrupted_order(sources, kind, workers):
    whole = epochs(module(sources, kind, num_workers=workers).train_dataloader(), 2)
    for epoch, done in ((0, 3), (1, 2), (0, 5)):
        dm = module(sources, kind, num_workers=workers)
        loader = dm.train_dataloader()
        dm.resume_at(epoch, done)
        rest = list(loader)  # the resumed epoch
        assert len(rest) == len(whole[epoch]) - done
        assert all(torch.equal(a, b) for a, b in zip(rest, whole[epoch][done:]))
        if epoch == 0:
            assert all(torch.equal(a, b) for a, b in zip(one_pass(loader, 1), whole[1]))


def fit_recording(datamodule, max_steps, root, ckpt_path=None):
    """Batches a TokenizerTraining sees in `vtok`-style training (checkpoint every 4 steps), resumable."""
    import lightning as L

    from vtok.train.base import TokenizerTraining

    class Record(TokenizerTraining):
        def __init__(self):
            super().__init__()
            self.w, self.seen = torch.nn.Parameter(torch.zeros(1)), []

        def training_step(self, batch, i):
            self.seen.append(batch.clone())
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward((self.w * batch.mean()).sum())
            opt.step()
            self.batches_seen += 1

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

        def on_fit_end(self):
            pass

    model = Record()
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(dirpath=root, every_n_train_steps=4, save_top_k=-1)
    trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, callbacks=[checkpoints],
                        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
                        num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return model.seen


@pytest.mark.parametrize("kind", ["folder", "hf-stream", "wds"])
def test_lightning_resume_mid_epoch_continues_the_order(sources, kind, tmp_path):
    whole = fit_recording(module(sources, kind, num_workers=2), 14, tmp_path / "whole")  # 6 batches per epoch
    direct = [b for e in epochs(module(sources, kind, num_workers=2).train_dataloader(), 3) for b in e][:14]
    assert len(whole) == 14 and all(torch.equal(a, b) for a, b in zip(whole, direct))
    ckpt = next((tmp_path / "whole").glob("*step=8.ckpt"))  # epoch 1, batch 2
    resumed = fit_recording(module(sources, kind, num_workers=2), 14, tmp_path / "resumed", ckpt_path=ckpt)
    assert len(resumed) == 6 and all(torch.equal(a, b) for a, b in zip(resumed, whole[8:]))


def test_local_imagefolder_streams(sources):
    dm = module(sources, "hf-stream", hf_dataset=str(sources["folder"]), hf_val_split=None)
    batches = list(dm.train_dataloader())
    assert len(batches) == 24 // BATCH and dm.val_dataloader() == []
    assert len({digest(x) for b in batches for x in b}) == 24


@pytest.mark.parametrize("kw,match", [
    ({}, "exactly one image source: train_dir .*hf_dataset .*wds_urls.*got none"),
    ({"train_dir": "a", "val_dir": "b", "wds_urls": "x.tar"}, "exactly one image source.*got train_dir, wds_urls"),
    ({"hf_dataset": "x", "wds_urls": "x.tar"}, "exactly one image source"),
    ({"train_dir": "a"}, "train_dir needs a val_dir"),
    ({"wds_urls": "x.tar", "streaming": True}, "streaming applies to hf_dataset"),
    ({"hf_dataset": "x", "val_dir": "b"}, "val_dir goes with train_dir"),
    ({"hf_dataset": "x", "batch_size": 0}, "batch_size must be a positive int"),
])
def test_bad_config_is_a_value_error(kw, match):
    with pytest.raises(ValueError, match=match):
        ImageDataModule(**kw)


def test_bad_source_contents_are_value_errors(sources, tmp_path):
    with pytest.raises(ValueError, match="no column 'img'.*'image', 'label'"):
        module(sources, "hf", hf_image_key="img")
    with pytest.raises(ValueError, match="splits \\['train', 'validation'\\], not 'test'"):
        module(sources, "hf", hf_split="test")
    with pytest.raises(ValueError, match="1 of 2 shards not found"):
        module(sources, "wds", wds_urls=sources["wds"].replace("{0000..0002}", "{0000,0009}"))
    with tarfile.open(tmp_path / "bad.tar", "w") as tar:
        info = tarfile.TarInfo("a.txt")
        tar.addfile(info, io.BytesIO(b""))
    dm = ImageDataModule(wds_urls=str(tmp_path / "bad.tar"), samples_per_epoch=4, batch_size=1, image_size=SIZE)
    dm.setup("fit")
    with pytest.raises(ValueError, match="sample a in .*bad.tar has no image"):
        next(iter(dm.train_dataloader()))


def test_uncached_hub_name_offline_is_one_clear_error(monkeypatch):
    import datasets
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    dm = ImageDataModule(hf_dataset="vtok-tests/no-such-dataset-xyz", streaming=True, image_size=SIZE)
    with pytest.raises(ConnectionError, match="'vtok-tests/no-such-dataset-xyz'.*HF_HUB_OFFLINE.*hf download"):
        dm.setup("fit")


def test_init_args_parse_like_lightning_cli(sources):
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(ImageDataModule, "data")
    cfg = parser.parse_args(["--data.wds_urls", sources["wds"], "--data.samples_per_epoch", "24",
                             "--data.image_size", str(SIZE), "--data.hf_val_split", "null"])
    dm = ImageDataModule(**cfg.data.as_dict())
    assert dm.hparams.wds_urls == sources["wds"] and dm.hparams.samples_per_epoch == 24
