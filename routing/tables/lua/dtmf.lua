-- Append one DTMF digit to a call record (docs/redis-schema.md, field `dtmf`).
-- KEYS[1] = edge:call:{node}:{call-id}; ARGV[1] = entry "{side}:{digit}:{mode}".
-- A call whose record is gone (released) is left alone: returns 0; else 1.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local old = redis.call('HGET', KEYS[1], 'dtmf')
if old and old ~= '' then
  redis.call('HSET', KEYS[1], 'dtmf', old .. ',' .. ARGV[1])
else
  redis.call('HSET', KEYS[1], 'dtmf', ARGV[1])
end
return 1
