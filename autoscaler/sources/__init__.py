"""Where a tick's inputs come from: the cluster reader, and the metrics source with its queries."""
