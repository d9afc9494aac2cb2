"""The RL engine: GRPO on strop tasks through TRL, with curricula (SEC and baselines).

- ``recipe``: YAML recipes mapped onto frozen, validated dataclasses.
- ``data``, ``rewards``: strop tasks as TRL datasets, strop verifiers as TRL rewards.
- ``advantages``, ``curriculum``: the pure kernels (group advantages, SEC's update and policy).
- ``sources``: where a step's rows come from (``RowSource``; the curriculum's draws; RC's states are ``rc``).
- ``grpo``: the trainer (TRL's GRPOTrainer drawing its rows from a source, dynamic sampling, checkpointed state).
- ``entry``: a recipe to a trainer and a run (``build_trainer``, ``train``); ``run_folder``, ``callbacks``: its folder and logs.
- ``report``: tables and plots of training runs (``strop report``).

Importing this package imports neither torch nor TRL; ``entry.train`` does.
"""
