"""The training-time estimator: timed steps of the real loop, projection, FLOPs, report, --compare."""
