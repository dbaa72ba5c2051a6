"""`python -m autoscaler`, the same as the `predictive-autoscaler` console script."""

from autoscaler.cli import main

raise SystemExit(main())
