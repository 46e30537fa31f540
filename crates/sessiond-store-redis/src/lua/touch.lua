-- KEYS: session. ARGV: tenant, now.
-- Moves last_seen_at forward to `now` if the session is active.
local now = tonumber(ARGV[2])
if redis.call('HGET', KEYS[1], 't') ~= ARGV[1] or not active_at(KEYS[1], now) then
  return 0
end
if tonumber(redis.call('HGET', KEYS[1], 'ls')) >= now then
  return 0
end
redis.call('HSET', KEYS[1], 'ls', ARGV[2])
return 1
