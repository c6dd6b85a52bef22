"""medforge.engines."""
