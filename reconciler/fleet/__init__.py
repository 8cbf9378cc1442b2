"""Fleet features: wake and report over MQTT (`mqtt`, `report`, `topics`) and the ring rollout
driven from a GitOps checkout (`rollout`). Wired by the daemon (`reconciler.cli.daemon`) and
the `hotswap fleet` commands (`reconciler.cli.fleet`)."""
