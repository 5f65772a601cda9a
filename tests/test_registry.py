"""The zoo registry: wildcard listing, creation with overrides, clear errors."""
import json

import pytest

import vtok
from vtok.registry import MODELS, ModelEntry


def test_wildcard_listing():
    names = vtok.list_models()
    assert names == sorted(names) and len(names) >= 4
    assert set(vtok.list_models("rvq-codec-*")) >= {"rvq-codec-16k", "rvq-codec-24k", "rvq-codec-tiny"}
    assert vtok.list_models("*-tiny") == sorted(n for n in names if n.endswith("-tiny"))
    assert vtok.list_models("no-such-*") == []


def test_pretrained_filter_partitions_the_zoo():
    with_weights = set(vtok.list_models(pretrained=True))
    without = set(vtok.list_models(pretrained=False))
    assert with_weights.isdisjoint(without)
    assert with_weights | without == set(vtok.list_models())
    assert "vqgan-tiny" in without


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_entry_is_plain_json_and_registered(name):
    entry: ModelEntry = MODELS[name]
    json.dumps(entry.config)
    assert entry.cls.modality in ("image", "audio")


@pytest.mark.parametrize("name,key", [("vqgan-tiny", "channels"), ("titok-tiny", "token_dim"), ("rvq-codec-tiny", "channels")])
def test_create_with_overrides(name, key):
    tiny = vtok.create(name)
    changed = vtok.create(name, **{key: tiny.config[key] * 2})
    assert changed.config[key] == tiny.config[key] * 2
    assert sum(p.numel() for p in changed.parameters()) > sum(p.numel() for p in tiny.parameters())


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown model 'vqgan-huge'.*vqgan-tiny"):
        vtok.create("vqgan-huge")


def test_load_of_a_name_without_weights_says_what_to_do():
    with pytest.raises(ValueError, match=r"no pretrained weights.*vtok.create\('vqgan-tiny'\)"):
        vtok.load("vqgan-tiny")


def test_duplicate_registration_is_refused():
    entry = MODELS["vqgan-tiny"]
    with pytest.raises(ValueError, match="already registered"):
        vtok.register("vqgan-tiny", entry.cls, entry.config)
