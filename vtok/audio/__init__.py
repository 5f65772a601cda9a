"""Audio tokenizers; importing this package registers them in the zoo."""
from . import rvq_codec  # noqa: F401
from . import wavtokenizer  # noqa: F401
