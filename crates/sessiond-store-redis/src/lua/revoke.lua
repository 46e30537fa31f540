-- KEYS: session, log, logseq, timeouts
-- ARGV: tenant, reason, now, session id, channel, route.
-- Returns the revoked session, or nil if it is unknown, another tenant's or not active.
local skey = KEYS[1]
if redis.call('HGET', skey, 't') ~= ARGV[1] then
  return nil
end
if not active_at(skey, tonumber(ARGV[3])) then
  return nil
end
revoke(skey, ARGV[4], ARGV[2], ARGV[3], KEYS[2], KEYS[3], KEYS[4])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return redis.call('HGETALL', skey)
