"""Image tokenizers; importing this package registers them in the zoo."""
from . import vqgan  # noqa: F401
from . import dualcodebook, dualtoken, flextok, onedpiece, titok  # noqa: F401
