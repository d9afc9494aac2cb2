"""The RL engine: GRPO on strop tasks through TRL, with curricula (SEC and baselines).

- ``recipe``: YAML recipes mapped onto frozen, validated dataclasses.
- ``data``, ``rewards``: strop tasks as TRL datasets, strop verifiers as TRL rewards.
- ``advantages``, ``curriculum``: the pure kernels (group advantages, SEC's update and policy).
- ``grpo``: the trainer (TRL's GRPOTrainer plus curriculum, checkpointed state, JSONL metrics).
- ``report``: tables and plots of training runs (``strop report``).

Importing this package imports neither torch nor TRL; ``grpo.train`` does.
"""
