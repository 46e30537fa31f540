-- KEYS: session, timeouts. ARGV: tenant, now, session id.
-- Moves last_seen_at forward to `now` if the session is active, and its timeout with it.
local now = tonumber(ARGV[2])
if redis.call('HGET', KEYS[1], 't') ~= ARGV[1] or not active_at(KEYS[1], now) then
  return 0
end
if tonumber(redis.call('HGET', KEYS[1], 'ls')) >= now then
  return 0
end
redis.call('HSET', KEYS[1], 'ls', ARGV[2])
schedule(KEYS[2], KEYS[1], ARGV[3])
return 1
