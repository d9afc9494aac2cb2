"""LADDER: variant trees of hard problems, GRPO on them, and test-time variant RL.

Importing the package registers the problem-level solver ``ttrl`` (``strop eval --method ttrl``) with the
evaluation layer, which does not know this layer: the arrow points down.
"""

from strop.evaluation.solvers import register_solver

register_solver("ttrl", "strop.ladder.ttrl:solve", "strop.ladder.ttrl:settings")
