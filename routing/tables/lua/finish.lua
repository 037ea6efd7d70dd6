-- End of a call: keep its final media statistics, read its call hash, then release every slot it
-- holds (byoc-edge, docs/redis-schema.md).
--
-- KEYS[1]  call record HASH  edge:call:{node}:{call-id}
-- KEYS[2]  media quality HASH  edge:media:{node}:{call-id}
-- ARGV[1]  member "{node}:{call-id}"
-- ARGV[2]  TTL of KEYS[2] in seconds (0: KEYS[2] not written)
-- ARGV[3..] media field, value, field, value... (the final reading; none: nothing written)
--
-- The media fields go into the call hash (only while it exists: a released call is never
-- re-created) and into KEYS[2], as media.lua does during the call.  Returns the hash as a flat
-- field/value list (empty when the call held nothing), read before it is deleted, so the call
-- record carries what the media work stored there.  Idempotent, like release.lua.
if #ARGV > 2 then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HSET', KEYS[1], unpack(ARGV, 3))
  end
  local ttl = tonumber(ARGV[2])
  if ttl > 0 then
    redis.call('HSET', KEYS[2], unpack(ARGV, 3))
    redis.call('EXPIRE', KEYS[2], ttl)
  end
end
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local f = fields[i]
  if string.sub(f, 1, 6) == 'lease:' then
    redis.call('ZREM', string.sub(f, 7), ARGV[1])
  end
end
redis.call('DEL', KEYS[1])
return fields
