"""medforge.datasets."""
