-- KEYS: session. ARGV: tenant, now.
-- Records the timeout of a session stored as active that is no longer active at `now`.
local f = redis.call('HMGET', KEYS[1], 't', 'st')
if f[1] ~= ARGV[1] or f[2] ~= 'a' or active_at(KEYS[1], tonumber(ARGV[2])) then
  return 0
end
redis.call('HSET', KEYS[1], 'st', 'e', 'sa', ARGV[2])
return 1
