"""The edge monitor process (``python -m routing.monitor``): the Prometheus exporter of the
state in redis and of the call records, and the gateway prober with its health state machine."""
