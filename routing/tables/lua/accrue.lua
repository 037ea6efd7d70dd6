-- Spend of a call in progress, counted as it accrues (byoc-edge, docs/redis-schema.md).
--
-- KEYS[1]        call record HASH  edge:call:{node}:{call-id}
-- KEYS[2..]      spend STRINGs     edge:spend:{trunk}:{day}, edge:account-spend:{account}:{day}
-- ARGV[1]        the call's cost so far, micro-units (its billable time by increment x rate)
-- ARGV[2]        TTL of the spend keys (s)
--
-- Adds ARGV[1] minus the hash's `spend_accrued` to every spend key and sets `spend_accrued` to
-- ARGV[1], only while the call hash exists (finish.lua deletes it and returns `spend_accrued`, so
-- the call record adds only the rest: cost - spend_accrued).  A total not above the one already
-- counted changes nothing.  Returns the micro-units added.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local total = tonumber(ARGV[1])
local delta = total - (tonumber(redis.call('HGET', KEYS[1], 'spend_accrued')) or 0)
if delta <= 0 then
  return 0
end
for k = 2, #KEYS do
  redis.call('INCRBY', KEYS[k], delta)
  redis.call('EXPIRE', KEYS[k], tonumber(ARGV[2]))
end
redis.call('HSET', KEYS[1], 'spend_accrued', tostring(total))
return delta
