-- Store one call record exactly once (byoc-edge, docs/redis-schema.md).
--
-- KEYS[1]  record STRING   edge:cdr:{id}
-- KEYS[2]  index ZSET      edge:cdrs
-- KEYS[3]  spend STRING    edge:spend:{trunk}:{yyyymmdd}   (optional)
-- ARGV[1]  record JSON
-- ARGV[2]  score: start time (ms since epoch)
-- ARGV[3]  member: the record id
-- ARGV[4]  the record's TTL (s)
-- ARGV[5]  cost in micro-units, added to KEYS[3] only when the record is new
-- ARGV[6]  TTL of the spend key (s)
-- ARGV[7]  retention window of the index (s): members older are pruned (default ARGV[4])
--
-- Returns 1 when the record was stored, 0 when it was already there (a replay
-- of a spooled record, a retransmission): nothing changes then, so neither the
-- index nor the spend counts a call twice.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', tonumber(ARGV[4])) then
  return 0
end
redis.call('ZADD', KEYS[2], tonumber(ARGV[2]), ARGV[3])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000
local window = tonumber(ARGV[7] or ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. tostring(now_ms - window * 1000))
if KEYS[3] and tonumber(ARGV[5]) > 0 then
  redis.call('INCRBY', KEYS[3], tonumber(ARGV[5]))
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[6]))
end
return 1
