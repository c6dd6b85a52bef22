"""medforge."""
