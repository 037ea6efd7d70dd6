-- Media quality of a call (docs/redis-schema.md, fields `media_*`).
-- KEYS[1] = edge:call:{node}:{call-id} (the live call record)
-- KEYS[2] = edge:media:{node}:{call-id} (the quality record kept after the call)
-- ARGV[1] = TTL of KEYS[2] in seconds, 0 = do not write KEYS[2] (a reading during the call)
-- ARGV[2..] = field, value, field, value...
-- The live record is only updated while it exists (a released call is never re-created).
-- Returns 1 when the live record was updated, else 0.
local updated = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 2))
  updated = 1
end
local ttl = tonumber(ARGV[1])
if ttl > 0 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 2))
  redis.call('EXPIRE', KEYS[2], ttl)
end
return updated
