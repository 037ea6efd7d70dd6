"""SIP capture per call: HEP3 packets (``hep``), SIP facts and digest masking (``sipmsg``), the
per-call files with bounded retention (``store``), and what ``edgectl trace`` makes of them: the
ladder (``ladder``), its pcap (``pcap``) and HTML picture (``html``).  Kamailio's ``siptrace``
produces the packets; the monitor's collector (``routing/monitor/collector.py``) stores them."""
