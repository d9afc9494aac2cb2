"""Power sampling: draw from p^alpha by Metropolis-Hastings (uniform, entropy and max-swap cuts) or Sequential Monte Carlo."""

from strop.methods.power.kernels import cut_log_probs, entropy_cut_weights, log_acceptance, max_swap_accepts
from strop.methods.power.sampler import Chain, PowerConfig, power, power_sample_chain
from strop.methods.power.smc import SMCConfig, smc

__all__ = ["Chain", "PowerConfig", "SMCConfig", "cut_log_probs", "entropy_cut_weights", "log_acceptance", "max_swap_accepts", "power",
           "power_sample_chain", "smc"]
