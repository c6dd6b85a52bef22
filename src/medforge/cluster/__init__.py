"""Running on a multi-node Ray cluster: declared resource demand, what the cluster can grow to, preflight."""
