"""medforge.eval."""
