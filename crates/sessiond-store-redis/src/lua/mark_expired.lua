-- KEYS: session, timeouts, log, logseq. ARGV: tenant, now, session id, channel, route.
-- Records the timeout of a session stored as active that is no longer active at `now`, and
-- logs it.
local f = redis.call('HMGET', KEYS[1], 't', 'st')
if f[1] ~= ARGV[1] or f[2] ~= 'a' or active_at(KEYS[1], tonumber(ARGV[2])) then
  return 0
end
expire(KEYS[1], ARGV[3], ARGV[2], KEYS[3], KEYS[4], KEYS[2])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
