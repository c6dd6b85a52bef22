"""medforge.train."""
