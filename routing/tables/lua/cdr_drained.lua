-- Records the durable store acknowledged leave the outbox (byoc-edge, docs/redis-schema.md).
--
-- KEYS[1]  outbox ZSET     edge:cdrs:outbox:{node}
-- KEYS[2]  index ZSET      edge:cdrs
-- ARGV[1]  the record key prefix (edge:cdr:)
-- ARGV[2]  most records in the index (0 = no bound)
-- ARGV[3], ARGV[4], ...  pairs: record id, the TTL (s) it keeps in redis from now
--
-- Each id leaves the outbox and its record expires after its TTL; then the index is
-- trimmed to ARGV[2] records, oldest first, skipping records still in the outbox.
-- Returns the number of records deleted by the trim.
for i = 3, #ARGV, 2 do
  redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('EXPIRE', ARGV[1] .. ARGV[i], tonumber(ARGV[i + 1]))
end
local bound = tonumber(ARGV[2])
local deleted = 0
if bound > 0 then
  local excess = redis.call('ZCARD', KEYS[2]) - bound
  if excess > 0 then
    for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, math.min(excess, 10000) - 1)) do
      if not redis.call('ZSCORE', KEYS[1], id) then
        redis.call('DEL', ARGV[1] .. id)
        redis.call('ZREM', KEYS[2], id)
        deleted = deleted + 1
      end
    end
  end
end
return deleted
