"""``make bench``: the pipeline's throughput and latency, against baselines of the same run.

Run it with ``python -m tests.bench`` (``--help`` lists the scenarios and sizes). The modules here
are not named ``test_*``: pytest never collects them.
"""
