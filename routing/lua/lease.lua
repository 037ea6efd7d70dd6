-- Atomic concurrency admission for one call (byoc-edge, docs/redis-schema.md).
--
-- KEYS[1]                      call record HASH  edge:call:{node}:{call-id}
-- KEYS[2 .. 1+nrel]            lease ZSETs to leave first (failover to another trunk)
-- KEYS[2+nrel .. #KEYS]        lease ZSETs to join
-- ARGV[1]  member  "{node}:{call-id}"
-- ARGV[2]  ttl     lease lifetime in seconds (the longest a call may last)
-- ARGV[3]  nrel    number of ZSETs to leave
-- ARGV[4 .. 3+nacq]  limit per joined ZSET (-1 = unlimited)
-- ARGV[4+nacq ..]    field/value pairs stored in the call record
--
-- Returns {1, 0, count} when every join succeeded, or {0, index, count} when
-- joined ZSET number `index` (1-based) is full; then nothing is joined.
-- Expired leases are pruned before counting, so a crashed node or a lost BYE
-- holds a slot for at most ttl seconds.  Joining twice is idempotent
-- (INVITE retransmissions, spirals).
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local member = ARGV[1]
local ttl = tonumber(ARGV[2])
local nrel = tonumber(ARGV[3])
local nacq = #KEYS - 1 - nrel
local call = KEYS[1]

for i = 2, 1 + nrel do
  redis.call('ZREM', KEYS[i], member)
  redis.call('HDEL', call, 'lease:' .. KEYS[i])
end

for j = 1, nacq do
  local key = KEYS[1 + nrel + j]
  local limit = tonumber(ARGV[3 + j])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if limit >= 0 and not redis.call('ZSCORE', key, member) then
    local count = redis.call('ZCARD', key)
    if count >= limit then
      return {0, j, count}
    end
  end
end

local expiry = now + ttl
for j = 1, nacq do
  local key = KEYS[1 + nrel + j]
  redis.call('ZADD', key, expiry, member)
  redis.call('EXPIRE', key, ttl + 60)
  redis.call('HSET', call, 'lease:' .. key, ARGV[3 + j])
end
for k = 4 + nacq, #ARGV, 2 do
  redis.call('HSET', call, ARGV[k], ARGV[k + 1])
end
redis.call('EXPIRE', call, ttl + 60)
return {1, 0, nacq}
