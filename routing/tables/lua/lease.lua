-- Atomic admission of one call: concurrency slots and CPS tokens (byoc-edge, docs/redis-schema.md).
--
-- KEYS[1]                      call record HASH  edge:call:{node}:{call-id}
-- KEYS[2 .. 1+nrel]            lease ZSETs to leave first (failover to another trunk)
-- KEYS[2+nrel .. #KEYS]        lease ZSETs to join
-- ARGV[1]  member  "{node}:{call-id}"
-- ARGV[2]  ttl     lease lifetime in seconds: the admission's, as long as the call may ring
--                  (call_update.lua extends it to the longest a call may last once answered)
-- ARGV[3]  nrel    number of ZSETs to leave
-- then, per joined ZSET j (3 values each):
--   limit   concurrent calls allowed (-1 = unlimited)
--   rate    new calls per second allowed (0 = unlimited): a token bucket holding
--           at most max(1, rate) tokens, refilled at `rate` tokens per second
--   bucket  HASH key of that token bucket (fields tokens, ts), "" when rate is 0
-- then field/value pairs stored in the call record.
--
-- Returns {1, 0, 0} when every join succeeded; {0, j, count} when joined ZSET j
-- is at its limit (count = calls holding it); {0, j, -1, wait_ms} when its CPS
-- bucket is empty (wait_ms until the next token); {0, 0, -2} when the call record
-- is a fence left by release.lua (this admission was abandoned by its client).  On a refusal nothing is
-- joined and no token is taken.  Expired leases are pruned before counting, so a
-- crashed node or a lost BYE holds a slot for at most ttl seconds.  Joining
-- twice is idempotent (INVITE retransmissions, spirals) and takes no new token.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local member = ARGV[1]
local ttl = tonumber(ARGV[2])
local nrel = tonumber(ARGV[3])
local nacq = #KEYS - 1 - nrel
local call = KEYS[1]
if redis.call('HEXISTS', call, 'fenced') == 1 then
  return {0, 0, -2}
end

for i = 2, 1 + nrel do
  redis.call('ZREM', KEYS[i], member)
  redis.call('HDEL', call, 'lease:' .. KEYS[i])
end

local tokens = {}
for j = 1, nacq do
  local key = KEYS[1 + nrel + j]
  local base = 3 + 3 * (j - 1)
  local limit = tonumber(ARGV[base + 1])
  local rate = tonumber(ARGV[base + 2])
  local bucket = ARGV[base + 3]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local already = redis.call('ZSCORE', key, member)
  if not already then
    if limit >= 0 then
      local count = redis.call('ZCARD', key)
      if count >= limit then
        return {0, j, count}
      end
    end
    if rate > 0 then
      local cap = math.max(1, rate)
      local state = redis.call('HMGET', bucket, 'tokens', 'ts')
      local have = tonumber(state[1]) or cap
      local since = tonumber(state[2]) or now
      have = math.min(cap, have + math.max(0, now - since) * rate)
      if have < 1 then
        return {0, j, -1, math.ceil((1 - have) / rate * 1000)}
      end
      tokens[j] = have - 1
    end
  end
end

local expiry = now + ttl
for j = 1, nacq do
  local key = KEYS[1 + nrel + j]
  local base = 3 + 3 * (j - 1)
  if tokens[j] then
    local bucket = ARGV[base + 3]
    local rate = tonumber(ARGV[base + 2])
    redis.call('HSET', bucket, 'tokens', tostring(tokens[j]), 'ts', tostring(now))
    redis.call('PEXPIRE', bucket, math.ceil(math.max(1, rate) / rate * 1000) + 1000)
  end
  redis.call('ZADD', key, expiry, member)
  -- the ZSET outlives its longest lease: never shorten it (answered calls hold longer leases)
  if redis.call('TTL', key) < ttl + 60 then
    redis.call('EXPIRE', key, ttl + 60)
  end
  redis.call('HSET', call, 'lease:' .. key, ARGV[base + 1])
end
for k = 4 + 3 * nacq, #ARGV, 2 do
  redis.call('HSET', call, ARGV[k], ARGV[k + 1])
end
-- the call record lives as long as its leases: an abandoned admission leaves no call behind
redis.call('EXPIRE', call, ttl)
return {1, 0, 0}
