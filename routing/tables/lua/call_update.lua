-- Add facts to a live call's hash only while the call holds it (byoc-edge, docs/redis-schema.md).
--
-- KEYS[1]  call record HASH  edge:call:{node}:{call-id}
-- ARGV     field/value pairs
--
-- Returns 1 when written, 0 when the call has already been released (the hash
-- is never re-created without its TTL).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
