"""The whole AlpaCare loop as one job: generate -> fine-tune -> evaluate (tuned vs base) -> serve.

``config.py`` embeds the stage jobs' own configs; ``plan.py`` resolves them into stage configs,
fingerprints and folders (pure); ``records.py`` holds fingerprints, stage records and code
version; ``stages.py`` calls each job's library function; ``runner.py`` orders, caches and
resumes them in one Ray cluster; ``job.py`` is the command line (``ray_jobs/pipeline.py``).
"""
