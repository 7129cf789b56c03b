"""Settings for the whole test run."""

import logging

# py4j logs at INFO when its connections are garbage-collected at interpreter exit. Airflow's logging config
# (imported by the DAG tests) lets INFO through to streams pytest has closed by then, which printed a
# "--- Logging error ---" traceback after the summary.
logging.getLogger("py4j").setLevel(logging.WARNING)
