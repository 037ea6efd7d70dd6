-- End of a call: read its call hash, then release every slot it holds (byoc-edge, docs/redis-schema.md).
--
-- KEYS[1]  call record HASH  edge:call:{node}:{call-id}
-- ARGV[1]  member "{node}:{call-id}"
--
-- Returns the hash as a flat field/value list (empty when the call held
-- nothing), read before it is deleted, so the call record can carry what the
-- media work stored there.  Idempotent, like release.lua.
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local f = fields[i]
  if string.sub(f, 1, 6) == 'lease:' then
    redis.call('ZREM', string.sub(f, 7), ARGV[1])
  end
end
redis.call('DEL', KEYS[1])
return fields
