"""Dataset and model cards: pure builders from run folders to markdown, HTML and plots."""
