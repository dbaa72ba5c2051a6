"""A closed loop with real agent pods: the controller (`predictive-autoscaler run`, a subprocess)
scales a Deployment on the fake API server whose pods are real agent processes
(`examples/agent-service/agent_service.py`), under a replayed chat day.

* `day.py`: the chat day (quiet base, morning ramp, busy hold) and its seeded Poisson arrivals;
* `workload.py`: the Deployment, its pods' names, the labels Prometheus gives their series;
* `pods.py`: the pod runner (kubelet, deployment controller and kube-state-metrics in one);
* `balancer.py`: least-in-flight balancing over the ready pods, and what counts as rejected;
* `loadgen.py`: open-loop replay of the arrivals, one record per request;
* `history.py`: past days of the Deployment's series, for `promtool` to backfill;
* `scrape.py`: the loop's Prometheus (file-based service discovery of the ready pods);
* `loop.py`: one run, predictive (history in Prometheus) or reactive (none), cleaned up always;
* `report.py`: the comparison table and the picture; `demo.py`: `make agent-demo`.
"""
