-- sessiond: helpers put in front of every session script (see scripts.rs).
--
-- A session is a hash: t tenant, u user, c customer, m auth method, ca created_at,
-- ls last_seen_at, ax absolute expiry, it idle ttl (absent: none), ua / ip / lb device
-- (absent: none), st state (a active, r revoked, e expired), sr revoke reason, sa state time.
-- A refresh token is a hash: t tenant, s session id, x expiry, and once rotated: ra rotated
-- at, rs successor (hex), rz sealed successor.
-- Times are unix seconds given by the caller (`now`), never the server clock, except the
-- change log's `at`.

-- Ended sessions stay listable this long after their absolute expiry.
local KEEP = 86400

local function active_at(key, now)
  local f = redis.call('HMGET', key, 'st', 'ls', 'ax', 'it')
  if f[1] ~= 'a' then
    return false
  end
  local expires = tonumber(f[3])
  if f[4] then
    local idle = tonumber(f[2]) + tonumber(f[4])
    if idle < expires then
      expires = idle
    end
  end
  return now < expires
end

-- Seconds from `now` the keys of the session at `key` are kept: until its absolute expiry
-- plus KEEP. Relative to the caller's clock, so that it holds whatever the server's says.
local function keep_for(key, now)
  local ttl = tonumber(redis.call('HGET', key, 'ax')) + KEEP - now
  if ttl < 1 then
    ttl = 1
  end
  return ttl
end

-- Revokes the (active) session at `key` and appends the change to the route's log.
local function revoke(key, sid, reason, now, log, logseq)
  redis.call('HSET', key, 'st', 'r', 'sr', reason, 'sa', now)
  local f = redis.call('HMGET', key, 't', 'u')
  local seq = redis.call('INCR', logseq)
  local at = redis.call('TIME')[1]
  local change = cjson.encode({
    kind = 'session_ended', tenant = f[1], session = sid, user = f[2], reason = reason
  })
  redis.call('ZADD', log, seq, string.format('%d:%s:%s', seq, at, change))
end
