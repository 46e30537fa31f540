-- KEYS: session, timeouts. ARGV: tenant, now, session id.
-- Moves auth_time and last_seen_at forward to `now` if the session is active (a
-- re-authentication); returns the session, or nil if it is unknown, another tenant's or not
-- active. Not logged: nothing a node caches depends on it.
local skey, now = KEYS[1], tonumber(ARGV[2])
if redis.call('HGET', skey, 't') ~= ARGV[1] or not active_at(skey, now) then
  return nil
end
local f = redis.call('HMGET', skey, 'au', 'ca', 'ls')
if tonumber(f[1] or f[2]) < now then
  redis.call('HSET', skey, 'au', ARGV[2])
end
if tonumber(f[3]) < now then
  redis.call('HSET', skey, 'ls', ARGV[2])
  schedule(KEYS[2], skey, ARGV[3])
end
return redis.call('HGETALL', skey)
