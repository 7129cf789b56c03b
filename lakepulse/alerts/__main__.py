"""`python -m lakepulse.alerts`: the alert evaluator process."""

from lakepulse.alerts.service import main

main()
