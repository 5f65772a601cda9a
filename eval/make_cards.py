"""Regenerate every number about the shipped tokenizers: held-out `vtok eval` runs, model cards, README tables, demo.

    python eval/make_cards.py --install runs     # copy each run's exported weights into checkpoints/<name>
    python eval/make_cards.py                    # eval -> hub_cards/results/<name>/, cards, demo, README
    python eval/make_cards.py --skip-eval        # re-render cards and README from the saved results

Data: `python eval/prepare_offline_data.py images --out data/images` and `... speech --out data/speech`.
What each card says about training and how it is measured lives in hub_cards/models.yaml;
the card text is hub_cards/card.md (a Jinja template).
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CARDS = ROOT / "hub_cards"
RESULTS = CARDS / "results"
DOCS = ROOT / "docs" / "demo"
IMAGE_COLUMNS = [("psnr", "PSNR dB", "{:.2f}"), ("ssim", "SSIM", "{:.3f}"), ("lpips", "LPIPS", "{:.3f}"),
                 ("rfid", "rFID", "{:.1f}")]
AUDIO_COLUMNS = [("pesq", "PESQ", "{:.2f}"), ("stoi", "STOI", "{:.3f}"), ("mel_distance", "mel dist", "{:.2f}"),
                 ("dnsmos_ovrl", "DNSMOS", "{:.2f}")]


def models() -> dict[str, dict]:
    return yaml.safe_load((CARDS / "models.yaml").read_text())


def eval_command(name: str, spec: dict) -> list[str]:
    """The `vtok eval` argv (without the program) that measures `name` on its held-out split."""
    return ["eval", "-t", name, *spec["eval"], "--rd", "--out", str(RESULTS.relative_to(ROOT) / name)]


# --- install / eval -----------------------------------------------------------------------------
def install(name: str, runs: Path) -> Path:
    """Copy runs/<name>/export (a save_pretrained dir) into checkpoints/<name> after a strict load and config check."""
    import vtok
    from vtok.hub import checkpoints_dir

    tok = vtok.load(str(runs / name / "export"))
    if tok.config != vtok.create(name).config:
        raise SystemExit(f"{runs / name / 'export'}: its config differs from the registry entry {name!r}")
    out = checkpoints_dir() / name
    tok.save_pretrained(out)
    return out


def saved_result(name: str) -> dict:
    """The results.json of the card's last `vtok eval`."""
    return json.loads((RESULTS / name / "results.json").read_text())


def run_eval(name: str, spec: dict) -> dict:
    """Run the card's `vtok eval` in a subprocess (as a user would); return results.json."""
    argv = eval_command(name, spec)
    print("$ vtok " + shlex.join(argv), flush=True)
    subprocess.run([sys.executable, "-m", "vtok.cli", *argv], cwd=ROOT, check=True)
    (RESULTS / name / "rfid_reference.safetensors").unlink(missing_ok=True)  # 32 MB of statistics, rebuilt each run
    return saved_result(name)


# --- tables -------------------------------------------------------------------------------------
def _columns(result: dict) -> list[tuple[str, str, str]]:
    cols = IMAGE_COLUMNS if result["data"]["modality"] == "image" else AUDIO_COLUMNS
    return [c for c in cols if any(c[0] in r["metrics"] for r in result["runs"])]


def _setting(run: dict) -> str:
    (key, value), = run["setting"].items()
    return {"num_tokens": f"{value} tokens", "num_codebooks": f"{value} codebook{'s' * (value > 1)}",
            "quality": f"quality {value}", "bitrate": f"{value / 1000:g} kbps target"}[key]


