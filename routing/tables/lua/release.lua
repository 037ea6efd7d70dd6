-- Release every slot a call holds (byoc-edge, docs/redis-schema.md).
--
-- KEYS[1]  call record HASH  edge:call:{node}:{call-id}
-- ARGV[1]  member "{node}:{call-id}"
-- ARGV[2]  fence  seconds (optional, 0 = none): leave the call record as a fence
--          {fenced=1} for that long, so an admission of this call that reaches redis
--          later (sent before redis hung, queued, run on resume) joins nothing
--
-- Returns the number of lease ZSETs the call was removed from.  Idempotent:
-- releasing twice (BYE and dialog timeout, retransmitted CANCEL) is harmless.
local fields = redis.call('HKEYS', KEYS[1])
local released = 0
for _, f in ipairs(fields) do
  if string.sub(f, 1, 6) == 'lease:' then
    released = released + redis.call('ZREM', string.sub(f, 7), ARGV[1])
  end
end
redis.call('DEL', KEYS[1])
local fence = tonumber(ARGV[2] or '0') or 0
if fence > 0 then
  redis.call('HSET', KEYS[1], 'fenced', '1')
  redis.call('EXPIRE', KEYS[1], fence)
end
return released
