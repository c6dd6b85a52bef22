"""medforge.finetune."""
