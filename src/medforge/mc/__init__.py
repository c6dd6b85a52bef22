"""Multiple-choice models outside Ray Train: input encoding, export format, loading and scoring.

Shared by SLM fine-tuning (:mod:`medforge.finetune.slm`), the evaluator and the QA endpoint, so all
three feed the model exactly the same token ids for the same row.
"""
