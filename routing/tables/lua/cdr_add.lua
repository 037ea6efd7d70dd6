-- Store one call record exactly once (byoc-edge, docs/redis-schema.md).
--
-- KEYS[1]  record STRING   edge:cdr:{id}
-- KEYS[2]  index ZSET      edge:cdrs
-- KEYS[3]  outbox ZSET     edge:cdrs:outbox:{node}  (used only when ARGV[8] is "1")
-- KEYS[4]  spend STRING    edge:spend:{trunk}:{yyyymmdd}   (optional)
-- KEYS[5]  spend STRING    edge:account-spend:{account}:{yyyymmdd}   (optional, with KEYS[4])
-- ARGV[1]  record JSON
-- ARGV[2]  score: start time (ms since epoch)
-- ARGV[3]  member: the record id
-- ARGV[4]  the record's TTL (s)
-- ARGV[5]  cost in micro-units not yet counted while the call ran, added to KEYS[4] (and KEYS[5])
--          only when the record is new
-- ARGV[6]  TTL of the spend key (s)
-- ARGV[7]  retention window of the index (s): members older are pruned (default ARGV[4])
-- ARGV[8]  "1": a durable store drains this node's records: the record is kept without TTL and
--          its id queued in KEYS[3] until the monitor wrote it (cdr_drained.lua sets the TTL then)
-- ARGV[9]  most records in the index (0 = no bound): the oldest are deleted beyond it, but never
--          one still queued in KEYS[3]
-- ARGV[10] the record key prefix (edge:cdr:)
-- ARGV[7] to ARGV[10] may be left out (bench/peer/kamailio.cfg calls the script with ARGV[1..6] and
-- KEYS[1..2]): no outbox, no bound.
--
-- Returns 1 when the record was stored, 0 when it was already there (a replay
-- of a spooled record, a retransmission): nothing changes then, so neither the
-- index, the outbox nor the spend counts a call twice.
local queued = ARGV[8] == '1'
if queued then
  if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then
    return 0
  end
  redis.call('ZADD', KEYS[3], tonumber(ARGV[2]), ARGV[3])
elseif not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', tonumber(ARGV[4])) then
  return 0
end
redis.call('ZADD', KEYS[2], tonumber(ARGV[2]), ARGV[3])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000
local window = tonumber(ARGV[7] or ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. tostring(now_ms - window * 1000))
local bound = tonumber(ARGV[9] or '0')
if bound > 0 then
  -- at most 16 of the oldest looked at per record: the monitor trims the rest after a drain
  local excess = redis.call('ZCARD', KEYS[2]) - bound
  if excess > 0 then
    for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, math.min(excess, 16) - 1)) do
      if not redis.call('ZSCORE', KEYS[3], id) then
        redis.call('DEL', ARGV[10] .. id)
        redis.call('ZREM', KEYS[2], id)
      end
    end
  end
end
if KEYS[4] and tonumber(ARGV[5]) > 0 then
  for k = 4, #KEYS do  -- KEYS[5]: the account's spend (edge:account-spend:{account}:{yyyymmdd}), optional
    redis.call('INCRBY', KEYS[k], tonumber(ARGV[5]))
    redis.call('EXPIRE', KEYS[k], tonumber(ARGV[6]))
  end
end
return 1
