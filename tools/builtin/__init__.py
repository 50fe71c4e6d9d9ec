"""The built-in proposer: offline, deterministic, semantics-preserving program transformations.

No network and no LLM: a catalogue of AST rewrites (``catalogue.TRANSFORMS``) chosen by a
bandit and recombined across archive members. It knows nothing about any particular task;
it is the honest baseline an LLM proposer has to beat. See docs/builtin-proposer.md.
"""

from daedalus.tools.builtin.catalogue import BY_NAME, TRANSFORMS
from daedalus.tools.builtin.proposer import BuiltinProposer
from daedalus.tools.builtin.seed import SeedError, reference_as_candidate

__all__ = ["BY_NAME", "TRANSFORMS", "BuiltinProposer", "SeedError", "reference_as_candidate"]
