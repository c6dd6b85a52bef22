"""medforge.evaluate."""
