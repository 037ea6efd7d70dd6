"""The routing tables (trunks, agents, DIDs, routes) and the call state kept in redis.

:mod:`~routing.tables.model` holds the types and their text form in redis,
:mod:`~routing.tables.keys` every key name, :mod:`~routing.tables.store` the call path's
reads and its Lua leases, :mod:`~routing.tables.admin` the validated writes (one module per
noun), :mod:`~routing.tables.tableset` the whole data set as YAML.
"""