def metrics_table(result: dict) -> str:
    """Markdown: one row per run (tokenizer settings, then codec settings) with bits and the card's metrics."""
    cols = _columns(result)
    unit = "bits/image" if result["data"]["modality"] == "image" else "bits/s"
    lines = ["| run | setting | " + unit + " | " + " | ".join(c[1] for c in cols) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    for r in result["runs"]:
        cells = [fmt.format(r["metrics"][key]) if key in r["metrics"] else "-" for key, _, fmt in cols]
        lines.append(f"| {r['name']} | {_setting(r)} | {r['bits']:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def at_bits(points: list[tuple[float, float]], bits: float) -> float | None:
    """A codec's metric at `bits`, interpolated linearly in log(bits) between bracketing settings; None outside."""
    points = sorted(points)
    for (b0, m0), (b1, m1) in zip(points, points[1:]):
        if b0 <= bits <= b1:
            t = 0.0 if b1 == b0 else (math.log(bits) - math.log(b0)) / (math.log(b1) - math.log(b0))
            return m0 + t * (m1 - m0)
    return None


def comparison(name: str, result: dict) -> str:
    """One sentence per codec: the tokenizer at its largest setting against the codec at equal (or nearest) bits."""
    from vtok.evaluation.harness import nearest_in_bits

    key, label, fmt = _columns(result)[0]
    mine = max((r for r in result["runs"] if r["name"] == name), key=lambda r: r["bits"])
    lines = []
    for codec in sorted({r["name"] for r in result["runs"] if r["kind"] == "codec"}):
        runs = [r for r in result["runs"] if r["name"] == codec and key in r["metrics"]]
        equal = at_bits([(r["bits"], r["metrics"][key]) for r in runs], mine["bits"])
        near = nearest_in_bits(runs, mine["bits"])
        head = f"At {mine['bits']:.0f} {'bits/image' if result['data']['modality'] == 'image' else 'bits/s'}, {name} ({_setting(mine)}) has {label} {fmt.format(mine['metrics'][key])}"
        if equal is not None:
            verdict = "above" if mine["metrics"][key] > equal else "below"
            lines.append(f"{head}; {codec.upper()} at equal bits (interpolated) has {fmt.format(equal)}: "
                         f"{abs(mine['metrics'][key] - equal):.2f} {verdict}.")
        else:
            lines.append(f"{head}; {codec.upper()} cannot reach that rate here, its nearest setting ({_setting(near)}, "
                         f"{near['bits']:.0f}) has {fmt.format(near['metrics'][key])}.")
    return " ".join(lines)


def protocol_lines(result: dict) -> list[str]:
    p = result["protocol"]
    lines = [f"bits: {p['bits']}", f"data: {result['data']['preprocessing']}"]
    lines += [f"{k}: {json.dumps(v) if isinstance(v, dict) else v}" for k, v in p["metrics"].items()]
    lines += [f"{k}: {json.dumps(v)}" for k, v in p["codecs"].items()]
    if result["data"]["modality"] == "image" and "lpips" not in p["metrics"]:
        lines.append("lpips: not measured; its AlexNet backbone weights do not install offline (`vtok eval --lpips-weights FILE`)")
    if result["data"]["modality"] == "audio" and "utmos" not in p["metrics"]:
        lines.append("utmos: not measured; the UTMOS22 checkpoint does not install offline (`vtok eval --utmos-weights hub`)")
    return lines


# --- cards --------------------------------------------------------------------------------------
def _rates(tok) -> tuple[str, str]:
    if tok.modality == "image":
        if tok.variable_length:
            return (f"1..{tok.num_tokens} per image (any prefix of the ordered sequence)",
                    f"{tok.bits_per_token:g} per token, {tok.bits_per_token:g}..{tok.bits_per_image:g} per image")
        return f"{tok.num_tokens} per image", f"{tok.bits_per_image:g} per image"
    frames, q = tok.tokens_per_second, tok.num_codebooks
    if q > 1:
        return (f"{frames:g} frames/s x 1..{q} codebooks (quantizer dropout: any prefix of the RVQ levels)",
                f"{frames * math.log2(tok.vocab_size):g}..{tok.bits_per_second:g} per second")
    return f"{frames:g} per second", f"{tok.bits_per_second:g} per second"


def training_steps(recipe: dict) -> str:
    """How long the recipe trains, in batches: Lightning's max_steps counts every optimizer step, two per batch
    once a GAN's discriminator trains (from gan_start on)."""
    steps, args = recipe["trainer"]["max_steps"], recipe["model"]["init_args"]
    start = args.get("gan_start", 0) if args.get("gan_weight", 0) > 0 else steps
    if start >= steps:
        return f"{steps} batches"
    return (f"{(steps + start) // 2} batches ({start} reconstruction-only, then generator and discriminator "
            f"alternating: {steps} optimizer steps)")


def render_card(name: str, spec: dict, result: dict) -> str:
    """checkpoints/<name>/README.md text from hub_cards/card.md, the model and its held-out results."""
    from huggingface_hub import ModelCard, ModelCardData

    import vtok
    from vtok.registry import get_entry

    tok = vtok.load(name)
    recipe = yaml.safe_load((ROOT / spec["recipe"]).read_text())
    tokens, bits = _rates(tok)
    data = result["data"]
    items = (f"{data['items']} held-out images ({data['path']}, {data['image_size']} px)" if tok.modality == "image"
             else f"{data['items']} held-out clips ({data['path']}, {data['seconds']:.0f} s, spread evenly over the split)")
    card = ModelCard.from_template(
        ModelCardData(library_name="vtok", license="apache-2.0", tags=["vtok", tok.modality, "tokenizer"]),
        template_str=(CARDS / "card.md").read_text(), name=name, description=get_entry(name).description,
        architecture=type(tok).__name__, paper=tok.paper, params=sum(p.numel() for p in tok.parameters()),
        fields=tok.describe(), tokens=tokens, bits=bits, data=" ".join(spec["data"].split()),
        steps=training_steps(recipe), batch_size=recipe["data"]["init_args"]["batch_size"],
        recipe=spec["recipe"], command="vtok " + shlex.join(eval_command(name, spec)), items=items,
        table=metrics_table(result), comparison=comparison(name, result), protocol=protocol_lines(result),
        config=json.dumps(tok.config, indent=2, sort_keys=True),
        encode_doc=("images (B,3,S,S) in [0,1] -> ids (B,K); encode(x, num_tokens=k) for the first k" if tok.modality == "image"
                    else "audio (B,1,T) in [-1,1] -> ids (B,Q,T')"),
    )
    return str(card)


# --- README -------------------------------------------------------------------------------------
def replace_between(text: str, marker: str, body: str) -> str:
    """text with the lines between <!-- marker:start --> and <!-- marker:end --> replaced by body."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"README.md: expected the markers {start} and {end}")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body.strip()}\n{end}{tail}"


def shipped_table(results: dict[str, dict]) -> str:
    """README table: each shipped tokenizer's largest setting and the nearest classic codec, held-out metrics."""
    from vtok.evaluation.harness import nearest_in_bits

    lines = ["| tokenizer | held-out data | bits | metrics | nearest classic codec |", "|---|---|---|---|---|"]
    for name, result in results.items():
        cols = _columns(result)
        unit = "/image" if result["data"]["modality"] == "image" else "/s"
        mine = max((r for r in result["runs"] if r["name"] == name), key=lambda r: r["bits"])
        codecs = [r for r in result["runs"] if r["kind"] == "codec"]
        near = nearest_in_bits(codecs, mine["bits"]) if codecs else None
        show = lambda r: ", ".join(f"{label} {fmt.format(r['metrics'][k])}" for k, label, fmt in cols if k in r["metrics"])
        other = f"{near['name'].upper()} {_setting(near)}, {near['bits']:.0f} bits{unit}: {show(near)}" if near else "-"
        data = result["data"]
        held_out = (f"{data['items']} photos, {data['image_size']} px" if data["modality"] == "image"
                    else f"{data['items']} clips, {data['seconds']:.0f} s")
        lines.append(f"| `{name}` ({_setting(mine)}) | {held_out} | "
                     f"{mine['bits']:.0f}{unit} | {show(mine)} | {other} |")
    return "\n".join(lines)


def update_readme(results: dict[str, dict], demo_table: str | None) -> None:
    readme = ROOT / "README.md"
    text = replace_between(readme.read_text(), "shipped", shipped_table(results))
    if demo_table is not None:
        text = replace_between(text, "demo", demo_table)
    readme.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", nargs="+", help="only these shipped tokenizers (default: all in hub_cards/models.yaml)")
    parser.add_argument("--install", type=Path, metavar="RUNS", help="first copy RUNS/<name>/export into checkpoints/<name>")
    parser.add_argument("--skip-eval", action="store_true", help="render from hub_cards/results/<name>/results.json")
    parser.add_argument("--skip-demo", action="store_true", help="leave the README's demo table and docs/demo/ alone")
    args = parser.parse_args(argv)
    specs = models()
    names = args.names or list(specs)
    results = {}
    for name in names:
        if args.install:
            print(f"installed {install(name, args.install)}")
        results[name] = saved_result(name) if args.skip_eval else run_eval(name, specs[name])
        card = render_card(name, specs[name], results[name])
        from vtok.hub import checkpoints_dir
        (checkpoints_dir() / name / "README.md").write_text(card)
        print(f"wrote {checkpoints_dir() / name / 'README.md'}")
    # the README's table lists every card in models.yaml order, also those not regenerated in this call
    results = {n: results[n] if n in results else saved_result(n)
               for n in specs if n in results or (RESULTS / n / "results.json").is_file()}
    demo_table = None
    if not args.skip_demo:
        from vtok.demo import run_demo

        out = ROOT / "demo"
        demo_table = run_demo(out)
        DOCS.mkdir(parents=True, exist_ok=True)
        for png in ("grid.png", "spectrograms.png"):
            shutil.copy(out / png, DOCS / png)
    update_readme(results, demo_table)
    print("updated README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
