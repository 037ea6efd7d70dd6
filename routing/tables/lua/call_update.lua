-- Add facts to a live call's hash only while the call holds it, and extend its leases
-- (byoc-edge, docs/redis-schema.md).
--
-- KEYS[1]  call record HASH  edge:call:{node}:{call-id}
-- ARGV[1]  member "{node}:{call-id}"
-- ARGV[2]  extend: new lifetime (s) of the call's leases and hash from now, 0 = unchanged.
--          The answer extends an admission's short lease (lease.lua: as long as the call may
--          ring) to the longest a call may last.
-- ARGV[3..] field/value pairs
--
-- Returns 1 when written, 0 when the call has already been released (the hash
-- is never re-created without its TTL, and no lease is re-joined).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  local t = redis.call('TIME')
  local expiry = tonumber(t[1]) + tonumber(t[2]) / 1000000 + ttl
  local fields = redis.call('HKEYS', KEYS[1])
  for _, f in ipairs(fields) do
    if string.sub(f, 1, 6) == 'lease:' then
      local key = string.sub(f, 7)
      -- XX: only a lease the call still holds (an expired and pruned one is not re-joined)
      if redis.call('ZADD', key, 'XX', 'CH', expiry, ARGV[1]) == 1 and redis.call('TTL', key) < ttl + 60 then
        redis.call('EXPIRE', key, ttl + 60)
      end
    end
  end
  redis.call('EXPIRE', KEYS[1], ttl)
end
if #ARGV > 2 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 3))
end
return 1
