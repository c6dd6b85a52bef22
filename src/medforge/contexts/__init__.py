"""Privacy-preserving contextual prompting (Zhang et al., ICLR 2024): keywords -> clinician-style contexts."""
