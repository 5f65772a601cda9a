"""Real-time factor of vtok's paper-scale audio codecs on this machine (encode, decode, both), and of
the official WavTokenizer code on the same random weights when a checkout of it is given.

    python eval/bench_audio.py [--models wavtokenizer-small-75 rvq-codec-24k ...] [--seconds 10]
        [--batch 1] [--rounds 3] [--threads 2] [--official PATH/TO/jishengpeng-WavTokenizer]

Input: real speech, the clips in vtok/assets/speech joined and cut to --seconds at each model's
rate. Real-time factor = seconds of audio / seconds of compute (higher is faster; "20x" means 20 s of
audio per second). Models are built with random weights (seeded). With --official, the official
`decoder.pretrained.WavTokenizer` is built from the official yaml of the same frame rate, its
random weights are converted into vtok with `WavTokenizer.convert_official` (strict load), both are
checked to give the same ids and audio, and each round times both, one after the other, order
alternating; the table shows medians and the median within-round ratio vtok/official (speed).
The official code needs scipy and einops importable; it runs with bandwidth id 0, as inference does.
wavtokenizer-medium-75 / -large-75 share small-75's network (and -large-40 small-40's): their
speed is the same.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import vtok
from vtok import assets

PAPER = ["wavtokenizer-small-40", "wavtokenizer-small-75", "rvq-codec-24k", "rvq-codec-16k"]
OFFICIAL_YAML = {600: "configs/wavtokenizer_smalldata_frame40_3s_nq1_code4096_dim512_kmeans200_attn.yaml",
                 320: "configs/wavtokenizer_smalldata_frame75_3s_nq1_code4096_dim512_kmeans200_attn.yaml"}


def speech(sample_rate: int, seconds: float, batch: int) -> torch.Tensor:
    """Real speech (batch, 1, seconds * sample_rate): the shipped clips joined end to end, repeated as needed."""
    clips = [assets.load_audio(p, sample_rate)[0] for p in assets.sample_speech_paths()]
    joined = torch.cat(clips, dim=-1)
    need = int(seconds * sample_rate)
    joined = joined.repeat(1, -(-need // joined.shape[-1]))[:, :need]
    return joined[None].repeat(batch, 1, 1)


# --- the official WavTokenizer on vtok's weights --------------------------------------------------
def build_official(path: Path, model) -> torch.nn.Module:
    """The official model for `model`'s frame rate, random weights copied into `model` (strict)."""
    sys.path.insert(0, str(path))
    from decoder.pretrained import WavTokenizer as Official  # noqa: E402  (the user's checkout)

    torch.manual_seed(0)
    official = Official.from_hparams0802(str(path / OFFICIAL_YAML[model.hop_length])).eval()
    codebook = official.feature_extractor.encodec.quantizer.vq.layers[0]._codebook
    codebook.embed.normal_()  # k-means would fill it on the first training batch
    codebook.inited.fill_(1)
    state = type(model).convert_official(official.state_dict(), model.config)
    model.load_state_dict(state, strict=True)
    return official


def official_fns(official):
    band = torch.tensor([0])

    def encode(wav):
        return official.encode_infer(wav[:, 0], bandwidth_id=band)[1]  # (n_q, B, T')

    def decode(codes):
        return official.decode(official.codes_to_features(codes), bandwidth_id=band)

    return encode, decode


# --- timing -------------------------------------------------------------------------------------
def seconds(fn, arg) -> tuple[float, object]:
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = fn(arg)
    return time.perf_counter() - t0, out


def bench(name: str, audio_seconds: float, batch: int, rounds: int, official_path: Path | None) -> dict:
    torch.manual_seed(0)
    model = vtok.create(name).eval()
    wav = speech(model.sample_rate, audio_seconds, batch)
    impls = {"vtok": (model.encode, model.decode)}
    if official_path is not None and name.startswith("wavtokenizer"):
        official = build_official(official_path, model)
        impls["official"] = official_fns(official)
        with torch.inference_mode():  # same weights, same answers
            ids, codes = model.encode(wav), impls["official"][0](wav)
            assert torch.equal(codes.permute(1, 0, 2), ids), f"{name}: official ids differ"
            diff = (impls["official"][1](codes)[:, None].clamp(-1, 1) - model.decode(ids)).abs().max().item()
            assert diff < 1e-3, f"{name}: official decode differs by {diff}"
    times = {impl: {"encode": [], "decode": []} for impl in impls}
    for r in range(rounds + 1):  # round 0 warms up
        for impl in (list(impls) if r % 2 == 0 else list(reversed(impls))):
            enc, dec = impls[impl]
            t_enc, ids = seconds(enc, wav)
            t_dec, _ = seconds(dec, ids)
            if r:
                times[impl]["encode"].append(t_enc)
                times[impl]["decode"].append(t_dec)
    audio = batch * audio_seconds
    row = {"model": name}
    for impl, t in times.items():
        both = [e + d for e, d in zip(t["encode"], t["decode"])]
        row[f"{impl} encode"] = audio / statistics.median(t["encode"])
        row[f"{impl} decode"] = audio / statistics.median(t["decode"])
        row[f"{impl} both"] = audio / statistics.median(both)
    if "official" in times:
        v, o = times["vtok"], times["official"]
        row["ratio"] = statistics.median((oe + od) / (ve + vd) for ve, vd, oe, od in
                                         zip(v["encode"], v["decode"], o["encode"], o["decode"]))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=PAPER)
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of speech per item")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--official", type=Path, default=None, help="a checkout of jishengpeng/WavTokenizer")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cols = ["vtok encode", "vtok decode", "vtok both"]
    if args.official:
        cols += ["official encode", "official decode", "official both", "ratio"]
    print(f"torch {torch.__version__}, {args.threads} threads, CPU, random weights, real speech "
          f"{args.seconds:g} s x batch {args.batch}, median of {args.rounds} rounds; "
          "real-time factor (x real time; ratio = official time / vtok time)\n")
    print("| model | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols), flush=True)
    for name in args.models:
        row = bench(name, args.seconds, args.batch, args.rounds, args.official)
        cells = [f"{row[c]:.2f}x" if c in row else "-" for c in cols]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
