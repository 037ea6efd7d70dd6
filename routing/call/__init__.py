"""The sans-I/O decisions of a call: a request snapshot in, a decision and its effects out.

No ``KSR``, no redis client, no clock of their own (``now`` is passed in): the Kamailio
adapter reads the request and the tables, calls these functions and applies what they return.
"""
