"""medforge.serve."""
