"""A test-only Lightning callback: every rank writes its final weights, to compare across ranks."""
from pathlib import Path

import lightning as L
from safetensors.torch import save_file


class DumpWeights(L.Callback):
    """At the end of fit, write rank{r}.safetensors with the module's state dict to `out`."""

    def __init__(self, out: str):
        self.out = Path(out)

    def on_fit_end(self, trainer, pl_module):
        self.out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().clone() for k, v in pl_module.state_dict().items()}
        save_file(state, str(self.out / f"rank{trainer.global_rank}.safetensors"))
