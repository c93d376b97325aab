"""Every fact the book states, computed once: one module and one function per chapter.

Each function loads the cached weights it needs and returns a frozen dataclass of the facts
its chapter states: counts, ratios, which instance or neuron is shown. The chapter glues
those fields (it only loads, draws and glues; it computes no statistic of its own), and the
claims tests assert on the same fields, so a sentence and its test cannot disagree.

    from superposition import findings
    f = findings.sparsity()     # SparsityFindings
    f.computed_best[0.01]        # features computed by the lowest-loss model at p = 0.01

Functions are cached per process: the chapter and the tests call them freely.
"""

from .capacity import capacity  # noqa: F401
from .intro import intro  # noqa: F401
from .motif import motif  # noqa: F401
from .no_superposition import no_superposition  # noqa: F401
from .scaling import scaling  # noqa: F401
from .setup import setup  # noqa: F401
from .sparsity import sparsity  # noqa: F401
from .weights import weights  # noqa: F401
