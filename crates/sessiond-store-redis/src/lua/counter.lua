-- KEYS: counter. ARGV: now, forget_after.
-- One hit: the counter restarts when its latest hit is `forget_after` old; returns
-- {count, last}. The key lives `forget_after` seconds past its latest hit.
local now, forget = tonumber(ARGV[1]), tonumber(ARGV[2])
local c = redis.call('HMGET', KEYS[1], 'count', 'last')
local count, last = tonumber(c[1]) or 0, tonumber(c[2]) or 0
if now - last >= forget then
  count, last = 0, 0
end
count = count + 1
if now > last then
  last = now
end
redis.call('HSET', KEYS[1], 'count', count, 'last', last)
redis.call('EXPIRE', KEYS[1], math.max(forget, 1))
return {count, last}
