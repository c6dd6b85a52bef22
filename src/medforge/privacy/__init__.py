"""medforge.privacy."""
