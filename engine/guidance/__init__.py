"""Score-distillation guidance: methods, timestep sampling, prompts."""
