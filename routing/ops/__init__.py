"""Running an edge node: its settings file, the configs rendered from it, its processes
(redis, rtpengine, Kamailio, the monitor), stored secrets, TLS, and ``edgectl demo``."""
