"""What a run leaves behind: results.json, the results table, plots, trackers, summaries, peak memory."""
